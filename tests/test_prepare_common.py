"""Shared pieces of `ufer prepare` (class mapping, bookkeeping, locations, CLI) and the
fixture helpers the per-source tests (test_prepare_<source>.py) import."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ufer.cli.main import build_parser, main
from ufer.data import schema
from ufer.data.adapters import ADAPTERS, prepare
from ufer.data.adapters.common import (
    UNKNOWN_LABEL,
    BadValue,
    LabelMap,
    Ledger,
    affect_value,
    au_value,
    check_locations,
    ordered_classes,
    to_int,
)
from ufer.data.manifest import Manifest, ManifestError, read_manifest

E7 = list(schema.EMOTIONS7)
E8 = list(schema.EMOTIONS8)


# --- fixture helpers -------------------------------------------------------------------------


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (8, 8),
                mode: str = "RGB") -> Path:
    """A tiny image with pixels drawn from ``seed``; format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def write_corrupt(path: Path) -> Path:
    """A file with an image suffix that is not an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a picture")
    return path


def place_image(path: Path, what: str | None) -> None:
    """Put at ``path`` nothing (None), a ``"corrupt"`` file or a good ``"image"``."""
    if what == "corrupt":
        write_corrupt(path)
    elif what == "image":
        write_image(path)


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (to show ROOT is untouched)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_prepare(name: str, root: Path, out: Path, **kwargs) -> tuple[Manifest, dict, list[str]]:
    """prepare() with the log captured; checks ROOT is unchanged. Returns (manifest read
    back with its images, sidecar, log lines)."""
    before = snapshot(root)
    lines: list[str] = []
    path = prepare(name, root, out, log=lines.append, **kwargs)
    assert snapshot(root) == before
    manifest = read_manifest(path)
    return manifest, manifest.meta, lines


def rows(manifest: Manifest, *columns: str) -> list[tuple]:
    """The manifest's rows as tuples of the given columns (NaN kept as None)."""
    frame = manifest.frame
    return [tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row)
            for row in frame[list(columns)].itertuples(index=False)]


def pixels(manifest: Manifest, i: int) -> np.ndarray:
    with Image.open(manifest.image_path(i)) as image:
        return np.asarray(image)


def source_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def expect_bad(name: str, root: Path, out: Path, kind: str, fragments: list[str],
               **kwargs) -> None:
    """The run stops with a ManifestError containing ``fragments``; with skip_bad the same
    input is one counted skip of ``kind``."""
    with pytest.raises(ManifestError) as info:
        prepare(name, root, out, log=lambda _: None, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    path = prepare(name, root, out, skip_bad=True, log=lambda _: None, **kwargs)
    meta = json.loads(schema.sidecar_path(path).read_text())
    assert meta["prepare"]["skipped_bad"] == {kind: 1}
    assert len(meta["prepare"]["skipped_examples"]) == 1


# --- shared pieces ------------------------------------------------------------------------------


def test_label_map_maps_drops_and_rejects():
    ledger = Ledger()
    labels = LabelMap({1: "Surprise", 2: "Contempt", 3: "Angry"}, E7, {9: "Uncertain"},
                      dataset="X")
    assert labels.index(1, ledger) == E7.index("surprise")
    assert labels.index(3, ledger) == E7.index("anger")
    assert labels.index(2, ledger) is None  # contempt is not in the 7-class list
    assert labels.index(9, ledger) is None
    assert ledger.dropped == {"X label 2 (Contempt): not in the 7-class list": 1,
                              "X label 9 (Uncertain)": 1}
    with pytest.raises(BadValue) as info:
        labels.index(5, ledger)
    assert info.value.kind == UNKNOWN_LABEL and "known: 1 Surprise" in info.value.problem
    assert labels.describe() == {"1 Surprise": "surprise", "2 Contempt": "dropped",
                                 "3 Angry": "anger", "9 Uncertain": "dropped"}


def test_ordered_classes_uses_project_order_only_when_all_names_are_known():
    assert ordered_classes(["Sad", "angry", "Happiness", "contempt"]) == [
        "happy", "sad", "anger", "contempt"]
    assert ordered_classes(["cat", "dog", "Happy"]) == ["Happy", "cat", "dog"]


def test_value_parsers_mask_sentinels_and_reject_the_rest():
    ledger = Ledger()
    assert to_int("3.0000000e+00", "emotion") == 3
    assert math.isnan(affect_value("-2", "valence", ledger))  # AffectNet: outside -> unknown
    assert math.isnan(affect_value("-5", "arousal", ledger, sentinel=-5))
    assert au_value("1", "AU01", ledger) == 1.0 and math.isnan(au_value("-1", "AU01", ledger))
    assert ledger.masked == {"valence": 1, "arousal": 1, "AU01": 1}
    for call, kind in ((lambda: affect_value("-3", "valence", ledger, sentinel=-5),
                        "value out of range"),
                       (lambda: au_value("2", "AU01", ledger), "value out of range"),
                       (lambda: affect_value("nan", "valence", ledger), "NaN value"),
                       (lambda: to_int("x", "label"), "malformed row")):
        with pytest.raises(BadValue) as info:
            call()
        assert info.value.kind == kind


def test_out_inside_root_or_over_an_existing_manifest_is_refused(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(ValueError, match="inside ROOT"):
        check_locations(root, root / "prepared", "manifest.csv", overwrite=False)
    with pytest.raises(ValueError, match="inside ROOT"):
        check_locations(root, root, "manifest.csv", overwrite=False)
    out = tmp_path / "out"
    write_text(out / "manifest.json", "{}")
    with pytest.raises(FileExistsError, match="--overwrite"):
        check_locations(root, out, "manifest.csv", overwrite=False)
    assert check_locations(root, out, "manifest.csv", overwrite=True) == out / "manifest.csv"
    with pytest.raises(FileNotFoundError):
        check_locations(tmp_path / "missing", out, "manifest.csv", overwrite=True)


def test_prepare_help_lists_every_source(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "--help"])
    text = capsys.readouterr().out
    for name in ("rafdb", "affectnet", "ferplus", "affwild2", "sfew", "ckplus", "folder"):
        assert name in text
    assert set(ADAPTERS) == {"rafdb", "affectnet", "ferplus", "affwild2", "sfew", "ckplus",
                             "folder"}


def test_cli_prepares_a_folder_and_reports_errors(tmp_path, capsys):
    root = tmp_path / "faces"
    write_image(root / "Happy" / "a.jpg", 1)
    write_image(root / "sad" / "b.png", 2)
    out = tmp_path / "out"
    assert main(["prepare", "folder", str(root), str(out), "--format", "parquet"]) == 0
    printed = capsys.readouterr().out
    assert "kept     2 (train 2)" in printed and "classes  0 happy, 1 sad" in printed
    assert (out / "manifest.parquet").is_file()
    assert main(["prepare", "folder", str(root), str(out), "--format", "parquet"]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_unknown_options_and_detection_on_aligned_sources_are_refused(tmp_path):
    with pytest.raises(ValueError, match="has no option"):
        prepare("rafdb", tmp_path, tmp_path / "o", options={"classes": 8})
    with pytest.raises(ValueError, match="does not apply"):
        prepare("rafdb", tmp_path, tmp_path / "o", align=lambda image: None)


class FakeAligner:
    """Stands in for face detection + alignment: the top-left 4 x 4 corner is the "face";
    an image whose first pixel is black has none."""

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, None] | None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        return None if not image[0, 0].any() else (image[:4, :4].copy(), None)

    def describe(self) -> dict:
        return {"detector": "fake", "size": 4}
