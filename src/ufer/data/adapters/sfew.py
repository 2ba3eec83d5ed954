"""SFEW 2.0: ``Train/<Emotion>/*.png`` and ``Val/<Emotion>/*.png`` (movie frames).

Emotion folders: Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise. ``Val`` is the test
split (what POI, MTAC and LDLVA report); ``Test/`` has no public labels and is not read.
The frames are whole movie stills: faces must be detected and aligned (``--detect``);
frames where no face is found are dropped and counted. Without ``--detect`` the frames are
copied as they are and the sidecar says so.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ufer.data.adapters.common import (
    LabelMap,
    Ledger,
    Source,
    class_folder_items,
    class_list,
    require,
)

NAME = "sfew"
SUMMARY = "SFEW 2.0: Train/<Emotion>/ and Val/<Emotion>/ (Val = test); needs --detect"
ALIGNS = True
FOLDERS = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
SPLITS = {"Train": "train", "Val": "test"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """SFEW has no options of its own (``--detect`` is common to sources without crops)."""


def read(root: Path, ledger: Ledger) -> Source:
    """SFEW 2.0 as manifest items (see the module docstring).

    Args:
        root: folder holding ``Train/`` and ``Val/``.
        ledger: bookkeeping of kept / dropped / bad rows.
    """
    folders = [require(root / f, f"SFEW {f}/ folder") for f in SPLITS]
    labels = LabelMap({f: f for f in FOLDERS}, class_list(7), dataset="SFEW")
    items = (item for folder in folders
             for item in class_folder_items(folder, SPLITS[folder.name], root, labels, ledger))
    notes = {"protocol": "Val -> test split (POI, MTAC, LDLVA report on Val)"}
    if (root / "Test").is_dir():
        notes["not_read"] = "Test/ (its labels are not public)"
    return Source(classes=labels.classes, items=items, files=folders,
                  class_map=labels.describe(), notes=notes)
