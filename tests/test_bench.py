"""ufer bench: the grid's cells, resuming, the tables and the cleanlab reference (tiny data)."""
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE, tiny_fit_kwargs

from ufer.data.noise import scaled_transition
from ufer.engine.bench import BenchConfig, format_bench, run_bench
from ufer.engine.bench.reference import _fold_of
from ufer.engine.speed import run_speed
from ufer.metrics import auroc

EXPECTED = {"baseline-n0-s0", "baseline-n0.3-s0", "scn-n0-s0", "scn-n0.3-s0"}


def _config(manifest, out):
    return BenchConfig(out=str(out), manifest=manifest, methods=["baseline", "scn"],
                       noise=[0.0, 0.3], seeds=1, epochs=1, backbone=TINY_BACKBONE,
                       batch_size=64)


def _mtimes(out):
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*/results.json")}


def test_grid_resume_and_tables(tiny_manifest, tmp_path):
    out = tmp_path / "bench"
    first = run_bench(_config(tiny_manifest, out), **tiny_fit_kwargs())
    assert {p.name for p in (out / "cells").iterdir()} == EXPECTED
    assert first["trained_now"] == 4
    assert {(c["method"], c["rate"], c["seed"]) for c in first["cells"]} == {
        (m, r, 0) for m in ("baseline", "scn") for r in (0.0, 0.3)}
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["cells"]) == 4 and len(saved["cleanlab"]) == 2
    for cell in saved["cells"]:
        assert 0.0 <= cell["test"]["acc"] <= 1.0 and 0.0 <= cell["auroc"] <= 1.0
    assert saved["cells"][0]["score"] == "1 - p(given label)"
    assert any(c["score"] == "1 - alpha" for c in saved["cells"])
    for ref in saved["cleanlab"]:
        assert {"precision", "recall", "auroc", "flagged"} <= set(ref)

    md = (out / "results.md").read_text()
    assert "| method | 0 % | 30 % |" in md
    accuracy = md.split("## Test accuracy")[1].split("\n\n")[1].splitlines()
    assert [row.split("|")[1].strip() for row in accuracy[2:]] == ["baseline", "scn"]
    assert "cleanlab get_label_quality_scores (OOF baseline, k=3)" in md
    assert "cleanlab find_label_issues" in md
    for png in ("accuracy_vs_noise.png", "corrections.png", "detection_roc.png"):
        assert (out / "plots" / png).stat().st_size > 0

    # a second run trains nothing and leaves every finished cell alone
    before = _mtimes(out)
    again = run_bench(_config(tiny_manifest, out), **tiny_fit_kwargs())
    assert again["trained_now"] == 0 and _mtimes(out) == before
    assert again["cells"] == first["cells"]

    # losing one cell's results re-runs only that cell (continuing from its checkpoint)
    (out / "cells" / "scn-n0.3-s0" / "results.json").unlink()
    # ... but first a look without training, at a two-seed grid: finished cells only
    partial = run_bench(replace(_config(tiny_manifest, out), seeds=2), train=False,
                        **tiny_fit_kwargs())
    assert partial["trained_now"] == 0 and len(partial["cells"]) == 3
    assert set(partial["missing"]) == {"cells/scn-n0.3-s0", "cleanlab/n0-s1", "cleanlab/n0.3-s1"} | {
        f"cells/{m}-n{r}-s1" for m in ("baseline", "scn") for r in ("0", "0.3")}
    assert {p.name for p in (out / "cells").iterdir()} == EXPECTED
    md = (out / "results.md").read_text()
    assert "**Partial:** 7 cells or references not finished" in md
    assert "| baseline | " in md and "(n=1)" in md
    third = run_bench(_config(tiny_manifest, out), **tiny_fit_kwargs())
    after = _mtimes(out)
    assert third["trained_now"] == 1
    assert {k for k in after if after[k] != before.get(k)} == {"scn-n0.3-s0"}


def test_results_without_cleanlab_say_how_to_install(tiny_manifest, tmp_path):
    results = {"config": {"manifest": tiny_manifest, "seeds": 1, "protocol": "symmetric",
                          "epochs": 1, "backbone": "b", "batch_size": 8, "out": str(tmp_path)},
               "cells": [{"method": "baseline", "rate": 0.0, "seed": 0, "test": {"acc": 0.5},
                          "labels": {"corrected": 0.0}, "score": "s", "auroc": 0.6}],
               "cleanlab": [], "cleanlab_note": "cleanlab is not installed: pip install "
                                                "'ufer[bench]'"}
    md = format_bench(results)
    assert "pip install 'ufer[bench]'" in md and "| baseline | 50.0 |" in md


def test_config_needs_exactly_one_data_source():
    with pytest.raises(ValueError, match="exactly one"):
        BenchConfig().resolved()
    with pytest.raises(ValueError, match="unknown method"):
        BenchConfig(preset="tiny", methods=["nope"]).resolved()
    cfg = BenchConfig(preset="bench-cpu").resolved()
    assert (cfg.epochs, cfg.noise, cfg.seeds) == (70, [0.0, 0.3], 3)


def test_transition_file_scaled_to_rate(tmp_path):
    t = np.eye(3)
    t[0] = [0.0, 1.0, 0.0]  # class 0 always goes to 1; classes 1, 2 never flip
    path = tmp_path / "T.csv"
    np.savetxt(path, t, delimiter=",")
    scaled = scaled_transition(str(path), 3, 0.2)
    assert np.allclose(scaled, [[0.8, 0.2, 0.0], [0, 1, 0], [0, 0, 1]])


def test_folds_are_stratified_and_seeded():
    labels = np.repeat(np.arange(3), 9)
    fold = _fold_of(labels, 3, seed=0)
    for c in range(3):
        assert np.bincount(fold[labels == c], minlength=3).tolist() == [3, 3, 3]
    assert np.array_equal(fold, _fold_of(labels, 3, seed=0))


def test_auroc_ties_and_degenerate():
    assert auroc(np.array([0.1, 0.9, 0.5, 0.5]), np.array([0, 1, 1, 0])) == pytest.approx(0.875)
    assert auroc(np.array([0.1, 0.2]), np.array([1, 1])) is None


def test_speed_table(tmp_path):
    result = run_speed(methods=["scn", "baseline", "scn@wide"], backbone=TINY_BACKBONE,
                       image_size=32, batch_size=16, steps=2, warmup=1, rounds=1, out=tmp_path,
                       accelerator="cpu", latency_reps=1,
                       method_configs={"scn@wide": {"high_fraction": 0.5}})
    rows = {r["method"]: r for r in result["methods"]}
    assert list(rows) == ["baseline", "scn", "scn@wide"] and rows["baseline"]["relative"] == 1.0
    assert rows["scn@wide"]["error"] is None
    assert rows["scn"]["error"] is None and rows["scn"]["step_ms"] > 0
    assert rows["scn"]["params_inference"] == rows["baseline"]["params_inference"]
    assert rows["scn"]["params_training"] > rows["scn"]["params_inference"]  # the alpha head
    assert result["loader_images_per_second"] > 0 and result["latency"]["batch64_ms"] > 0
    assert "| scn |" in (tmp_path / "speed.md").read_text()


def test_grid_in_two_processes(tiny_manifest, tmp_path):
    out = tmp_path / "bench"
    cfg = _config(tiny_manifest, out)
    cfg.cleanlab, cfg.jobs = False, 2
    results = run_bench(cfg, **tiny_fit_kwargs())
    assert results["trained_now"] == 4
    assert {(c["method"], c["rate"]) for c in results["cells"]} == {
        (m, r) for m in ("baseline", "scn") for r in (0.0, 0.3)}
    for name in EXPECTED:  # each worker's training output went to its cell's log
        assert "epoch 1/1" in (out / "cells" / name / "train.log").read_text()
    assert run_bench(cfg, **tiny_fit_kwargs())["trained_now"] == 0


KILLED_BENCH = """
import sys
from ufer.engine.bench import BenchConfig, run_bench
cfg = BenchConfig(out=sys.argv[2], manifest=sys.argv[1], methods=["baseline", "scn"], noise=[0.0],
                  seeds=1, epochs=1000, backbone="fer_resnet_small", batch_size=64, cleanlab=False,
                  jobs=2)
run_bench(cfg, accelerator="cpu", progress=False)
"""


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_killed_bench_stops_its_workers(tiny_manifest, tmp_path):
    out = tmp_path / "bench"
    bench = subprocess.Popen([sys.executable, "-c", KILLED_BENCH, tiny_manifest, str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logs = [out / "cells" / name / "train.log" for name in ("baseline-n0-s0", "scn-n0-s0")]
    deadline = time.monotonic() + 120
    while not all(log.exists() and "epoch 1/" in log.read_text() for log in logs):
        assert bench.poll() is None and time.monotonic() < deadline, "workers never trained"
        time.sleep(0.5)
    workers = _children(bench.pid)
    assert len(workers) >= 2
    bench.send_signal(signal.SIGTERM)  # `kill PID` on the bench only, not its workers
    assert bench.wait(timeout=60) != 0
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in workers if _alive(pid)], "workers kept training"


def test_method_variants_get_their_own_config_and_cells(tiny_manifest, tmp_path):
    from ufer.engine.bench.config import method_kwargs

    cfg = replace(_config(tiny_manifest, tmp_path / "v"), methods=["scn", "scn@all_scope"],
                  noise=[0.3], cleanlab=False,
                  method_configs={"all": {"rank_weight": 0.5}, "scn": {"relabel_start": 0},
                                  "scn@all_scope": {"relabel_scope": "all"}})
    resolved = cfg.resolved()
    assert method_kwargs(resolved, "scn") == {"backbone": TINY_BACKBONE, "rank_weight": 0.5,
                                              "relabel_start": 0}
    assert method_kwargs(resolved, "scn@all_scope")["relabel_scope"] == "all"
    results = run_bench(cfg, **tiny_fit_kwargs())
    assert {c["method"] for c in results["cells"]} == {"scn", "scn@all_scope"}
    from ufer.methods.base import read_checkpoint

    for label, scope in (("scn", "low"), ("scn@all_scope", "all")):
        ckpt = tmp_path / "v" / "cells" / f"{label}-n0.3-s0" / "run" / "checkpoints" / "last.ckpt"
        assert read_checkpoint(ckpt)["hyper_parameters"]["relabel_scope"] == scope


def test_bench_skips_methods_that_cannot_train_on_its_data(tiny_manifest, tmp_path, capsys):
    from ufer._registry import _METHODS, register_method
    from ufer.methods.baseline import Baseline

    @register_method("needs_nothing_here")
    class NeedsSomething(Baseline):
        @classmethod
        def data_problem(cls, sizes):
            return "it needs a column this manifest lacks (add it with ufer annotate)"

    try:
        cfg = replace(_config(tiny_manifest, tmp_path / "b"),
                      methods=["baseline", "needs_nothing_here"], noise=[0.0], cleanlab=False)
        results = run_bench(cfg, **tiny_fit_kwargs())
    finally:
        del _METHODS["needs_nothing_here"]
    assert "skipping needs_nothing_here: it needs a column" in capsys.readouterr().out
    assert [c["method"] for c in results["cells"]] == ["baseline"]


def test_first_seed_runs_part_of_a_grid_that_combines(tiny_manifest, tmp_path):
    """--first-seed 1 --seeds 1 trains only seed 1; the full 0..1 grid in the same folder
    (or one its cells were copied into) then trains seed 0 alone and reuses seed 1."""
    out = tmp_path / "split"
    part = replace(_config(tiny_manifest, out), methods=["baseline"], noise=[0.3], seeds=1,
                   first_seed=1, cleanlab=False)
    first = run_bench(part, **tiny_fit_kwargs())
    assert [(c["method"], c["seed"]) for c in first["cells"]] == [("baseline", 1)]
    assert "1 seeds (1..1)" in format_bench(first)
    assert "seed 1, ..." in format_bench(first)
    before = _mtimes(out)
    whole = run_bench(replace(part, seeds=2, first_seed=0), **tiny_fit_kwargs())
    assert whole["trained_now"] == 1
    assert sorted(c["seed"] for c in whole["cells"]) == [0, 1]
    assert _mtimes(out)["baseline-n0.3-s1"] == before["baseline-n0.3-s1"]
    with pytest.raises(ValueError, match="first_seed must be at least 0"):
        replace(part, first_seed=-1).resolved()


def test_best_validation_epoch_is_scored_and_backfilled(tiny_manifest, tmp_path):
    import pandas as pd

    from ufer.engine.evaluate import evaluate

    out = tmp_path / "bench"
    cfg = replace(_config(tiny_manifest, out), methods=["baseline"], noise=[0.3], epochs=3)
    first = run_bench(cfg, **tiny_fit_kwargs())
    (cell,) = first["cells"]
    best = cell["best_val"]
    run = Path(cell["run_dir"])
    log = pd.read_csv(run / "metrics.csv").dropna(subset=["val/acc"])
    assert best["epoch"] == int(log["epoch"].iloc[log["val/acc"].to_numpy().argmax()]) + 1
    ckpt = run / "checkpoints" / "best.ckpt"
    again = evaluate(ckpt, tiny_manifest, out_dir=tmp_path / "eval")
    assert best["acc"] == pytest.approx(again["accuracy"])
    assert best["mean_acc"] == pytest.approx(again["mean_class_accuracy"])
    assert best["labels"]["noisy_given"] == cell["labels"]["noisy_given"]
    md = (out / "results.md").read_text()
    assert "## Test accuracy (%), epoch of best validation accuracy" in md
    assert f"{100 * best['acc']:.1f} (ep {best['epoch']}; " in md
    # a cell written before best_val existed gets it by evaluation alone, without training
    path = out / "cells" / "baseline-n0.3-s0" / "results.json"
    old = json.loads(path.read_text())
    del old["best_val"]
    path.write_text(json.dumps(old))
    later = run_bench(cfg, train=False, **tiny_fit_kwargs())
    assert later["trained_now"] == 0 and later["cells"][0]["best_val"] == best
    assert json.loads(path.read_text())["best_val"] == best
