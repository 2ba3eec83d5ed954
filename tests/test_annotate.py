"""`ufer annotate`: AUs from OpenFace CSVs, a table or the prior table; VA from a table or
manifest columns; coverage; a NEW manifest, never the input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_prepare_common import E7, snapshot, write_image, write_text
from test_prepare_rafdb import make_rafdb

from ufer.cli.main import main
from ufer.data import schema
from ufer.data.adapters import prepare
from ufer.data.annotate import (
    ImageIndex,
    column_va,
    openface_aus,
    prior_aus,
    table_aus,
    table_va,
    write_annotated,
)
from ufer.data.au_prior import PRIOR_AUS, prior_matrix
from ufer.data.manifest import ManifestError, read_manifest, write_manifest
from ufer.data.noise import apply_noise

AU_R = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15",
        "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"]
AU_C = AU_R[:-1] + ["AU28", "AU45"]  # presence has AU28 too; neither has AU24


@pytest.fixture
def rafdb(tmp_path) -> Path:
    """A prepared RAF-DB manifest: 4 rows (train_00001, train_00002, test_0001, test_0002)."""
    root = make_rafdb(tmp_path / "basic")
    return prepare("rafdb", root, tmp_path / "rafdb", log=lambda _: None)


def openface_csv(path: Path, faces: list[tuple[float, dict[str, float]]],
                 sequence: bool = False, success: int = 1) -> Path:
    """An OpenFace 2.x CSV with its ', ' separators: FaceLandmarkImg ('face, confidence')
    or FeatureExtraction ('frame, face_id, timestamp, confidence, success')."""
    lead = (["frame", "face_id", "timestamp", "confidence", "success"] if sequence
            else ["face", "confidence"])
    header = lead + ["gaze_0_x"] + [f"{a}_r" for a in AU_R] + [f"{a}_c" for a in AU_C]
    lines = [", ".join(header)]
    for k, (confidence, aus) in enumerate(faces):
        first = [1, k, 0.0, confidence, success] if sequence else [k, confidence]
        values = first + [0.1] + [aus.get(a, 0.0) * 5 for a in AU_R] + [
            float(aus.get(a, 0.0) > 0) for a in AU_C]
        lines.append(", ".join(f"{v:g}" for v in values))
    return write_text(path, "\n".join(lines) + "\n")


def test_openface_join_filters_and_coverage(rafdb, tmp_path):
    of = tmp_path / "openface"
    openface_csv(of / "train_00001_aligned.csv", [(0.98, {"AU06": 0.4, "AU12": 0.8})])
    openface_csv(of / "train_00002_aligned.csv", [(0.5, {"AU01": 1.0})])  # low confidence
    openface_csv(of / "sub" / "test_0001_aligned.csv",  # two faces: the more confident one
                 [(0.85, {"AU04": 0.6}), (0.95, {"AU01": 0.2, "AU02": 0.2})])
    openface_csv(of / "test_0002_aligned.csv", [(0.99, {"AU01": 1.0})], sequence=True,
                 success=0)  # FeatureExtraction could not track it
    openface_csv(of / "unrelated.csv", [(0.99, {})])
    manifest = read_manifest(rafdb)
    values, info = openface_aus(manifest, of)
    assert list(values.columns) == sorted(AU_C) and "AU24" not in values.columns
    assert values.loc[0, ["AU06", "AU12", "AU01"]].tolist() == [1.0, 1.0, 0.0]
    assert values.loc[2, ["AU01", "AU02", "AU04"]].tolist() == [1.0, 1.0, 0.0]
    assert values.loc[[1, 3]].isna().all().all()
    assert info["coverage"] == {"rows": 4, "annotated": 2, "share": 0.5,
                                "per_split": {"train": 0.5, "test": 0.5}}
    assert info["counts"] == {"images without a face passing the filters": 2,
                              "csv files naming no manifest image": 1}
    intensity, _ = openface_aus(manifest, of, kind="intensity", min_confidence=0.4)
    assert "AU28" not in intensity.columns
    assert intensity.loc[0, "AU12"] == pytest.approx(0.8) and intensity.loc[1, "AU01"] == 1.0


def test_openface_bad_files_name_file_line_column(rafdb, tmp_path):
    manifest = read_manifest(rafdb)
    bad = write_text(tmp_path / "train_00001_aligned.csv",
                     "face, confidence, AU01_c, AU12_c\n0, 0.9, 1, 0\n1, 0.95, x, 1\n")
    with pytest.raises(ManifestError, match=r"line 3, column 'AU01_c': value 'x' is not a"):
        openface_aus(manifest, bad)
    write_text(bad, "face, confidence, AU01_c\n0, abc, 1\n")
    with pytest.raises(ManifestError, match=r"line 2, column 'confidence': value 'abc'"):
        openface_aus(manifest, bad)
    write_text(bad, "face, confidence, AU01_r\n0, 0.9, 5.5\n")
    with pytest.raises(ManifestError, match=r"line 2, column 'AU01_r': value '5.5' is outside"):
        openface_aus(manifest, bad, kind="intensity")
    write_text(bad, "face, confidence, pose_Rx\n0, 0.9, 0.1\n")
    with pytest.raises(ManifestError, match="not an OpenFace 2.x CSV"):
        openface_aus(manifest, bad)
    two_frames = openface_csv(tmp_path / "seq" / "train_00001_aligned.csv",
                              [(0.9, {}), (0.9, {})], sequence=True)
    write_text(two_frames, two_frames.read_text().replace("\n1, 1,", "\n2, 1,"))
    with pytest.raises(ManifestError, match="several frames"):
        openface_aus(manifest, two_frames)


def test_au_table(rafdb, tmp_path):
    manifest = read_manifest(rafdb)
    table = write_text(tmp_path / "aus.csv", "path, AU12, AU01\n"
                       "aligned/train_00002_aligned.jpg, 1, \n"
                       "images/aligned/test_0001_aligned.jpg, 0, 0.25\n"
                       "elsewhere/other.jpg, 1, 1\n")
    values, info = table_aus(manifest, table)
    assert list(values.columns) == ["AU12", "AU01"]
    assert values.loc[1].tolist()[0] == 1.0 and math.isnan(values.loc[1, "AU01"])
    assert values.loc[2].tolist() == [0.0, 0.25]
    assert info["coverage"]["annotated"] == 2 and info["counts"] == {
        "table rows naming no manifest image": 1}
    for text, message in (("path, AU12\ntest_0001_aligned.jpg, 2\n",
                           r"line 2, column 'AU12': value '2' is outside \[0, 1\]"),
                          ("path, AU12\ntest_0001_aligned.jpg, nan\n", "line 2.*is NaN"),
                          ("path, AU12\ntest_0001_aligned.jpg, 1\ntest_0001_aligned.png, 0\n",
                           "line 3.*same image as line 2"),
                          ("path, AU12\ntest_0001_aligned.jpg\n", "line 2.*has 1 fields"),
                          ("image, AU12\nx, 1\n", "line 1.*needs 'path'")):
        with pytest.raises(ManifestError, match=message):
            table_aus(manifest, write_text(tmp_path / "bad.csv", text))


def test_prior_follows_the_noisy_training_label_not_clean_label(tmp_path):
    root = tmp_path / "faces"
    for i in range(21):
        write_image(root / E7[i % 7] / f"{i:02d}.png", seed=i)
    clean = prepare("folder", root, tmp_path / "clean", log=lambda _: None)
    frame, meta = apply_noise(read_manifest(clean), protocol="symmetric", rate=0.5, seed=1,
                              exact=True)
    noisy = write_manifest(frame, meta, tmp_path / "clean" / "noisy.csv")
    manifest = read_manifest(noisy)
    values, info = prior_aus(manifest)
    flipped = manifest.frame["label"] != manifest.frame["clean_label"]
    assert flipped.sum() == 10
    table = prior_matrix(manifest.classes)
    np.testing.assert_array_equal(values.to_numpy(), table[manifest.frame["label"]])
    assert list(values.columns) == [schema.au_column(a) for a in PRIOR_AUS]
    assert info["weak"] is True and info["labels_noisy"] is True
    assert info["from_column"] == "label" and "table I" in info["table"]


def test_va_from_a_table_and_from_columns(rafdb, tmp_path):
    manifest = read_manifest(rafdb)
    table = write_text(tmp_path / "va.csv", "path,valence,arousal\n"
                       "train_00001_aligned.jpg,9,1\ntest_0002_aligned.jpg,5,\n")
    values, info = table_va(manifest, table, scale=(1, 9))
    assert rows_of(values) == [(1.0, -1.0), (None, None), (None, None), (0.0, None)]
    assert info["coverage"]["annotated"] == 2
    with pytest.raises(ManifestError, match=r"line 2, column 'valence'.*outside \[-1, 1\]"):
        table_va(manifest, table)
    frame = manifest.frame.assign(v=[10.0, -10.0, np.nan, 0.0], a=[0.0, 5.0, 1.0, np.nan])
    with_columns = write_manifest(frame, manifest.meta, tmp_path / "rafdb" / "cols.csv")
    values, _ = column_va(read_manifest(with_columns), ("v", "a"), scale=(-10, 10))
    assert rows_of(values) == [(1.0, 0.0), (-1.0, 0.5), (None, 0.1), (0.0, None)]
    with pytest.raises(ManifestError, match="row 0 \\(line 2\\), column 'v'"):
        column_va(read_manifest(with_columns), ("v", "a"))


def rows_of(values) -> list[tuple]:
    return [tuple(None if math.isnan(v) else round(v, 6) for v in row)
            for row in values.itertuples(index=False)]


def test_write_annotated_makes_a_new_manifest_and_never_touches_the_input(rafdb, tmp_path):
    manifest = read_manifest(rafdb)
    before = snapshot(rafdb.parent)
    values, info = prior_aus(manifest)
    out = write_annotated(manifest, values, info, tmp_path / "elsewhere" / "prior.csv",
                          what="au")
    assert snapshot(rafdb.parent) == before
    result = read_manifest(out)  # image paths now lead back to the prepared images
    assert result.frame["path"].iloc[0] == "../rafdb/images/aligned/train_00001_aligned.jpg"
    assert result.meta["aus"] == result.au_names == [schema.au_column(a) for a in PRIOR_AUS]
    assert result.meta["au_source"]["kind"] == "prior" and result.meta["classes"] == E7
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_annotated(manifest, values, info, out, what="au")
    (tmp_path / "elsewhere" / "prior.csv").unlink()  # the sidecar alone also blocks
    with pytest.raises(FileExistsError, match="prior.json"):
        write_annotated(manifest, values, info, out, what="au")
    with pytest.raises(ValueError, match="would overwrite the input"):
        write_annotated(manifest, values, info, rafdb, what="au", overwrite=True)


def test_cli_annotate(rafdb, tmp_path, capsys):
    out = tmp_path / "prior.csv"
    assert main(["annotate", "au", "--manifest", str(rafdb), "--source", "prior",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weak" in printed and "coverage 4 of 4 rows (100.0%" in printed
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["au_source"]["weak"] is True
    table = write_text(tmp_path / "va.csv", "path,valence,arousal\ntest_0001_aligned.jpg,.5,.5\n")
    assert main(["annotate", "va", "--manifest", str(out), "--csv", str(table),
                 "--out", str(tmp_path / "va_out.csv")]) == 0
    assert "coverage 1 of 4 rows (25.0%" in capsys.readouterr().out
    result = read_manifest(tmp_path / "va_out.csv")
    assert result.au_names and result.has_va  # the AUs of the input are kept
    assert main(["annotate", "va", "--manifest", str(out), "--csv", str(table),
                 "--out", str(tmp_path / "va_out.csv")]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_image_index_matches_trailing_parts():
    index = ImageIndex(["images/Train/Happy/x.png", "images/Val/Happy/x.png", "images/y.jpg"])
    assert index.find("y.csv") == 2
    assert index.find("openface_out/y.csv") == 2  # a unique stem is enough
    assert index.find("Val/Happy/x.csv") == 1
    assert index.find("nothing.csv") is None
    with pytest.raises(ValueError, match="several images"):
        index.find("Happy/x.csv")
