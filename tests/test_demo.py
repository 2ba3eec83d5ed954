"""``ufer demo``: its rows, their switches and recipe, the table, and one end-to-end run at
tiny size (pretrained start made once and reused)."""
from __future__ import annotations

import pytest

from ufer._registry import list_methods
from ufer.data.manifest import read_manifest
from ufer.data.synthetic import generate
from ufer.engine import demo
from ufer.methods.base import read_checkpoint


def test_demo_default_rows_are_the_baselines_and_tuned_mtac(tmp_path):
    rows = demo.demo_rows(tmp_path, 24, 0.3, None, False)
    assert [(r.label, r.labels) for r in rows] == [
        ("baseline", "clean"), ("baseline", "noisy"), ("mtac@tuned", "noisy")]
    tuned = rows[2]
    assert tuned.switches_from.startswith("tuned (configs/tuned/mtac_paper_regime.yaml")
    # ours on top of the paper's switches; the paper's own keys kept where ours are silent
    assert tuned.switches["template_labels"] == "given"
    assert tuned.switches["relabel_margin"] == 0.05
    assert tuned.switches["relabel_start"] == 10
    assert not set(demo.RECIPE) & set(tuned.switches)  # the recipe is the demo's, for all


def test_demo_all_runs_every_method_with_its_paper_switches(tmp_path):
    rows = demo.demo_rows(tmp_path, 24, 0.3, None, True)
    labels = [r.label for r in rows]
    assert labels[:2] == ["baseline", "baseline"]
    assert set(labels[2:]) == set(list_methods()) - {"baseline"} | {"mtac@tuned"}
    mtac = next(r for r in rows if r.label == "mtac")
    assert mtac.switches_from == "paper" and mtac.switches["template_labels"] == "current"
    with pytest.raises(ValueError, match="unknown demo row 'mtac@foo'"):
        demo.demo_rows(tmp_path, 24, 0.3, ["mtac@foo"], False)


def test_demo_table_counts_wrong_labels_given_and_left():
    table = demo.format_results([
        {"method": "mtac", "row": "mtac@tuned", "switches": "tuned (x)", "data": "30% noise",
         "seconds": 12.0, "test": {"acc": 0.5, "mean_acc": 0.25},
         "labels": {"noisy_given": 900.0, "noisy_left": 700.0, "corrected": 250.0,
                    "correction_precision": 0.8}}])
    assert table.splitlines()[2] == (
        "| mtac@tuned | tuned (x) | 30% noise | 50.0 | 25.0 | 900 -> 700 | 250 | 80% | 12 |")


def test_demo_end_to_end_tiny(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "PRETRAIN", {"identities": 6, "per_identity": 3, "held_out": 1,
                                           "epochs": 1})
    monkeypatch.setattr(demo, "generate", lambda out, preset, seed: generate(out, "tiny", seed))
    cache = tmp_path / "cache"
    results = demo.run_demo(tmp_path / "demo", epochs=1, cache=cache)
    assert [r["row"] for r in results] == ["baseline", "baseline", "mtac@tuned"]
    noisy = read_manifest(tmp_path / "demo" / "data" / "manifest_sym30.csv").frame
    train = noisy[noisy["split"] == "train"]
    assert results[1]["labels"]["noisy_given"] == (train["label"] != train["clean_label"]).sum()
    out = capsys.readouterr().out
    assert "adam 0.001 multistep [10, 15] x0.1, batch 128, 1 epochs" in out
    assert "| mtac@tuned | tuned (configs/tuned/mtac_paper_regime.yaml) | 30% noise |" in out
    hp = read_checkpoint(tmp_path / "demo" / "mtac-tuned-noisy" / "checkpoints" /
                         "last.ckpt")["hyper_parameters"]
    assert (hp["optimizer"], hp["template_labels"]) == ("adam", "given")
    assert hp["pretrained_path"] == str(cache / "backbone.safetensors")
    stamp = (cache / "provenance.json").stat().st_mtime_ns
    demo.run_demo(tmp_path / "again", epochs=1, methods=["baseline"], cache=cache)
    assert (cache / "provenance.json").stat().st_mtime_ns == stamp  # the start is reused
