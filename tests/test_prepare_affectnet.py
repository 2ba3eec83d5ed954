"""`ufer prepare affectnet`: manual CSV lists (header / headerless), --auto, --crop, the
train_set/val_set npy layout, codes 8-10 and the -2 VA sentinel."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_prepare_common import (
    E7,
    E8,
    expect_bad,
    pixels,
    place_image,
    rows,
    run_prepare,
    source_pixels,
    write_image,
    write_text,
)

HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
          "expression,valence,arousal")
LANDMARKS = ";".join(f"{v:.2f}" for v in range(136))  # 68 (x, y) points
# name, box (x, y, w, h), expression, valence, arousal
TRAIN = [("689/a1.jpg", (2, 2, 6, 6), 1, "0.5", "0.25"),
         ("689/a2.jpg", (0, 0, 12, 10), 7, "-0.3", "0.4"),  # contempt
         ("690/a3.jpg", (0, 0, 5, 5), 8, "-2", "-2"),  # None
         ("690/a4.jpg", (0, 0, 5, 5), 9, "-2", "-2"),  # Uncertain
         ("690/a5.jpg", (0, 0, 5, 5), 10, "-2", "-2"),  # Non-Face
         ("690/a6.jpg", (1, 1, 4, 4), 0, "-2", "0.1")]  # neutral with a -2 valence
VALIDATION = [("700/b1.jpg", (0, 0, 12, 10), 6, "-0.6", "0.7"),
              ("700/b2.jpg", (3, 1, 5, 7), 3, "0.2", "0.9")]


def line(name, box, code, valence, arousal) -> str:
    return ",".join([name, *map(str, box), LANDMARKS, str(code), valence, arousal])


def make_affectnet(root: Path, extra: str = "", auto: bool = False) -> Path:
    """training.csv with its header, validation.csv without one (as some copies have)."""
    lists, images = root / "Manually_Annotated_file_lists", root / "Manually_Annotated_Images"
    train = [HEADER] + [line(*e) for e in TRAIN] + ([extra] if extra else [])
    write_text(lists / "training.csv", "\n".join(train) + "\n")
    write_text(lists / "validation.csv", "\n".join(line(*e) for e in VALIDATION) + "\n")
    for i, entry in enumerate(TRAIN + VALIDATION):
        write_image(images / entry[0], seed=i, size=(12, 10))
    if auto:
        write_text(root / "Automatically_Annotated_file_lists" / "automatically_annotated.csv",
                   HEADER + "\n" + line("900/c1.jpg", (0, 0, 12, 10), 5, "-0.5", "0.3") + "\n")
        write_image(root / "Automatically_Annotated_Images" / "900" / "c1.jpg", seed=50,
                    size=(12, 10))
    return root


def test_affectnet_manual_lists_row_by_row(tmp_path):
    root = make_affectnet(tmp_path / "AffectNet")
    manifest, meta, log = run_prepare("affectnet", root, tmp_path / "out")
    assert rows(manifest, "path", "split", "label", "valence", "arousal") == [
        ("images/Manually_Annotated_Images/689/a1.jpg", "train", E7.index("happy"), 0.5, 0.25),
        ("images/Manually_Annotated_Images/690/a6.jpg", "train", E7.index("neutral"), None,
         0.1),
        ("images/Manually_Annotated_Images/700/b1.jpg", "test", E7.index("anger"), -0.6, 0.7),
        ("images/Manually_Annotated_Images/700/b2.jpg", "test", E7.index("surprise"), 0.2, 0.9),
    ]
    assert meta["prepare"]["dropped"] == {
        "AffectNet label 7 (Contempt): not in the 7-class list": 1,
        "AffectNet label 8 (None)": 1, "AffectNet label 9 (Uncertain)": 1,
        "AffectNet label 10 (Non-Face)": 1}
    assert meta["prepare"]["masked"] == {"valence": 1}
    assert meta["classes"] == E7
    assert any("dropped  4" in entry for entry in log)


def test_affectnet_eight_classes_keep_contempt(tmp_path):
    root = make_affectnet(tmp_path / "AffectNet")
    manifest, meta, _ = run_prepare("affectnet", root, tmp_path / "out", options={"classes": 8})
    assert meta["classes"] == E8
    assert ("images/Manually_Annotated_Images/689/a2.jpg", E8.index("contempt")) in rows(
        manifest, "path", "label")
    assert len(manifest) == 5


def test_affectnet_crop_to_the_face_box(tmp_path):
    root = make_affectnet(tmp_path / "AffectNet")
    manifest, meta, _ = run_prepare("affectnet", root, tmp_path / "out", options={"crop": True})
    assert rows(manifest, "path")[0] == ("images/Manually_Annotated_Images/689/a1.png",)
    source = source_pixels(root / "Manually_Annotated_Images" / "689" / "a1.jpg")
    np.testing.assert_array_equal(pixels(manifest, 0), source[2:8, 2:8])  # rows y, columns x
    np.testing.assert_array_equal(pixels(manifest, 3), source_pixels(
        root / "Manually_Annotated_Images" / "700" / "b2.jpg")[1:8, 3:8])
    assert meta["source"]["face_box_crop"] is True


def test_affectnet_auto_list_replaces_the_training_rows(tmp_path):
    root = make_affectnet(tmp_path / "AffectNet", auto=True)
    manifest, meta, _ = run_prepare("affectnet", root, tmp_path / "out", options={"auto": True})
    assert rows(manifest, "path", "split", "label") == [
        ("images/Automatically_Annotated_Images/900/c1.jpg", "train", E7.index("disgust")),
        ("images/Manually_Annotated_Images/700/b1.jpg", "test", E7.index("anger")),
        ("images/Manually_Annotated_Images/700/b2.jpg", "test", E7.index("surprise")),
    ]
    assert meta["source"]["training_list"] == "automatic"


def save_scalar(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array(value))


def make_npy_layout(root: Path) -> Path:
    """train_set/val_set with images/<id>.jpg and annotations/<id>_{exp,val,aro,lnd}.npy."""
    entries = {"train_set": [(10, "1", "0.7", "0.2"), (2, "4", "-0.5", "0.6"),
                             (3, "9", "-2", "-2")],
               "val_set": [(0, "7", "-0.4", "0.3")]}
    for folder, items in entries.items():
        for ident, exp, val, aro in items:
            notes = root / folder / "annotations"
            for suffix, value in (("exp", exp), ("val", val), ("aro", aro)):
                save_scalar(notes / f"{ident}_{suffix}.npy", value)
            np.save(notes / f"{ident}_lnd.npy", np.zeros(136, dtype=np.float32))
            write_image(root / folder / "images" / f"{ident}.jpg", seed=ident)
    return root


def test_affectnet_npy_layout(tmp_path):
    root = make_npy_layout(tmp_path / "AffectNet")
    manifest, meta, _ = run_prepare("affectnet", root, tmp_path / "out", options={"classes": 8})
    assert rows(manifest, "path", "split", "label", "valence", "arousal") == [
        ("images/train_set/2.jpg", "train", E8.index("fear"), -0.5, 0.6),  # numeric id order
        ("images/train_set/10.jpg", "train", E8.index("happy"), 0.7, 0.2),
        ("images/val_set/0.jpg", "test", E8.index("contempt"), -0.4, 0.3),
    ]
    assert meta["source"]["layout"] == "npy"
    assert meta["prepare"]["dropped"] == {"AffectNet label 9 (Uncertain)": 1}


def test_affectnet_npy_missing_annotation_is_a_bad_row(tmp_path):
    root = make_npy_layout(tmp_path / "AffectNet")
    (root / "train_set" / "annotations" / "2_aro.npy").unlink()
    expect_bad("affectnet", root, tmp_path / "out", "malformed row",
               ["2_exp.npy", "annotation file is missing", "2_aro.npy"])


@pytest.mark.parametrize("extra, setup, kind, fragments", [
    (line("691/x.jpg", (0, 0, 5, 5), 2, "0.1", "0.1"), None, "missing image",
     ["training.csv, line 8", "x.jpg", "does not exist"]),
    (line("691/x.jpg", (0, 0, 5, 5), 2, "0.1", "0.1"), "corrupt", "corrupt image",
     ["training.csv, line 8", "cannot be decoded"]),
    (line("691/x.jpg", (0, 0, 5, 5), 11, "0.1", "0.1"), "image", "unknown label",
     ["line 8, column 'expression'", "value '11' is not one of AffectNet's labels"]),
    ("691/x.jpg,0,0,5,5,1;2,2", "image", "malformed row", ["line 8", "has 7 fields"]),
    (line("691/x.jpg", (0, 0, 5, 5), 2, "nan", "0.1"), "image", "NaN value",
     ["line 8, column 'valence'", "is NaN"]),
    (line("691/x.jpg", (0, 0, 5, 5), 2, "abc", "0.1"), "image", "malformed row",
     ["line 8, column 'valence'", "value 'abc' is not a number"]),
])
def test_affectnet_bad_rows(tmp_path, extra, setup, kind, fragments):
    root = make_affectnet(tmp_path / "AffectNet", extra)
    target = root / "Manually_Annotated_Images" / "691" / "x.jpg"
    place_image(target, setup)
    expect_bad("affectnet", root, tmp_path / "out", kind, fragments)


def test_affectnet_face_box_outside_the_image(tmp_path):
    root = make_affectnet(tmp_path / "AffectNet", line("691/x.jpg", (40, 40, 5, 5), 2, "0", "0"))
    write_image(root / "Manually_Annotated_Images" / "691" / "x.jpg", size=(12, 10))
    expect_bad("affectnet", root, tmp_path / "out", "value out of range",
               ["training.csv, line 8", "face box", "outside the 12 x 10 image"],
               options={"crop": True})
