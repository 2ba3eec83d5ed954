"""`ufer prepare ckplus`: cohn-kanade-images + Emotion, last 3 frames + first as neutral,
subject-independent folds or the papers' random split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_prepare_common import (
    E7,
    E8,
    FakeAligner,
    expect_bad,
    pixels,
    rows,
    run_prepare,
    write_corrupt,
    write_image,
    write_text,
)

# subject, sequence, frames, emotion code (None: no emotion file)
SEQUENCES = [("S005", "001", 5, 3), ("S010", "002", 4, 2), ("S011", "001", 6, 7),
             ("S011", "002", 4, None), ("S022", "005", 4, 5)]


def frame(root: Path, subject: str, sequence: str, k: int) -> Path:
    return root / "cohn-kanade-images" / subject / sequence / f"{subject}_{sequence}_{k:08d}.png"


def make_ckplus(root: Path) -> Path:
    for s, (subject, sequence, frames, code) in enumerate(SEQUENCES):
        for k in range(1, frames + 1):
            write_image(frame(root, subject, sequence, k), seed=100 * s + k, size=(10, 8),
                        mode="L")
        if code is not None:
            write_text(root / "Emotion" / subject / sequence /
                       f"{subject}_{sequence}_{frames:08d}_emotion.txt",
                       f"   {code:.7e}\n")  # e.g. "   3.0000000e+00"
    return root


def test_ckplus_frames_labels_and_folds(tmp_path):
    root = make_ckplus(tmp_path / "CK+")
    manifest, meta, _ = run_prepare("ckplus", root, tmp_path / "out",
                                    options={"folds": 3, "test_fold": 1})
    got = rows(manifest, "path", "label", "subject")
    assert got == [
        ("images/cohn-kanade-images/S005/001/S005_001_00000001.png", E7.index("neutral"), "S005"),
        *[(f"images/cohn-kanade-images/S005/001/S005_001_{k:08d}.png", E7.index("disgust"),
           "S005") for k in (3, 4, 5)],
        ("images/cohn-kanade-images/S011/001/S011_001_00000001.png", E7.index("neutral"), "S011"),
        *[(f"images/cohn-kanade-images/S011/001/S011_001_{k:08d}.png", E7.index("surprise"),
           "S011") for k in (4, 5, 6)],
        ("images/cohn-kanade-images/S022/005/S022_005_00000001.png", E7.index("neutral"), "S022"),
        *[(f"images/cohn-kanade-images/S022/005/S022_005_{k:08d}.png", E7.index("happy"),
           "S022") for k in (2, 3, 4)],
    ]
    np.testing.assert_array_equal(pixels(manifest, 0).shape, (8, 10))  # grey, copied
    frame_ = manifest.frame
    by_subject = frame_.groupby("subject")[["fold", "split"]].nunique()
    assert (by_subject == 1).all().all()  # one fold and one split per subject
    assert sorted(frame_.groupby("subject")["fold"].first()) == [0, 1, 2]
    assert ((frame_["fold"] == 1) == (frame_["split"] == "test")).all()
    assert meta["prepare"]["dropped"] == {
        "sequence without an emotion file (not used)": 1,
        "CK+ label 2 (contempt): not in the 7-class list": 1}
    assert "3 subject-independent folds" in meta["source"]["protocol"]
    again, _, _ = run_prepare("ckplus", root, tmp_path / "again",
                              options={"folds": 3, "test_fold": 1})
    assert again.frame["fold"].tolist() == frame_["fold"].tolist()  # seeded


def test_ckplus_eight_classes_and_random_split(tmp_path):
    root = make_ckplus(tmp_path / "CK+")
    manifest, meta, _ = run_prepare("ckplus", root, tmp_path / "out",
                                    options={"classes": 8, "random_split": 0.25, "seed": 3})
    assert meta["classes"] == E8 and len(manifest) == 16
    assert (manifest.frame["label"] == E8.index("contempt")).sum() == 3
    assert (manifest.frame["split"] == "test").sum() == 4
    assert "fold" not in manifest.frame.columns
    assert "NOT subject-independent" in meta["source"]["protocol"]


def test_ckplus_with_detection(tmp_path):
    root = make_ckplus(tmp_path / "CK+")
    manifest, meta, _ = run_prepare("ckplus", root, tmp_path / "out", options={"folds": 2},
                                    align=FakeAligner())
    assert manifest.frame["path"].str.endswith(".png").all()
    assert pixels(manifest, 0).shape == (4, 4, 3)
    assert meta["prepare"]["images"]["aligned"]["detector"] == "fake"


def test_ckplus_too_many_folds_for_the_subjects(tmp_path):
    with pytest.raises(ValueError, match="3 subjects cannot fill 10 folds"):
        run_prepare("ckplus", make_ckplus(tmp_path / "CK+"), tmp_path / "out")


def emotion_file(root: Path, subject: str, sequence: str, frames: int) -> Path:
    return root / "Emotion" / subject / sequence / f"{subject}_{sequence}_{frames:08d}_emotion.txt"


@pytest.mark.parametrize("content, frames, setup, kind, fragments", [
    ("8.0000000e+00", 4, None, "unknown label",
     ["S030_001_00000004_emotion.txt, line 1, column 'emotion'", "value '8' is not one of CK+'s labels"]),
    ("nan", 4, None, "NaN value", ["line 1, column 'emotion'", "is NaN"]),
    ("1.0 2.0", 4, None, "malformed row", ["line 1", "should hold one number"]),
    ("1.0", 3, None, "malformed row", ["the sequence has 3 frames up to its peak"]),
    ("1.0", 4, "no peak", "missing image", ["names a peak frame that does not exist"]),
    ("1.0", 4, "corrupt", "corrupt image", ["S030_001_00000002.png", "cannot be decoded"]),
])
def test_ckplus_bad_sequences(tmp_path, content, frames, setup, kind, fragments):
    root = make_ckplus(tmp_path / "CK+")
    for k in range(1, frames + 1):
        write_image(frame(root, "S030", "001", k), seed=k, mode="L")
    write_text(emotion_file(root, "S030", "001", frames), f"   {content}\n")
    if setup == "no peak":
        frame(root, "S030", "001", frames).unlink()
    elif setup == "corrupt":
        write_corrupt(frame(root, "S030", "001", 2))
    expect_bad("ckplus", root, tmp_path / "out", kind, fragments, options={"folds": 2})
