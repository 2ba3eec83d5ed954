"""``ufer pseudo-va``: valence/arousal columns for a manifest that has none, as a NEW manifest.

LDLVA finds each training sample's neighbours in valence-arousal space; RAF-DB and most FER
sets have no VA, so the LDLVA protocol predicts "pseudo" VA with a model trained on data that
has it (AffectNet). Two sources:

- a ufer checkpoint whose method predicts VA (``FERMethod.auxiliary_outputs`` returns
  ``valence_arousal``; MTAC with its VA branch does), run on every image of the manifest
  (all splits, without augmentation, at the checkpoint's image size);
- a user table ``path, valence, arousal`` (``data.annotate.table_va``, as ``ufer annotate va
  --csv``).

The images alone decide the values: VA is never derived from the (possibly noisy) class
label, which would make every neighbour share the label and silently turn LDLVA off. The
sidecar's ``va_source`` records the source and the coverage (``data.annotate.coverage``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader

from ufer.data import schema
from ufer.data.annotate import VA_COLUMNS, coverage, table_va, write_annotated
from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import Manifest, read_manifest
from ufer.data.noise import check_output
from ufer.data.transforms import preprocess
from ufer.methods.base import load_method

VA_OUTPUT = "valence_arousal"


def model_va(manifest: Manifest, checkpoint: str | Path, batch_size: int = 256,
             device: str = "cpu") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Valence and arousal of every manifest image predicted by the checkpoint's method.

    Returns:
        (float frame (N, 2) ``valence``, ``arousal`` in [-1, 1], sidecar info with coverage).

    Raises:
        ValueError: the checkpoint's method predicts no valence/arousal.
    """
    method, data = load_method(checkpoint, device)
    dataset = ManifestDataset(manifest, None, data.get("image_size"), cache=False)
    parts = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        outputs = method.auxiliary_outputs(preprocess(batch["image"].to(device),
                                                      *method.normalization))
        if VA_OUTPUT not in outputs:
            raise ValueError(
                f"{checkpoint}: method {method.method_name!r} predicts no valence/arousal "
                f"(its auxiliary outputs: {sorted(outputs) or 'none'}); use a model with a VA "
                "head, e.g. MTAC trained with its VA branch on data that has VA (AffectNet), "
                "or give a table with --csv")
        parts.append(outputs[VA_OUTPUT].float().cpu())
    frame = pd.DataFrame(torch.cat(parts).double().numpy(), columns=VA_COLUMNS)
    info = {"kind": "model", "checkpoint": str(checkpoint), "method": method.method_name,
            "trained_on": data.get("manifest"), "image_size": data.get("image_size"),
            "coverage": coverage(frame, manifest.frame[schema.SPLIT])}
    return frame, info


def pseudo_va(manifest: str | Path, out: str | Path, *, model: str | Path | None = None,
              csv: str | Path | None = None, scale: tuple[float, float] | None = None,
              batch_size: int = 256, device: str = "cpu", overwrite: bool = False
              ) -> dict[str, Any]:
    """Write ``manifest`` with VA columns from ``model`` (a checkpoint) or ``csv`` (a table
    ``path, valence, arousal``, values in ``scale`` = (lo, hi) or [-1, 1]) as the NEW manifest
    ``out``; the input is never modified, and an existing ``out`` or its sidecar is refused
    without ``overwrite`` (before any prediction runs).

    Returns:
        The sidecar's ``va_source`` entry (source and coverage).
    """
    if (model is None) == (csv is None):
        raise ValueError("give exactly one VA source: a model checkpoint or a VA table")
    data = read_manifest(manifest)
    check_output(data.path, out, overwrite)
    if model is not None:
        values, info = model_va(data, model, batch_size, device)
    else:
        values, info = table_va(data, csv, scale)
    write_annotated(data, values, info, out, what="va", overwrite=overwrite)
    return info
