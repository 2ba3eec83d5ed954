"""`ufer prepare sfew`: Train/<Emotion>, Val/<Emotion> (Val = test), detection injected."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from test_prepare_common import (
    E7,
    FakeAligner,
    expect_bad,
    pixels,
    rows,
    run_prepare,
    source_pixels,
    write_corrupt,
    write_image,
    write_text,
)

FRAMES = {"Train/Angry/Movie_A_001.png": 1, "Train/Happy/Movie_B_010.png": 2,
          "Val/Sad/Movie_C_100.png": 3}


def make_sfew(root: Path) -> Path:
    for name, seed in FRAMES.items():
        write_image(root / name, seed=seed, size=(12, 10))
    black = root / "Val" / "Neutral" / "Movie_D_002.png"  # no face in it
    black.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(black)
    write_text(root / "Train" / "Happy" / "Thumbs.db", "junk")
    write_image(root / "Test" / "Movie_E_001.png", seed=9)  # unlabelled, not read
    return root


def test_sfew_with_detection_row_by_row(tmp_path):
    root = make_sfew(tmp_path / "SFEW")
    manifest, meta, _ = run_prepare("sfew", root, tmp_path / "out", align=FakeAligner())
    assert rows(manifest, "path", "split", "label") == [
        ("images/Train/Angry/Movie_A_001.png", "train", E7.index("anger")),
        ("images/Train/Happy/Movie_B_010.png", "train", E7.index("happy")),
        ("images/Val/Sad/Movie_C_100.png", "test", E7.index("sad")),
    ]
    for i, name in enumerate(FRAMES):
        np.testing.assert_array_equal(pixels(manifest, i), source_pixels(root / name)[:4, :4])
    assert meta["prepare"]["dropped"] == {"not an image file": 1, "no face detected": 1}
    assert meta["prepare"]["images"]["aligned"] == {"detector": "fake", "size": 4}
    assert "Test/" in meta["source"]["not_read"]


def test_sfew_without_detection_copies_the_frames_and_says_so(tmp_path):
    root = make_sfew(tmp_path / "SFEW")
    manifest, meta, log = run_prepare("sfew", root, tmp_path / "out")
    assert len(manifest) == 4 and meta["prepare"]["images"]["aligned"] is False
    assert "without face detection" in log[0]


def test_sfew_bad_inputs(tmp_path):
    root = make_sfew(tmp_path / "SFEW")
    write_image(root / "Train" / "Happyy" / "Movie_F_001.png")
    expect_bad("sfew", root, tmp_path / "out", "unknown label",
               ["Happyy/Movie_F_001.png, column 'folder'", "value 'Happyy' is not one of SFEW's"])
    root = make_sfew(tmp_path / "SFEW2")
    write_corrupt(root / "Val" / "Sad" / "Movie_G_001.png")
    expect_bad("sfew", root, tmp_path / "out2", "corrupt image",
               ["Movie_G_001.png", "cannot be decoded"], align=FakeAligner())
