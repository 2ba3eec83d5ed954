"""CK+: ``cohn-kanade-images/Sxxx/yyy/*.png`` and ``Emotion/Sxxx/yyy/*_emotion.txt``.

Each labelled sequence has one emotion file named after its peak (last) frame and holding
one float, e.g. ``3.0000000e+00``: 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy,
6 sadness, 7 surprise. The common protocol keeps the peak frame and the two before it with
the sequence's label, and the first frame as neutral (4 images per sequence). Sequences
without an emotion file are not used; with ``--classes 7`` (default) the contempt sequences
are dropped whole (POI's 1,236 = 309 x 4 images). Drop counts are in sequences.

Splits: subject-independent folds by default (``--folds 10``: subjects shuffled with
``--seed`` and dealt round-robin into folds; fold ``--test-fold`` is the test split, the
others train; ``fold`` and ``subject`` columns are kept so other folds can be selected).
``--random-split 0.2`` is the papers' image-level random 8:2 split instead, which puts
frames of one sequence on both sides (identity leakage; the sidecar says so).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from ufer.data.adapters.common import (
    MALFORMED,
    MISSING_IMAGE,
    UNKNOWN_LABEL,
    BadValue,
    Item,
    LabelMap,
    Ledger,
    Source,
    class_list,
    image_files,
    require,
    subfolders,
    to_int,
)

NAME = "ckplus"
SUMMARY = ("CK+: cohn-kanade-images + Emotion; last 3 frames + first as neutral; "
           "subject-independent folds (--folds 10) or --random-split")
ALIGNS = True
LABELS = {1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy", 6: "sadness",
          7: "surprise"}
IMAGES, EMOTION = "cohn-kanade-images", "Emotion"
PEAK_FRAMES = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", type=int, choices=(7, 8), default=7,
                        help="7 (contempt sequences dropped, default) or 8")
    parser.add_argument("--folds", type=int, default=10, metavar="K",
                        help="subject-independent folds (default: 10)")
    parser.add_argument("--test-fold", type=int, default=0, metavar="F",
                        help="the fold used as the test split, 0..K-1 (default: 0)")
    parser.add_argument("--random-split", type=float, default=None, metavar="FRACTION",
                        help="instead of folds: this fraction of the images, drawn at random, "
                             "is the test split (the papers' 8:2 is 0.2; not subject-independent)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the fold assignment or random split (default: 0)")


def read(root: Path, ledger: Ledger, *, classes: int = 7, folds: int = 10, test_fold: int = 0,
         random_split: float | None = None, seed: int = 0) -> Source:
    """CK+ as manifest items (see the module docstring).

    Args:
        root: folder holding ``cohn-kanade-images/`` and ``Emotion/``.
        ledger: bookkeeping of kept / dropped / bad rows.
        classes: 7 or 8 (8 keeps contempt).
        folds: K >= 2 subject-independent folds.
        test_fold: the fold that is the test split.
        random_split: fraction in (0, 1) of images drawn as the test split instead of folds.
        seed: seed of the fold assignment or the random split.
    """
    _check_split_options(folds, test_fold, random_split)
    images = require(root / IMAGES, "CK+ image folder")
    emotions = require(root / EMOTION, "CK+ emotion label folder")
    labels = LabelMap(LABELS, class_list(classes), dataset="CK+")
    files = sorted(emotions.glob("S*/*/*_emotion.txt"))
    labelled = {(f.parent.parent.name, f.parent.name) for f in files}
    unlabelled = [s for subject in subfolders(images) for s in subfolders(subject)
                  if (subject.name, s.name) not in labelled]
    if unlabelled:
        ledger.drop("sequence without an emotion file (not used)", len(unlabelled))
    items = [item for file in files for item in _sequence(file, images, root, labels, ledger)]
    if random_split is None:
        items, protocol = _fold_split(items, folds, test_fold, seed), (
            f"{folds} subject-independent folds (seed {seed}); fold {test_fold} is the test split")
    else:
        items, protocol = _random_split(items, random_split, seed), (
            f"random image-level split, {random_split:g} test (seed {seed}); NOT subject-"
            "independent: frames of one sequence and subject fall on both sides")
    notes = {"protocol": protocol, "frames": f"first frame as neutral + the last {PEAK_FRAMES} "
                                             "frames up to the labelled peak",
             "drop_counts": "sequences"}
    return Source(classes=labels.classes, items=items, files=[images, emotions],
                  class_map={**labels.describe(), "first frame": "neutral"}, notes=notes)


def _check_split_options(folds: int, test_fold: int, random_split: float | None) -> None:
    if random_split is not None:
        if not 0.0 < random_split < 1.0:
            raise ValueError(f"--random-split must lie in (0, 1), got {random_split}")
    elif folds < 2 or not 0 <= test_fold < folds:
        raise ValueError(f"need --folds >= 2 and 0 <= --test-fold < --folds, got folds {folds}, "
                         f"test fold {test_fold}")


def _sequence(file: Path, images: Path, root: Path, labels: LabelMap,
              ledger: Ledger) -> list[Item]:
    """The 4 items of one labelled sequence ([] when dropped or bad)."""
    try:
        return _sequence_items(file, images, root, labels, ledger)
    except BadValue as bad:
        ledger.reject(bad, file, 1)  # the file holds one line: the code
        return []


def _sequence_items(file: Path, images: Path, root: Path, labels: LabelMap,
                    ledger: Ledger) -> list[Item]:
    fields = file.read_text(encoding="utf-8", errors="replace").split()
    if len(fields) != 1:
        raise BadValue(MALFORMED, "should hold one number (the emotion code)",
                       value=" ".join(fields)[:40])
    label = labels.index(to_int(fields[0], "emotion", UNKNOWN_LABEL), ledger, column="emotion")
    if label is None:
        return []
    subject, sequence = file.parent.parent.name, file.parent.name
    folder = images / subject / sequence
    peak = file.name[: -len("_emotion.txt")] + ".png"
    frames = image_files(folder)[0] if folder.is_dir() else []
    names = [f.name for f in frames]
    if peak not in names:
        raise BadValue(MISSING_IMAGE, f"names a peak frame that does not exist: {folder / peak}",
                       value=peak)
    end = names.index(peak) + 1
    if end < PEAK_FRAMES + 1:
        raise BadValue(MALFORMED, f"the sequence has {end} frames up to its peak; the protocol "
                       f"needs {PEAK_FRAMES + 1}", value=peak)
    neutral = labels.classes.index("neutral")
    chosen = [(frames[0], neutral)] + [(f, label) for f in frames[end - PEAK_FRAMES:end]]
    return [Item(image=f, name=f.relative_to(root).as_posix(), split="train", label=k,
                 file=file, line=1, values={"subject": subject, "sequence": sequence})
            for f, k in chosen]


def _fold_split(items: list[Item], folds: int, test_fold: int, seed: int) -> list[Item]:
    subjects = sorted({item.values["subject"] for item in items})
    if len(subjects) < folds:
        raise ValueError(f"{len(subjects)} subjects cannot fill {folds} folds; lower --folds")
    order = np.random.default_rng(seed).permutation(len(subjects))
    fold = {subjects[s]: position % folds for position, s in enumerate(order)}
    return [dataclasses.replace(
        item, split="test" if fold[item.values["subject"]] == test_fold else "train",
        values={**item.values, "fold": fold[item.values["subject"]]}) for item in items]


def _random_split(items: list[Item], fraction: float, seed: int) -> list[Item]:
    test = set(np.random.default_rng(seed).choice(len(items), size=round(fraction * len(items)),
                                                  replace=False).tolist())
    return [dataclasses.replace(item, split="test" if i in test else "train")
            for i, item in enumerate(items)]
