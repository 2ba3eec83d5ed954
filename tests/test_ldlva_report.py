"""ufer report on an LDLVA run: lambda of wrong vs right labels (histogram), the most moved
distributions, how often their argmax is the true label, LDLVA's own diagnostics."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_BACKBONE, tiny_fit_kwargs

from ufer.engine.report import distribution_table, format_summary, write_report
from ufer.engine.train import train_method
from ufer.methods.base import load_method


def test_ldlva_report(tiny_noisy_manifest, tmp_path):
    run_dir = tmp_path / "ldlva"
    train_method(tiny_noisy_manifest, "ldlva", run_dir, 2, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE, "lambda_lr": 0.5},
                 data_kwargs={"batch_size": 32}, **tiny_fit_kwargs())
    summary = write_report(run_dir)
    out = run_dir / "report"
    method, _ = load_method(run_dir / "checkpoints" / "last.ckpt")
    dist = method.label_distribution().numpy()
    seen = ~np.isnan(dist).any(axis=1)  # (drop_last leaves a few samples never trained on)
    assert seen.sum() > 190
    assert (out / "uncertainty.png").stat().st_size > 0
    assert summary["uncertainty"]["name"] == "lambda"
    assert summary["uncertainty"]["seen"] == seen.sum()
    assert 0.0 <= summary["uncertainty"]["auroc_wrong"] <= 1.0
    # the distributions: counts over the trained-on samples, the most moved first
    samples = pd.read_csv(out / "samples.csv")
    given = samples.original_label.to_numpy()[seen]
    clean = samples.clean_label.to_numpy()[seen]
    dist = dist[seen]
    top = dist.argmax(1)
    differs = top != given
    stats = summary["label_distribution"]
    assert stats["samples"] == seen.sum() and stats["argmax_differs"] == int(differs.sum())
    assert stats["mean_moved"] == pytest.approx(np.mean(1 - dist[np.arange(len(dist)), given]))
    if differs.any():
        assert stats["argmax_differs_is_true"] == np.mean(top[differs] == clean[differs])
    wrong = given != clean
    assert stats["wrong_given_argmax_true"] == np.mean(top[wrong] == clean[wrong])
    table = pd.read_csv(out / "distributions.csv")
    assert len(table) == 40 and table.moved.is_monotonic_decreasing
    row = table.iloc[0]
    full = method.label_distribution().numpy()
    assert row.moved == pytest.approx(1 - full[row["index"], samples.original_label[row["index"]]])
    assert np.isclose(table.filter(like="d_").sum(axis=1), 1.0).all()
    # LDLVA's diagnostics: VA neighbours share the true class more often than the given one
    diag = summary["diagnostics"]
    assert diag["neighbour_coverage"] == 1.0
    assert diag["neighbours_same_true_class"] > diag["neighbours_same_given_class"]
    assert 0 < diag["calibration_same_true_class"] < 1
    assert math.isfinite(diag["calibration_log_ratio"])
    assert 0 <= diag["bank_vs_forward_tv"] <= 1
    assert diag["lambda_auroc_wrong"] == summary["uncertainty"]["auroc_wrong"]
    assert json.loads((out / "summary.json").read_text())["label_distribution"] == stats
    assert "label distributions:" in format_summary(summary)
    assert torch.equal(method.samples.uncertainty_factor[seen],
                       method.sample_uncertainty()[seen])


def test_ldlva_report_distribution_table_counts():
    nan = float("nan")
    dist = np.array([[0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.1, 0.1, 0.8], [nan, nan, nan]])
    table = pd.DataFrame({"index": range(4), "path": list("abcd"), "original_label": [0, 0, 1, 2],
                          "original_class": list("xxyz"), "clean_label": [0, 1, 0, 2],
                          "clean_class": list("xyxz")})
    frame, stats = distribution_table(dist, table, ["x", "y", "z"])
    # row 3 never trained on; rows 1 and 2 moved their argmax off the given label, row 1 to
    # the true class, row 2 not; the wrong given labels are rows 1 and 2
    assert stats == {"samples": 3, "mean_moved": pytest.approx((0.3 + 0.8 + 0.9) / 3),
                     "argmax_differs": 2, "argmax_differs_is_true": 0.5,
                     "wrong_given_argmax_true": 0.5}
    assert frame["index"].tolist() == [2, 1, 0]  # most moved first: 0.9, 0.8, 0.3
    assert frame.argmax_class.tolist() == ["z", "y", "x"]
    assert frame.d_z.tolist() == [0.8, 0.0, 0.0]
