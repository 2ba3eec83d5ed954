"""`ufer prepare folder`: a user's ROOT/<class>/ or ROOT/<split>/<class>/ tree, --csv columns."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_prepare_common import (
    E7,
    FakeAligner,
    expect_bad,
    pixels,
    rows,
    run_prepare,
    write_corrupt,
    write_image,
    write_text,
)

IMAGES = ["Angry/001.jpg", "Happiness/002.png", "Happiness/003.jpg", "sad/004.jpeg"]


def make_folder(root: Path) -> Path:
    for i, name in enumerate(IMAGES):
        write_image(root / name, seed=i)
    write_text(root / "sad" / "notes.txt", "not a face")
    write_text(root / ".DS_Store", "")
    return root


def test_folder_flat_layout_row_by_row(tmp_path):
    manifest, meta, _ = run_prepare("folder", make_folder(tmp_path / "faces"), tmp_path / "out")
    happy, sad, anger = 0, 1, 2  # the project's order, restricted to the classes present
    assert meta["classes"] == ["happy", "sad", "anger"]
    assert rows(manifest, "path", "split", "label") == [
        ("images/Angry/001.jpg", "train", anger), ("images/Happiness/002.png", "train", happy),
        ("images/Happiness/003.jpg", "train", happy), ("images/sad/004.jpeg", "train", sad)]
    assert meta["source"]["class_map"] == {"Angry": "anger", "Happiness": "happy", "sad": "sad"}
    assert meta["prepare"]["dropped"] == {"not an image file": 1}


def test_folder_own_class_names_and_split_folders(tmp_path):
    root = tmp_path / "pets"
    for name in ("train/dog/a.jpg", "train/cat/b.jpg", "test/cat/c.jpg"):
        write_image(root / name)
    manifest, meta, _ = run_prepare("folder", root, tmp_path / "out")
    assert meta["classes"] == ["cat", "dog"]
    assert rows(manifest, "path", "split", "label") == [
        ("images/test/cat/c.jpg", "test", 0), ("images/train/cat/b.jpg", "train", 0),
        ("images/train/dog/a.jpg", "train", 1)]


def test_folder_seven_emotions_give_the_project_class_list(tmp_path):
    root = tmp_path / "faces"
    for i, name in enumerate(("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Angry")):
        write_image(root / name / f"{i}.jpg", seed=i)
    _, meta, _ = run_prepare("folder", root, tmp_path / "out", options={"split": "test"})
    assert meta["classes"] == E7


CSV_HEADER = "path,valence,arousal,AU12,subject,split"


def test_folder_csv_columns(tmp_path):
    root = make_folder(tmp_path / "faces")
    csv = write_text(tmp_path / "extra.csv", f'{CSV_HEADER}\nAngry/001.jpg,-0.5,0.6,0,p1,\n'
                                            '"Happiness/003.jpg",0.8,,1,p2,test\n')
    manifest, _, _ = run_prepare("folder", root, tmp_path / "out", options={"csv": csv})
    assert rows(manifest, "path", "split", "valence", "arousal", "AU12", "subject") == [
        ("images/Angry/001.jpg", "train", -0.5, 0.6, 0, "p1"),
        ("images/Happiness/002.png", "train", None, None, None, None),
        ("images/Happiness/003.jpg", "test", 0.8, None, 1, "p2"),
        ("images/sad/004.jpeg", "train", None, None, None, None)]


def test_folder_with_detection(tmp_path):
    manifest, _, _ = run_prepare("folder", make_folder(tmp_path / "faces"), tmp_path / "out",
                                 align=FakeAligner())
    assert rows(manifest, "path")[0] == ("images/Angry/001.png",)
    assert pixels(manifest, 0).shape == (4, 4, 3)


@pytest.mark.parametrize("line, kind, fragments", [
    ("Angry/999.jpg,0.1,0.1,0,p,", "missing image",
     ["extra.csv, line 2, column 'path'", "value 'Angry/999.jpg' names no image"]),
    ("Angry/001.jpg,nan,0.1,0,p,", "NaN value", ["line 2, column 'valence'", "is NaN"]),
    ("Angry/001.jpg,0.1,0.1,3,p,", "value out of range",
     ["line 2, column 'AU12'", "is outside [0, 1]"]),
    ("Angry/001.jpg,0.1,0.1", "malformed row", ["line 2", "has 3 fields, the header 6"]),
    ("Angry/001.jpg,0.1,0.1,0,p,holdout", "malformed row",
     ["column 'split'", "value 'holdout' is not a split"]),
])
def test_folder_bad_csv_rows(tmp_path, line, kind, fragments):
    root = make_folder(tmp_path / "faces")
    csv = write_text(tmp_path / "extra.csv", f"{CSV_HEADER}\n{line}\n")
    expect_bad("folder", root, tmp_path / "out", kind, fragments, options={"csv": csv})


def test_folder_bad_images_and_csv_headers(tmp_path):
    root = make_folder(tmp_path / "faces")
    write_corrupt(root / "sad" / "005.jpg")
    expect_bad("folder", root, tmp_path / "out", "corrupt image",
               ["sad/005.jpg", "cannot be decoded"])
    for header, message in (("file,valence", "needs a 'path' column"),
                            ("path,label", "cannot come from --csv")):
        csv = write_text(tmp_path / "extra.csv", header + "\n")
        with pytest.raises(ValueError, match=message):
            run_prepare("folder", root, tmp_path / "out2", options={"csv": csv})
    with pytest.raises(FileNotFoundError, match="no class folders"):
        run_prepare("folder", root / "sad", tmp_path / "out3")
