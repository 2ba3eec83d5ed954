"""Manifest I/O: the one table every dataset is converted into (see ``data/schema.py``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ufer.data import schema

MANIFEST_FORMAT_VERSION = 1


def write_manifest(frame: pd.DataFrame, meta: dict[str, Any], path: str | Path) -> Path:
    """Write ``frame`` as CSV (``.csv``) or Parquet (``.parquet``) plus its JSON sidecar.

    Args:
        frame: one row per image with at least ``path``, ``split``, ``label``.
        meta: sidecar content; must hold ``classes`` (list of class names). ``counts``
            (rows per split and per class) and ``format_version`` are filled in here.
        path: destination table; the sidecar goes to ``schema.sidecar_path(path)``.

    Returns:
        The path of the table written.
    """
    path = Path(path)
    if "classes" not in meta:
        raise ValueError(f"{path}: manifest metadata needs 'classes'")
    path.parent.mkdir(parents=True, exist_ok=True)
    classes = list(meta["classes"])
    counts = {
        split: {c: int((part[schema.LABEL] == k).sum()) for k, c in enumerate(classes)}
        for split, part in frame.groupby(schema.SPLIT, sort=False)
    }
    sidecar = {**meta, "format_version": MANIFEST_FORMAT_VERSION, "counts": counts}
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"{path}: a manifest must end in .csv or .parquet")
    schema.sidecar_path(path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return path
