"""FERPlus: Kaggle's ``fer2013.csv`` (pixels) + Microsoft's ``fer2013new.csv`` (votes).

``fer2013.csv`` has ``emotion, pixels, Usage``: 2304 space-separated grey values per row
(48 x 48). ``fer2013new.csv`` has ``Usage, Image name`` and ten vote counts (neutral,
happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF) in the same row
order. Rows with an empty image name (173 in the release) are skipped and counted. Usage
Training / PublicTest / PrivateTest -> train / val / test. Images are written as 48 x 48 grey
PNGs named after the FERPlus image name.

Label rules (``--label``):

- ``majority``: the plain argmax of the ten raw votes (ties: the first in vote order), what
  the FER papers (SCN, DMUE, MTAC) use; dropped when it is unknown or NF.
- ``ferplus-majority``: Microsoft's rule: vote counts <= 1 are zeroed, the argmax is kept when
  it holds more than half of the remaining votes, otherwise the image is dropped.
- ``ferplus-probability``: Microsoft's ``probability``/``crossentropy`` rule: after zeroing
  counts <= 1, the top emotions (ties together, at most 3) are taken until they cover
  75 % of the votes; dropped when they cover <= 50 %, when more than 3 tie, or when unknown
  or NF ties the top.

``dist_<class>`` holds the raw emotion votes normalised to sum 1 (``majority``,
``ferplus-majority``), or Microsoft's processed distribution, the training target of
``ferplus-probability``.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ufer.data import schema
from ufer.data.adapters.common import (
    CORRUPT_IMAGE,
    MALFORMED,
    BadValue,
    Item,
    LabelMap,
    Ledger,
    Source,
    class_list,
    csv_fields,
    each_row,
    require,
    text_lines,
    to_int,
)

NAME = "ferplus"
SUMMARY = ("FERPlus: fer2013.csv + fer2013new.csv; --label majority | ferplus-majority | "
           "ferplus-probability; votes kept as dist_*")
ALIGNS = False
VOTES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
         "unknown", "NF")
EMOTIONS = 8  # the first 8 vote columns are emotions; unknown and NF are not
LABEL_RULES = ("majority", "ferplus-majority", "ferplus-probability")
USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
SIDE = 48


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", choices=LABEL_RULES, default="majority",
                        help="how votes become one label (default: majority = plain argmax, "
                             "what the FER papers use; ferplus-* are Microsoft's rules)")
    parser.add_argument("--classes", type=int, choices=(7, 8), default=8,
                        help="8 (with contempt, default) or 7 (contempt images dropped)")


def read(root: Path, ledger: Ledger, *, label: str = "majority", classes: int = 8) -> Source:
    """FERPlus as manifest items (see the module docstring).

    Args:
        root: folder holding ``fer2013.csv`` and ``fer2013new.csv``.
        ledger: bookkeeping of kept / dropped / bad rows.
        label: one of ``LABEL_RULES``.
        classes: 8, or 7 to drop contempt.
    """
    if label not in LABEL_RULES:
        raise ValueError(f"--label must be one of {LABEL_RULES}, got {label!r}")
    pixels_file = require(root / "fer2013.csv", "fer2013.csv (Kaggle's FER2013 release)")
    votes_file = require(root / "fer2013new.csv", "fer2013new.csv (github.com/microsoft/FERPlus)")
    labels = LabelMap(dict(enumerate(VOTES[:EMOTIONS])), class_list(classes), dataset="FERPlus")
    keep = [VOTES.index(_vote_name(c)) for c in labels.classes]  # vote column of each class

    def parse(line: int, pair: tuple[int, str, str]) -> Item | None:
        usage, name, votes = _vote_row(pair[2])
        pixel_usage, pixels = _pixel_row(pair[1], pixels_file, pair[0])
        if pixel_usage != usage:
            raise BadValue(MALFORMED, f"Usage differs from fer2013.csv line {pair[0]} "
                           f"({pixel_usage!r}): the files are not row-aligned", column="Usage",
                           value=usage)
        if not name:
            ledger.drop("empty FERPlus image name (excluded by FERPlus)")
            return None
        target = vote_target(votes, label)
        if target is None:
            ledger.drop(f"{label}: the votes do not agree enough")
            return None
        top = int(target.argmax())
        if top >= EMOTIONS:
            ledger.drop(f"{label}: {VOTES[top]} has the most votes")
            return None
        index = labels.index(top, ledger)
        if index is None:
            return None
        dist = (target if label == "ferplus-probability" else votes)[keep]
        values = {schema.DIST_PREFIX + c: float(v) for c, v in zip(labels.classes,
                                                                    dist / dist.sum())}
        return Item(image=pixels, name=f"{FOLDERS[usage]}/{name}", split=USAGE[usage],
                    label=index, file=votes_file, line=line, values=values)

    rows = _paired_lines(pixels_file, votes_file)
    return Source(classes=labels.classes, items=each_row(rows, votes_file, ledger, parse),
                  files=[pixels_file, votes_file], class_map=labels.describe(),
                  notes={"label_rule": label,
                         "dist": ("Microsoft's processed distribution"
                                  if label == "ferplus-probability"
                                  else "raw emotion votes, normalised")})


def _vote_name(name: str) -> str:
    """Vote column of a project class name (happy -> happiness, ...)."""
    return {"happy": "happiness", "sad": "sadness"}.get(name, name)


def _paired_lines(pixels_file: Path,
                  votes_file: Path) -> Iterator[tuple[int, tuple[int, str, str]]]:
    """(votes line, (pixels line, fer2013 text, fer2013new text)) after both headers."""
    pixels, votes = text_lines(pixels_file), text_lines(votes_file)
    _header(pixels, pixels_file, "emotion,pixels,Usage")
    _header(votes, votes_file, "Usage,Image name," + ",".join(VOTES))
    for (line, vote_text), pixel in zip(votes, pixels, strict=False):
        yield line, (*pixel, vote_text)
    for file, rest in ((votes_file, votes), (pixels_file, pixels)):
        extra = next(rest, None)
        if extra is not None:
            raise ValueError(f"{file}, line {extra[0]}: the file has more rows than its partner; "
                             "fer2013.csv and fer2013new.csv must have the same rows")


def _header(lines: Iterator[tuple[int, str]], file: Path, expected: str) -> None:
    first = next(lines, None)
    if first is None or first[1].replace(" ", "") != expected.replace(" ", ""):
        got = "nothing" if first is None else repr(first[1][:100])
        raise ValueError(f"{file}, line 1: expected the header {expected!r}, found {got}")


def _vote_row(text: str) -> tuple[str, str, np.ndarray]:
    fields = csv_fields(text)
    if len(fields) != 2 + len(VOTES):
        raise BadValue(MALFORMED, f"has {len(fields)} fields, expected {2 + len(VOTES)} (Usage, "
                       "Image name, 10 vote counts)", value=text[:80])
    usage, name = fields[:2]
    if usage not in USAGE:
        raise BadValue(MALFORMED, f"is not a Usage ({', '.join(USAGE)})", column="Usage",
                       value=usage)
    votes = np.array([to_int(v, c) for v, c in zip(fields[2:], VOTES)], dtype=np.float64)
    if (votes < 0).any():
        raise BadValue(MALFORMED, "vote counts must be >= 0", value=",".join(fields[2:]))
    return usage, name, votes


def _pixel_row(text: str, file: Path, line: int) -> tuple[str, np.ndarray]:
    """(Usage, uint8 (48, 48) image) of one fer2013.csv row."""
    fields = csv_fields(text)
    if len(fields) != 3:
        raise BadValue(MALFORMED, "is not 'emotion,pixels,Usage'", value=text[:80], file=file,
                       line=line)
    values = fields[1].split()
    try:
        pixels = np.array(values, dtype=np.int64)
    except ValueError:
        pixels = np.array([])
    if pixels.size != SIDE * SIDE or pixels.min() < 0 or pixels.max() > 255:
        raise BadValue(CORRUPT_IMAGE, f"is not {SIDE * SIDE} grey values 0..255 ({len(values)} "
                       "fields)", column="pixels", value=fields[1][:40], file=file, line=line)
    return fields[2], pixels.astype(np.uint8).reshape(SIDE, SIDE)


def vote_target(votes: np.ndarray, rule: str) -> np.ndarray | None:
    """The label distribution a rule makes of one image's ten votes.

    Args:
        votes: float (10,) vote counts in ``VOTES`` order.
        rule: one of ``LABEL_RULES``.

    Returns:
        float (10,) summing to 1 whose argmax is the label (it may be unknown or NF, which
        the caller drops), or None when the rule discards the image.
    """
    if rule == "majority":
        return one_hot(int(np.argmax(votes)))
    kept = np.where(votes <= 1, 0.0, votes)  # Microsoft's outlier removal
    total = kept.sum()
    if total == 0:
        return None
    if rule == "ferplus-majority":
        top = int(np.argmax(kept))
        return one_hot(top) if kept[top] > 0.5 * total else None
    taken = _top_emotions(kept)
    covered = taken.sum()
    if covered <= 0.5 * total or np.count_nonzero(taken) > 3:
        return None
    return taken / covered


def one_hot(index: int) -> np.ndarray:
    """float (10,) with a 1 at ``index``."""
    target = np.zeros(len(VOTES))
    target[index] = 1.0
    return target


def _top_emotions(votes: np.ndarray) -> np.ndarray:
    """Microsoft's greedy pick: whole tie groups of the highest counts, until 75 % of the
    votes are covered, 3 emotions are taken, or unknown/NF joins a tie (then unknown/NF
    is kept only when it is the first pick, which makes the image unknown)."""
    left, taken = votes.copy(), np.zeros_like(votes)
    total = votes.sum()
    while taken.sum() < 0.75 * total and np.count_nonzero(taken) < 3:
        tied = np.flatnonzero(left == left.max())
        for i in tied:
            taken[i], left[i] = left[i], 0.0
            if i >= EMOTIONS:
                if taken.sum() > taken[i]:
                    taken[i] = 0.0
                return taken
    return taken
