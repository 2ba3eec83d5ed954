"""read_manifest: one test per kind of bad input, each checking the exact place and value."""
from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pandas as pd
import pytest
from helpers import CLASSES, tiny_frame, write_images, write_tiny_manifest

from ufer.data import schema
from ufer.data.manifest import ManifestError, read_manifest


def _edit_csv(path, row: int, column: str, value: str) -> None:
    """Set one cell of a CSV manifest to raw text (row = 0-based data row)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)


@pytest.fixture
def csv(tmp_path):
    return write_tiny_manifest(tmp_path)


def _raises(path, pattern: str, **kwargs):
    return pytest.raises(ManifestError, match=re.escape(str(path)) + ".*" + pattern, **kwargs)


def test_valid_csv_round_trips_with_types(csv):
    m = read_manifest(csv)
    assert len(m) == 6 and m.classes == CLASSES and m.num_classes == 7
    assert m.root == csv.parent and m.au_names == ["AU01", "AU12"]
    assert m.has_va and m.has_dist and m.has_clean_label
    assert m.frame[schema.LABEL].dtype == np.int64
    assert m.frame[schema.CLEAN_LABEL].dtype == np.int64
    assert m.frame[schema.VALENCE].dtype == np.float64
    assert np.isnan(m.frame[schema.VALENCE].iat[1]) and np.isnan(m.frame["AU12"].iat[2])
    expected = tiny_frame()
    pd.testing.assert_frame_equal(m.frame, expected, check_dtype=False)
    assert m.meta["counts"]["train"]["neutral"] == 1


def test_parquet_round_trips_same_as_csv(tmp_path, csv):
    parquet = write_tiny_manifest(tmp_path / "pq", "m.parquet")
    a, b = read_manifest(csv).frame, read_manifest(parquet).frame
    pd.testing.assert_frame_equal(a, b)


def test_split_keeps_source_row_and_resolves_images(csv):
    m = read_manifest(csv)
    val = m.split("val")
    assert len(val) == 1 and list(val.frame.index) == [0]
    assert val.source_row(0) == 2 and val.frame["row"].iat[0] == 2
    assert val.image_path(0) == csv.parent / "img/002.png"
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        m.split("dev")


def test_missing_manifest_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found: .*nope.csv"):
        read_manifest(tmp_path / "nope.csv")


def test_missing_sidecar(csv):
    schema.sidecar_path(csv).unlink()
    with _raises(csv, r"sidecar .*m\.json is missing"):
        read_manifest(csv)


def test_sidecar_without_classes(csv):
    schema.sidecar_path(csv).write_text(json.dumps({"source": "x"}))
    with pytest.raises(ManifestError, match=r"m\.json: needs 'classes'"):
        read_manifest(csv)


def test_missing_required_column(csv):
    pd.read_csv(csv).drop(columns=["split"]).to_csv(csv, index=False)
    with _raises(csv, r"column 'split': required column is missing \(columns: path, label"):
        read_manifest(csv)


def test_empty_path(csv):
    _edit_csv(csv, 3, "path", "")
    with _raises(csv, r"row 3 \(line 5\), column 'path': image path is empty"):
        read_manifest(csv)


def test_duplicate_path(csv):
    _edit_csv(csv, 4, "path", "img/001.png")
    with _raises(csv, r"row 4 \(line 6\), column 'path': value 'img/001.png' duplicates row 1 "
                      r"\(line 3\)"):
        read_manifest(csv)


def test_unknown_split(csv):
    _edit_csv(csv, 2, "split", "training")
    with _raises(csv, r"row 2 \(line 4\), column 'split': value 'training' is not a split "
                      r"\(train, val, test\)"):
        read_manifest(csv)


def test_label_out_of_range(csv):
    _edit_csv(csv, 5, "label", "9")
    with _raises(csv, r"row 5 \(line 7\), column 'label': value '9' is not a class index 0\.\.6 "
                      r"\(classes: neutral, happy, sad"):
        read_manifest(csv)


def test_label_not_an_integer(csv):
    _edit_csv(csv, 1, "label", "2.5")
    with _raises(csv, r"row 1 \(line 3\), column 'label': value '2.5' is not an integer"):
        read_manifest(csv)


def test_label_not_a_number(csv):
    _edit_csv(csv, 0, "label", "happy")
    with _raises(csv, r"row 0 \(line 2\), column 'label': value 'happy' is not a number"):
        read_manifest(csv)


def test_label_missing(csv):
    _edit_csv(csv, 4, "label", "")
    with _raises(csv, r"row 4 \(line 6\), column 'label': is empty; every row needs a class"):
        read_manifest(csv)


def test_clean_label_out_of_range(csv):
    _edit_csv(csv, 2, "clean_label", "-1")
    with _raises(csv, r"row 2 \(line 4\), column 'clean_label': value '-1' is not a class index"):
        read_manifest(csv)


def test_valence_not_a_number(csv):
    _edit_csv(csv, 3, "valence", "high")
    with _raises(csv, r"row 3 \(line 5\), column 'valence': value 'high' is not a number"):
        read_manifest(csv)


def test_arousal_nan_string(csv):
    _edit_csv(csv, 2, "arousal", "NaN")
    with _raises(csv, r"row 2 \(line 4\), column 'arousal': value 'NaN' is NaN; leave the cell "
                      "empty"):
        read_manifest(csv)


def test_valence_out_of_range(csv):
    _edit_csv(csv, 4, "valence", "1.5")
    with _raises(csv, r"row 4 \(line 6\), column 'valence': value '1.5' is outside \[-1, 1\]"):
        read_manifest(csv)


def test_au_not_a_number(csv):
    _edit_csv(csv, 1, "AU12", "yes")
    with _raises(csv, r"row 1 \(line 3\), column 'AU12': value 'yes' is not a number"):
        read_manifest(csv)


def test_au_nan_string(csv):
    _edit_csv(csv, 0, "AU01", "nan")
    with _raises(csv, r"row 0 \(line 2\), column 'AU01': value 'nan' is NaN"):
        read_manifest(csv)


def test_au_out_of_range(csv):
    _edit_csv(csv, 5, "AU01", "5")
    with _raises(csv, r"row 5 \(line 7\), column 'AU01': value '5' is outside \[0, 1\]"):
        read_manifest(csv)


def test_dist_columns_not_matching_classes(csv):
    pd.read_csv(csv).rename(columns={"dist_anger": "dist_angry"}).to_csv(csv, index=False)
    with _raises(csv, r"dist_ columns do not match the classes: missing \['dist_anger'\], "
                      r"unknown \['dist_angry'\]"):
        read_manifest(csv)


def test_dist_negative(csv):
    _edit_csv(csv, 2, "dist_sad", "-0.1")
    with _raises(csv, r"row 2 \(line 4\), column 'dist_sad': value '-0.1' is negative"):
        read_manifest(csv)


def test_dist_not_summing_to_one(csv):
    _edit_csv(csv, 3, "dist_happy", "0.2")
    with _raises(csv, r"row 3 \(line 5\): dist_ values sum to 1\.11667, not 1 "
                      r"\(tolerance 0\.001\)"):
        read_manifest(csv)


def test_image_missing(csv):
    (csv.parent / "img/004.png").unlink()
    with _raises(csv, r"row 4 \(line 6\), column 'path': value 'img/004.png' points to a "
                      r"missing image file: .*img/004\.png"):
        read_manifest(csv)
    assert len(read_manifest(csv, check_images=False)) == 6


def test_malformed_csv_names_line(csv):
    lines = csv.read_text().splitlines()
    lines[3] += ",extra"
    csv.write_text("\n".join(lines) + "\n")
    with _raises(csv, r"line 4: malformed CSV: 16 fields where the header has 15"):
        read_manifest(csv)


def test_parquet_nan_is_missing_but_not_in_label(tmp_path):
    frame = tiny_frame()
    frame[schema.LABEL] = frame[schema.LABEL].astype(float)
    frame.loc[3, schema.LABEL] = np.nan
    path = tmp_path / "m.parquet"
    write_images(frame, tmp_path)
    frame.to_parquet(path, index=False)
    schema.sidecar_path(path).write_text(json.dumps({"classes": CLASSES}))
    with pytest.raises(ManifestError, match=r"m\.parquet, row 3, column 'label': is empty"):
        read_manifest(path)
    frame.loc[3, schema.LABEL] = 3.0
    frame.to_parquet(path, index=False)
    m = read_manifest(path)
    assert m.frame[schema.LABEL].dtype == np.int64 and np.isnan(m.frame[schema.VALENCE].iat[1])


def test_error_attributes_and_pickle(csv):
    _edit_csv(csv, 5, "label", "9")
    with pytest.raises(ManifestError) as info:
        read_manifest(csv)
    err = info.value
    assert (err.file, err.row, err.line, err.column, err.value) == (csv, 5, 7, "label", "9")
    assert str(pickle.loads(pickle.dumps(err))) == str(err)
