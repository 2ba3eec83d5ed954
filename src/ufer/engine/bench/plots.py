"""The figures of ``OUT/plots/``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ufer.engine import report_plots
from ufer.engine.bench.config import cell_dir, reference_dir
from ufer.engine.bench.tables import by_method_rate


def write_plots(results: dict[str, Any], plots: Path) -> list[Path]:
    """accuracy_vs_noise.png, corrections.png, detection_roc.png."""
    cells = results["cells"]
    if not cells:  # nothing finished yet (--no-train on a new grid)
        return []
    accuracy = by_method_rate(cells, lambda c: c["test"].get("acc"))
    written = [report_plots.accuracy_vs_noise(accuracy, plots / "accuracy_vs_noise.png")]
    corrections = {}
    for m, by_rate in by_method_rate(cells, lambda c: c["labels"].get("corrected")).items():
        if not any(v for vals in by_rate.values() for v in vals):
            continue
        corrections[m] = {}
        for r in by_rate:
            group = [c for c in cells if c["method"] == m and c["rate"] == r]
            prec = [c["labels"].get("correction_precision", np.nan) for c in group]
            rec = [c.get("correction_recall") or 0.0 for c in group]
            corrections[m][r] = (float(np.nanmean(prec)) if prec else np.nan,
                                 float(np.mean(rec)))
    written.append(report_plots.correction_vs_noise(corrections, plots / "corrections.png"))
    rate = max(c["rate"] for c in cells)
    out = Path(results["config"]["out"])
    curves = {}
    for c in cells:
        if c["rate"] == rate and c["seed"] == 0:
            folder = cell_dir(out, c["method"], rate, 0, c.get("regime", "scratch"))
            s = json.loads((folder / "scores.json").read_text())
            if s["wrong"] is not None:
                curves[c["method"]] = (np.array(s["score"]), np.array(s["wrong"], bool))
    ref = reference_dir(out, rate, 0) / "scores.json"
    if ref.exists():
        s = json.loads(ref.read_text())
        if s["wrong"] is not None:
            curves["cleanlab (OOF)"] = (np.array(s["score"]), np.array(s["wrong"], bool))
    if curves:
        written.append(report_plots.detection_roc(
            curves, plots / "detection_roc.png",
            title=f"spotting wrong labels, {100 * rate:g} % noise, seed 0"))
    return written
