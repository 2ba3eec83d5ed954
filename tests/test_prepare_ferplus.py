"""`ufer prepare ferplus`: fer2013.csv + fer2013new.csv, the three label rules, vote
distributions, empty image names, 48 x 48 grey PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_prepare_common import E7, E8, expect_bad, pixels, rows, run_prepare, write_text

from ufer.data.adapters.ferplus import VOTES, vote_target

VOTE_HEADER = "Usage,Image name," + ",".join(VOTES)
# Usage, image name, votes (neutral, happiness, surprise, sadness, anger, disgust, fear,
# contempt, unknown, NF)
ROWS = [("Training", "fer0000000.png", [4, 0, 0, 1, 5, 0, 0, 0, 0, 0]),
        ("Training", "", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),  # FERPlus left it out
        ("PublicTest", "fer0000002.png", [3, 3, 0, 0, 0, 0, 0, 0, 4, 0]),
        ("PrivateTest", "fer0000003.png", [0, 6, 0, 0, 0, 0, 0, 2, 0, 2]),
        ("Training", "fer0000004.png", [2, 2, 2, 2, 1, 1, 0, 0, 0, 0]),
        ("Training", "fer0000005.png", [0, 0, 0, 0, 0, 0, 0, 9, 1, 0])]


def grey(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8)


def make_ferplus(root: Path, pixel_rows: list[str] | None = None,
                 vote_rows: list[str] | None = None) -> Path:
    pixel_rows = pixel_rows or [f"0,{' '.join(map(str, grey(i).ravel()))},{usage}"
                                for i, (usage, _, _) in enumerate(ROWS)]
    vote_rows = vote_rows or [f"{usage},{name},{','.join(map(str, votes))}"
                              for usage, name, votes in ROWS]
    write_text(root / "fer2013.csv", "\n".join(["emotion,pixels,Usage", *pixel_rows]) + "\n")
    write_text(root / "fer2013new.csv", "\n".join([VOTE_HEADER, *vote_rows]) + "\n")
    return root


def dist(manifest, i: int) -> list[float]:
    return [float(manifest.frame[f"dist_{c}"].iat[i]) for c in manifest.classes]


def test_ferplus_plain_majority_row_by_row(tmp_path):
    manifest, meta, _ = run_prepare("ferplus", make_ferplus(tmp_path / "fer"), tmp_path / "out")
    assert rows(manifest, "path", "split", "label") == [
        ("images/FER2013Train/fer0000000.png", "train", E8.index("anger")),
        ("images/FER2013Test/fer0000003.png", "test", E8.index("happy")),
        ("images/FER2013Train/fer0000004.png", "train", E8.index("neutral")),  # tie: first
        ("images/FER2013Train/fer0000005.png", "train", E8.index("contempt")),
    ]
    # raw emotion votes, normalised: neutral 4, sad 1, anger 5 of 10
    assert dist(manifest, 0) == pytest.approx([0.4, 0, 0.1, 0, 0, 0, 0.5, 0])
    assert dist(manifest, 1) == pytest.approx([0, 0.75, 0, 0, 0, 0, 0, 0.25])
    for i, source in enumerate((0, 3, 4, 5)):
        image = pixels(manifest, i)
        assert image.shape == (48, 48) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, grey(source))
    assert meta["prepare"]["dropped"] == {"empty FERPlus image name (excluded by FERPlus)": 1,
                                          "majority: unknown has the most votes": 1}
    assert meta["classes"] == E8 and meta["source"]["label_rule"] == "majority"


def test_ferplus_official_majority(tmp_path):
    manifest, meta, _ = run_prepare("ferplus", make_ferplus(tmp_path / "fer"), tmp_path / "out",
                                    options={"label": "ferplus-majority"})
    assert rows(manifest, "path", "label") == [
        ("images/FER2013Train/fer0000000.png", E8.index("anger")),  # 5 of 9 after zeroing
        ("images/FER2013Test/fer0000003.png", E8.index("happy")),
        ("images/FER2013Train/fer0000005.png", E8.index("contempt")),
    ]
    assert meta["prepare"]["dropped"]["ferplus-majority: the votes do not agree enough"] == 2


def test_ferplus_official_probability_keeps_its_distribution(tmp_path):
    manifest, _, _ = run_prepare("ferplus", make_ferplus(tmp_path / "fer"), tmp_path / "out",
                                 options={"label": "ferplus-probability"})
    assert rows(manifest, "label") == [(E8.index("anger"),), (E8.index("happy"),),
                                       (E8.index("contempt"),)]
    assert dist(manifest, 0) == pytest.approx([4 / 9, 0, 0, 0, 0, 0, 5 / 9, 0])
    assert dist(manifest, 1) == pytest.approx([0, 0.75, 0, 0, 0, 0, 0, 0.25])  # NF tie removed
    assert dist(manifest, 2) == pytest.approx([0, 0, 0, 0, 0, 0, 0, 1])


def test_ferplus_seven_classes_drop_contempt(tmp_path):
    manifest, meta, _ = run_prepare("ferplus", make_ferplus(tmp_path / "fer"), tmp_path / "out",
                                    options={"classes": 7})
    assert meta["classes"] == E7 and len(manifest) == 3
    assert dist(manifest, 1) == pytest.approx([0, 1, 0, 0, 0, 0, 0])
    assert meta["prepare"]["dropped"][
        "FERPlus label 7 (contempt): not in the 7-class list"] == 1


@pytest.mark.parametrize("votes, rule, expected", [
    ([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], "ferplus-majority", None),  # all votes are outliers
    # NF ties neutral: NF is removed, neutral alone covers 3 of 6 <= 50 %: dropped
    ([3, 0, 0, 0, 0, 0, 0, 0, 0, 3], "ferplus-probability", None),
    ([0, 0, 0, 0, 0, 0, 0, 0, 5, 3], "ferplus-probability", [0] * 8 + [1, 0]),  # unknown
    ([5, 3, 2, 0, 0, 0, 0, 0, 0, 0], "ferplus-probability", [5 / 8, 3 / 8] + [0] * 8),  # 75 %
    ([4, 3, 3, 0, 0, 0, 0, 0, 0, 0], "ferplus-probability", [0.4, 0.3, 0.3] + [0] * 7),  # tie
    ([3, 3, 2, 2, 0, 0, 0, 0, 0, 0], "ferplus-probability", None),  # 4 emotions tie in

    ([4, 0, 0, 0, 0, 0, 0, 0, 6, 0], "majority", [0] * 8 + [1, 0]),
])
def test_vote_rules_by_hand(votes, rule, expected):
    target = vote_target(np.array(votes, dtype=float), rule)
    if expected is None:
        assert target is None
    else:
        np.testing.assert_allclose(target, expected)


def vote_line(name: str, votes: str, usage: str = "Training") -> str:
    return f"{usage},{name},{votes}"


GOOD_VOTES = "0,5,0,0,0,0,0,0,0,0"


@pytest.mark.parametrize("pixel_text, vote_text, kind, fragments", [
    (" ".join(["1"] * 2303), vote_line("fer0000006.png", GOOD_VOTES), "corrupt image",
     ["fer2013.csv, line 8, column 'pixels'", "2304 grey values"]),
    (" ".join(["300"] * 2304), vote_line("fer0000006.png", GOOD_VOTES), "corrupt image",
     ["fer2013.csv, line 8", "0..255"]),
    (None, "Training,fer0000006.png,1,2,3", "malformed row", ["fer2013new.csv, line 8",
                                                            "has 5 fields"]),
    (None, vote_line("fer0000006.png", "0,nan,0,0,0,0,0,0,0,0"), "NaN value",
     ["fer2013new.csv, line 8, column 'happiness'", "is NaN"]),
    (None, vote_line("fer0000006.png", GOOD_VOTES, usage="PublicTest"), "malformed row",
     ["line 8, column 'Usage'", "not row-aligned"]),
    (None, vote_line("fer0000006.png", GOOD_VOTES, usage="Holdout"), "malformed row",
     ["column 'Usage'", "value 'Holdout' is not a Usage"]),
    (None, vote_line("fer0000006.png", "0,-5,0,0,0,0,0,0,9,0"), "malformed row",
     ["line 8", "vote counts must be >= 0"]),
])
def test_ferplus_bad_rows(tmp_path, pixel_text, vote_text, kind, fragments):
    pixel_rows = [f"0,{' '.join(map(str, grey(i).ravel()))},{usage}"
                  for i, (usage, _, _) in enumerate(ROWS)]
    pixel_rows.append(f"0,{pixel_text or ' '.join(['7'] * 2304)},Training")
    vote_rows = [vote_line(name, ",".join(map(str, votes)), usage) for usage, name, votes in ROWS]
    root = make_ferplus(tmp_path / "fer", pixel_rows, vote_rows + [vote_text])
    expect_bad("ferplus", root, tmp_path / "out", kind, fragments)


def test_ferplus_files_must_pair_up(tmp_path):
    root = make_ferplus(tmp_path / "fer")
    with open(root / "fer2013.csv", "a") as handle:
        handle.write(f"0,{' '.join(['1'] * 2304)},Training\n")
    with pytest.raises(ValueError, match="more rows than its partner"):
        run_prepare("ferplus", root, tmp_path / "out")
    write_text(root / "fer2013new.csv", "Usage,Image,votes\n")
    with pytest.raises(ValueError, match="line 1: expected the header"):
        run_prepare("ferplus", root, tmp_path / "out")
