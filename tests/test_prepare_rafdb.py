"""`ufer prepare rafdb` on a tiny RAF-DB in the official layout."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_prepare_common import (
    E7,
    expect_bad,
    place_image,
    rows,
    run_prepare,
    write_image,
    write_text,
)

LIST = "EmoLabel/list_patition_label.txt"
# name, RAF label (1 Surprise .. 7 Neutral); 5-digit train and 4-digit test names.
ENTRIES = [("train_00001.jpg", 5), ("train_00002.jpg", 1), ("test_0001.jpg", 4),
           ("test_0002.jpg", 7)]


def make_rafdb(root: Path, extra: str = "") -> Path:
    """The label list (no trailing newline, like the release) + aligned and original images."""
    lines = [f"{name} {label}" for name, label in ENTRIES] + ([extra] if extra else [])
    write_text(root / LIST, "\n".join(lines))
    for i, (name, _) in enumerate(ENTRIES):
        stem = name[:-4]
        write_image(root / "Image" / "aligned" / f"{stem}_aligned.jpg", seed=i)
        write_image(root / "Image" / "original" / name, seed=10 + i, size=(12, 10))
    return root


def test_rafdb_manifest_row_by_row(tmp_path):
    root = make_rafdb(tmp_path / "basic")
    manifest, meta, log = run_prepare("rafdb", root, tmp_path / "out")
    assert rows(manifest, "path", "split", "label") == [
        ("images/aligned/train_00001_aligned.jpg", "train", E7.index("sad")),
        ("images/aligned/train_00002_aligned.jpg", "train", E7.index("surprise")),
        ("images/aligned/test_0001_aligned.jpg", "test", E7.index("happy")),
        ("images/aligned/test_0002_aligned.jpg", "test", E7.index("neutral")),
    ]
    for i, (name, _) in enumerate(ENTRIES):  # copied byte for byte
        source = root / "Image" / "aligned" / f"{name[:-4]}_aligned.jpg"
        assert manifest.image_path(i).read_bytes() == source.read_bytes()
    assert meta["classes"] == E7
    assert meta["source"]["name"] == "rafdb"
    assert meta["source"]["files"] == [LIST, "Image/aligned"]
    assert meta["source"]["class_map"]["1 Surprise"] == "surprise"
    assert meta["prepare"]["kept"] == 4 and meta["prepare"]["dropped"] == {}
    assert meta["counts"]["train"]["sad"] == 1
    assert any(line.startswith("  kept     4 (train 2, test 2)") for line in log)


def test_rafdb_original_images(tmp_path):
    root = make_rafdb(tmp_path / "basic")
    manifest, meta, _ = run_prepare("rafdb", root, tmp_path / "out",
                                    options={"images": "original"})
    assert rows(manifest, "path")[0] == ("images/original/train_00001.jpg",)
    assert meta["source"]["options"] == {"images": "original"}


@pytest.mark.parametrize("extra, setup, kind, fragments", [
    ("train_00003.jpg 2", None, "missing image",
     ["list_patition_label.txt, line 5", "train_00003_aligned.jpg", "does not exist"]),
    ("train_00003.jpg 2", "corrupt", "corrupt image",
     ["line 5", "train_00003_aligned.jpg", "cannot be decoded"]),
    ("train_00003.jpg 8", "image", "unknown label",
     ["line 5, column 'label'", "value '8' is not one of RAF-DB's labels"]),
    ("train_00003.jpg", "image", "malformed row", ["line 5", "is not '<image name> <label>'"]),
    ("train_3.jpg 2", "image", "malformed row", ["line 5", "not a RAF-DB image name"]),
    ("train_00003.jpg nan", "image", "NaN value", ["line 5", "is NaN"]),
    ("train_00001.jpg 2", None, "duplicate image", ["line 5", "listed twice", "line 1"]),
])
def test_rafdb_bad_rows(tmp_path, extra, setup, kind, fragments):
    root = make_rafdb(tmp_path / "basic", extra)
    target = root / "Image" / "aligned" / "train_00003_aligned.jpg"
    place_image(target, setup)
    expect_bad("rafdb", root, tmp_path / "out", kind, fragments)


def test_rafdb_missing_label_list_names_the_file(tmp_path):
    root = tmp_path / "basic"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match="list_patition_label.txt"):
        run_prepare("rafdb", root, tmp_path / "out")
