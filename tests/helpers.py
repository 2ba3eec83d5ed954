"""Tiny hand-made manifests for data-layer tests (independent of the synthetic generator)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ufer.data import schema
from ufer.data.manifest import write_manifest

CLASSES = list(schema.EMOTIONS7)
AUS = ["AU01", "AU12"]


def tiny_frame(n: int = 6, *, va: bool = True, au: bool = True, dist: bool = True,
               clean: bool = True) -> pd.DataFrame:
    """n rows (splits cycle train/train/val/test...) with a few missing VA/AU values."""
    rows = np.arange(n)
    frame = pd.DataFrame({
        schema.PATH: [f"img/{i:03d}.png" for i in rows],
        schema.SPLIT: [("train", "train", "val", "test")[i % 4] for i in rows],
        schema.LABEL: (rows % len(CLASSES)).astype(np.int64),
    })
    if va:
        frame[schema.VALENCE] = np.where(rows == 1, np.nan, np.linspace(-1, 1, n))
        frame[schema.AROUSAL] = np.linspace(0.5, -0.5, n)
    if au:
        frame["AU12"] = np.where(rows == 2, np.nan, (rows % 2).astype(float))
        frame["AU01"] = np.where(rows == 3, np.nan, 0.25)
    if dist:
        votes = np.full((n, len(CLASSES)), 0.5 / (len(CLASSES) - 1))
        votes[rows, rows % len(CLASSES)] = 0.5
        for k, name in enumerate(CLASSES):
            frame[schema.DIST_PREFIX + name] = votes[:, k]
    if clean:
        frame[schema.CLEAN_LABEL] = ((rows + 1) % len(CLASSES)).astype(np.int64)
    return frame


def write_images(frame: pd.DataFrame, root: Path, size: int = 8) -> None:
    """One small distinct RGB PNG per row."""
    for i, rel in enumerate(frame[schema.PATH]):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((size, size, 3), (i * 40 % 256, 255 - i * 30 % 256, 17), np.uint8)
        pixels[0, 0] = (255, 0, 0)
        Image.fromarray(pixels).save(target)


def write_tiny_manifest(tmp_path: Path, name: str = "m.csv", *, n: int = 6, size: int = 8,
                        **columns: bool) -> Path:
    """Write ``tmp_path/name`` (CSV or Parquet), its sidecar and n PNGs of size x size."""
    frame = tiny_frame(n, **columns)
    write_images(frame, tmp_path, size)
    meta = {"classes": CLASSES, "source": "test"}
    if columns.get("au", True):
        meta["aus"] = AUS
    return write_manifest(frame, meta, tmp_path / name)
