"""ufer report on a short SCN run: one row per training sample, counts match the run's logs."""
import pandas as pd
from conftest import TINY_BACKBONE, tiny_fit_kwargs

from ufer.cli.main import build_parser
from ufer.engine.report import format_summary, last_logged, precision_gate_log, write_report
from ufer.engine.report_plots import epoch_table
from ufer.engine.train import train_method


def test_report_of_a_relabeling_scn_run(tiny_noisy_manifest, tmp_path, capsys):
    run_dir = tmp_path / "scn"
    train_method(tiny_noisy_manifest, "scn", run_dir, 2, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE, "relabel_start": 0,
                                "relabel_scope": "all", "relabel_margin": 0.0},
                 data_kwargs={"batch_size": 32}, **tiny_fit_kwargs())
    summary = write_report(run_dir)
    samples = pd.read_csv(run_dir / "report" / "samples.csv")
    assert len(samples) == 200 and samples["index"].tolist() == list(range(200))
    logged = last_logged(run_dir, "labels/corrected")
    assert logged is not None and logged > 0  # margin 0 from epoch 0: something moved
    assert int(samples.corrected.sum()) == int(logged) == summary["corrected"]
    moved = samples[samples.corrected]
    assert (moved.original_label != moved.final_label).all()
    assert (moved.corrected_epoch >= 0).all()  # (a label moved back keeps its epoch)
    assert samples.label_quality.between(0, 1).all()
    assert samples.is_label_issue[samples.corrected].all()
    assert {"clean_label", "original_class", "final_class"} <= set(samples.columns)
    for png in ("corrections.png", "uncertain.png", "corrected.png", "curves.png"):
        assert (run_dir / "report" / png).stat().st_size > 0

    # the verb prints a summary
    args = build_parser({"report": "report"}).parse_args(
        ["report", str(run_dir), "--out", str(tmp_path / "r2")])
    assert args.func(args) == 0
    assert "corrected labels" in capsys.readouterr().out
    assert (tmp_path / "r2" / "samples.csv").exists()


def test_baseline_quality_is_probability_of_given_label(tiny_manifest, tmp_path):
    run_dir = tmp_path / "base"
    train_method(tiny_manifest, "baseline", run_dir, 1, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE}, data_kwargs={"batch_size": 64},
                 **tiny_fit_kwargs())
    summary = write_report(run_dir)
    samples = pd.read_csv(run_dir / "report" / "samples.csv")
    assert summary["label_quality"] == "p(given label)" and summary["corrected"] == 0
    assert not samples.corrected.any()
    assert not (run_dir / "report" / "corrected.png").exists()  # nothing to show


def test_precision_gate_log_by_hand(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "epoch,step,relabel/est_precision,relabel/precision_gate,train/loss\n"
        "0,1,0.2,0.0,\n0,1,,,1.0\n1,3,0.7,1.0,0.9\n2,5,0.6,1.0,0.8\n")
    # set at the validation of 0-based epoch 1 -> governs 0-based epoch 2 = 1-based 3; the
    # last epoch's gate governs no epoch
    assert precision_gate_log(tmp_path) == {"open_for_epochs": [3],
                                            "est_precision": [0.2, 0.7, 0.6]}
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss\n0,1,1.0\n")
    assert precision_gate_log(tmp_path) is None


def test_mtac_relabels_only_in_epochs_its_precision_gate_opened(tiny_noisy_manifest, tmp_path,
                                                               capsys):
    run_dir = tmp_path / "mtac"
    train_method(tiny_noisy_manifest, "mtac", run_dir, 3, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE, "relabel_start": 0,
                                "relabel_scope": "all", "relabel_min_precision": 0.5},
                 data_kwargs={"batch_size": 32}, **tiny_fit_kwargs())
    table = epoch_table(run_dir / "metrics.csv")
    gate = precision_gate_log(run_dir)
    assert len(gate["est_precision"]) == 3
    assert all(0.0 <= v <= 1.0 for v in gate["est_precision"])
    assert gate["open_for_epochs"] == [e + 2 for e in range(2)
                                       if table["relabel/est_precision"][e] >= 0.5]
    assert table["relabel/train_move_rate"][0] > 0  # the rule proposed moves from the start
    for epoch in range(3):  # closed before the first validation, and wherever it stayed shut
        if epoch + 1 not in gate["open_for_epochs"]:
            assert table["labels/corrected_this_epoch"][epoch] == 0
    assert write_report(run_dir)["precision_gate"] == gate
    assert "relabel_min_precision gate open for epochs" in format_summary(
        write_report(run_dir))
