"""The canonical manifest schema shared by every adapter, the synthetic generator and the loader.

A manifest is a table (CSV or Parquet) with one row per image plus a JSON sidecar
(``<manifest stem>.json`` beside it). See ``shared/design.md`` ("One canonical data schema").
"""
from __future__ import annotations

from pathlib import Path

# Column names.
PATH = "path"  # image path relative to the manifest's folder
SPLIT = "split"  # train / val / test
LABEL = "label"  # int class index into sidecar["classes"]; the label training uses
VALENCE = "valence"  # float in [-1, 1], empty where unknown
AROUSAL = "arousal"  # float in [-1, 1], empty where unknown
CLEAN_LABEL = "clean_label"  # the true label (synthetic) or the label before noise injection
NOISY = "noisy"  # bool: label != clean_label
GIVEN_LABEL = "given_label"  # written by `ufer noise`: the label before noise was injected
DIST_PREFIX = "dist_"  # dist_<class name>: label distribution (votes), rows sum to 1
AU_PREFIX = "AU"  # AU01 ... AU45: occurrence 0/1 (or intensity in [0, 1]), empty where unknown
TRUE_AU_PREFIX = "true_AU"  # synthetic only: the true intensities, for evaluation, never for training

SPLITS = ("train", "val", "test")

# Class orders. Datasets keep their own order in the sidecar; these are the project's defaults.
EMOTIONS7 = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
EMOTIONS8 = EMOTIONS7 + ("contempt",)


def au_column(number: int) -> str:
    """Column name of an action unit: ``au_column(1) == "AU01"``."""
    return f"{AU_PREFIX}{number:02d}"


def is_au_column(name: str) -> bool:
    """True for ``AU01``..``AU99`` (not ``true_AU..``, not OpenFace's ``AU01_c``)."""
    return len(name) == 4 and name.startswith(AU_PREFIX) and name[2:].isdigit()


def sidecar_path(manifest_path: str | Path) -> Path:
    """The JSON sidecar that belongs to a manifest: same folder, same stem, ``.json``."""
    return Path(manifest_path).with_suffix(".json")
