"""`ufer prepare affwild2`: ABAW combined MTL files (header line, -5 / -1 sentinels, 12 AUs)
and per-task per-video files."""
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

from ufer.data.adapters.affwild2 import AU_HEADER, AUS, EXPR_HEADER

HEADER = "image,valence,arousal,expression," + AU_HEADER
AU_ON = "0,0,0,1,1,0,1,0,0,0,1,0"  # AU6, AU7, AU12, AU25
AU_UNKNOWN = ",".join(["-1"] * 12)
TRAIN = ["1-30-1280x720/00001.jpg,0.3,0.4,4," + AU_ON,
         "1-30-1280x720/00002.jpg,-5,-5,1," + AU_UNKNOWN,  # VA and AUs unknown
         "1-30-1280x720/00003.jpg,0.1,0.2,-1," + AU_ON,  # no expression label
         "1-30-1280x720/00004.jpg,0.1,-5,7," + AU_ON,  # Other
         "video10_left/00001.jpg,-0.2,0.5,0,1,0,0,0,0,0,0,0,0,0,0,-1"]
VALIDATION = ["video20/00001.jpg,0.5,0.5,6," + AU_ON]


def make_combined(root: Path, extra: str = "") -> Path:
    train = [HEADER, *TRAIN] + ([extra] if extra else [])
    write_text(root / "training_set_annotations.txt", "\n".join(train) + "\n")
    write_text(root / "validation_set_annotations.txt", "\n".join([HEADER, *VALIDATION]) + "\n")
    for i, text in enumerate(TRAIN + VALIDATION):
        write_image(root / "cropped_aligned" / text.split(",")[0], seed=i)
    return root


def test_affwild2_combined_row_by_row(tmp_path):
    manifest, meta, _ = run_prepare("affwild2", make_combined(tmp_path / "abaw"), tmp_path / "o")
    assert rows(manifest, "path", "split", "label", "valence", "arousal") == [
        ("images/cropped_aligned/1-30-1280x720/00001.jpg", "train", E7.index("happy"), 0.3, 0.4),
        ("images/cropped_aligned/1-30-1280x720/00002.jpg", "train", E7.index("anger"), None,
         None),
        ("images/cropped_aligned/video10_left/00001.jpg", "train", E7.index("neutral"), -0.2,
         0.5),
        ("images/cropped_aligned/video20/00001.jpg", "test", E7.index("surprise"), 0.5, 0.5),
    ]
    assert manifest.au_names == AUS == ["AU01", "AU02", "AU04", "AU06", "AU07", "AU10", "AU12",
                                        "AU15", "AU23", "AU24", "AU25", "AU26"]
    assert rows(manifest, *AUS)[0] == (0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 0)
    assert rows(manifest, *AUS)[1] == (None,) * 12
    assert rows(manifest, "AU01", "AU26")[2] == (1, None)  # masked per column
    assert meta["aus"] == AUS
    assert meta["prepare"]["dropped"] == {
        "expression -1 (no expression label)": 1,
        "Aff-Wild2 label 7 (Other): not in the 7-class list": 1}
    assert meta["prepare"]["masked"] == {"valence": 1, "arousal": 1, **dict.fromkeys(AUS, 1),
                                         "AU26": 2}


def test_affwild2_keep_other(tmp_path):
    manifest, meta, _ = run_prepare("affwild2", make_combined(tmp_path / "abaw"), tmp_path / "o",
                                    options={"keep_other": True})
    assert meta["classes"] == E7 + ["other"]
    assert ("images/cropped_aligned/1-30-1280x720/00004.jpg", 7) in rows(manifest, "path", "label")


def make_tasks(root: Path) -> Path:
    """ABAW per-task folders; frame 2 has no label, frame 5 has no cropped image."""
    notes = root / "Third ABAW Annotations"
    write_text(notes / "EXPR_Classification_Challenge" / "Train_Set" / "vidA.txt",
               f"{EXPR_HEADER}\n4\n-1\n2\n7\n3\n")
    write_text(notes / "VA_Estimation_Challenge" / "Train_Set" / "vidA.txt",
               "valence,arousal\n0.1,0.2\n0.5,0.5\n-5,-5\n0.3,0.3\n")
    write_text(notes / "AU_Detection_Challenge" / "Train_Set" / "vidA.txt",
               f"{AU_HEADER}\n{AU_ON}\n{AU_ON}\n{AU_UNKNOWN}\n")
    write_text(notes / "EXPR_Classification_Challenge" / "Validation_Set" / "vidB.txt",
               f"{EXPR_HEADER}\n5\n")
    for name in ("vidA/00001.jpg", "vidA/00002.jpg", "vidA/00003.jpg", "vidA/00004.jpg",
                 "vidB/00001.jpg"):
        write_image(root / "cropped_aligned" / name)
    return root


def test_affwild2_per_task_files(tmp_path):
    manifest, meta, _ = run_prepare("affwild2", make_tasks(tmp_path / "abaw"), tmp_path / "o")
    assert rows(manifest, "path", "split", "label", "valence", "arousal", "AU06") == [
        ("images/cropped_aligned/vidA/00001.jpg", "train", E7.index("happy"), 0.1, 0.2, 1),
        ("images/cropped_aligned/vidA/00003.jpg", "train", E7.index("disgust"), None, None,
         None),
        ("images/cropped_aligned/vidB/00001.jpg", "test", E7.index("sad"), None, None, None),
    ]
    assert meta["source"]["layout"] == "tasks"
    assert meta["prepare"]["dropped"] == {
        "expression -1 (no expression label)": 1,
        "Aff-Wild2 label 7 (Other): not in the 7-class list": 1,
        "frame without a cropped_aligned image": 1}


def test_affwild2_per_task_bad_value_names_its_file(tmp_path):
    root = make_tasks(tmp_path / "abaw")
    write_text(root / "Third ABAW Annotations" / "VA_Estimation_Challenge" / "Train_Set" /
               "vidA.txt", "valence,arousal\n0.1,7\n")
    expect_bad("affwild2", root, tmp_path / "o", "value out of range",
               ["VA_Estimation_Challenge/Train_Set/vidA.txt, line 2, column 'arousal'",
                "value '7' is outside [-1, 1] and not the sentinel -5"])


@pytest.mark.parametrize("extra, setup, kind, fragments", [
    ("vid9/00001.jpg,0.1,0.1,2," + AU_ON, None, "missing image",
     ["training_set_annotations.txt, line 7", "does not exist"]),
    ("vid9/00001.jpg,0.1,0.1,2," + AU_ON, "corrupt", "corrupt image",
     ["line 7", "cannot be decoded"]),
    ("vid9/00001.jpg,0.1,0.1,9," + AU_ON, "image", "unknown label",
     ["line 7, column 'expression'", "value '9' is not one of Aff-Wild2's labels"]),
    ("vid9/00001.jpg,0.1,0.1,2", "image", "malformed row", ["line 7", "has 4 fields"]),
    ("vid9/00001.jpg,nan,0.1,2," + AU_ON, "image", "NaN value",
     ["line 7, column 'valence'", "is NaN"]),
    ("vid9/00001.jpg,-3,0.1,2," + AU_ON, "image", "value out of range",
     ["line 7, column 'valence'", "not the sentinel -5"]),
    ("vid9/00001.jpg,0.1,0.1,2,2,0,0,0,0,0,0,0,0,0,0,0", "image", "value out of range",
     ["line 7, column 'AU01'", "is not an AU occurrence"]),
    ("../vid9/00001.jpg,0.1,0.1,2," + AU_ON, "image", "malformed row",
     ["line 7", "value 'cropped_aligned/../vid9/00001.jpg' is not a relative path inside"]),
])
def test_affwild2_bad_rows(tmp_path, extra, setup, kind, fragments):
    root = make_combined(tmp_path / "abaw", extra)
    target = root / "cropped_aligned" / "vid9" / "00001.jpg"
    place_image(target, setup)
    expect_bad("affwild2", root, tmp_path / "o", kind, fragments)
