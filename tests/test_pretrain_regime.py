"""The paper regime: synthetic identity pretraining (persons disjoint from every bench) and
bench cells trained with each method's paper recipe from that start."""
import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_BACKBONE, tiny_fit_kwargs

from ufer.data.synthetic import PRESETS, identity_for, identity_pools, pretrain_identity
from ufer.engine.bench import BenchConfig, recipes, run_bench
from ufer.engine.pretrain import pretrain
from ufer.methods.base import read_checkpoint
from ufer.models.backbones import build_backbone, load_pretrained


def test_pretrain_identities_never_appear_in_an_expression_dataset():
    bench_people = {identity_for(seed, person)
                    for seed in (0, 1, 2) for preset in ("bench-cpu", "bench-paper", "tiny")
                    for first, size in identity_pools(PRESETS[preset]).values()
                    for person in range(first, first + size)}
    pretrain_people = {pretrain_identity(seed, person) for seed in (0, 1) for person in range(400)}
    assert len(pretrain_people) == 800 and not bench_people & pretrain_people
    # the same person id under the two streams is two different people
    assert pretrain_identity(0, 5) != identity_for(0, 5)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    provenance = pretrain(out, backbone=TINY_BACKBONE, identities=6, per_identity=4, held_out=2,
                          epochs=1, image_size=32, batch_size=8, **tiny_fit_kwargs())
    return out, provenance


def test_pretrain_writes_weights_the_loader_takes_and_their_provenance(pretrained):
    out, provenance = pretrained
    report = load_pretrained(build_backbone(TINY_BACKBONE), out / provenance["weights"])
    assert report["missing"] == 0 and report["shape_mismatch"] == 0
    saved = json.loads((out / "provenance.json").read_text())
    assert saved == provenance
    assert (saved["identities"], saved["train_images"], saved["held_out_images"]) == (6, 24, 12)
    assert 0.0 <= saved["identity_accuracy_held_out"] <= 1.0 and len(saved["sha256"]) == 64
    # the labels it trained on are persons, never expressions
    meta = json.loads((out / "data" / "manifest.json").read_text())
    assert meta["classes"][:2] == ["id00000", "id00001"] and "clean_label" not in \
        (out / "data" / "manifest.csv").read_text().splitlines()[0]
    assert pretrain(out, backbone=TINY_BACKBONE) == provenance  # finished: cached


def test_paper_regime_cells_use_each_paper_recipe(pretrained, tiny_manifest, tmp_path,
                                                  monkeypatch):
    papers = tmp_path / "papers"
    papers.mkdir()
    scn = {"trainer": {"max_epochs": 2}, "data": {"batch_size": 16},
           "model": {"init_args": {"backbone": "resnet18", "optimizer": "adam", "lr": 0.002,
                                   "scheduler": "exponential", "lr_decay": 0.9,
                                   "relabel_margin": 0.3}}}
    (papers / "scn_rafdb.yaml").write_text(yaml.safe_dump(scn))
    monkeypatch.setattr(recipes, "CONFIG_DIR", papers)
    out, provenance = pretrained
    cfg = BenchConfig(out=str(tmp_path / "b"), manifest=tiny_manifest,
                      methods=["baseline", "scn"], noise=[0.3], seeds=1, epochs=1,
                      backbone=TINY_BACKBONE, batch_size=64, cleanlab=False, regime="paper",
                      pretrained=str(out / provenance["weights"]))
    results = run_bench(cfg, **tiny_fit_kwargs())
    assert [r["label"] for r in results["rows"]] == ["baseline@scn", "scn"]
    for label in ("baseline@scn", "scn"):
        run = tmp_path / "b" / "cells" / "paper" / f"{label}-n0.3-s0" / "run"
        ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
        hp, data = ckpt["hyper_parameters"], ckpt["datamodule_hyper_parameters"]
        assert (hp["optimizer"], hp["lr"], hp["scheduler"], hp["lr_decay"]) == \
            ("adam", 0.002, "exponential", 0.9)
        assert hp["backbone"] == TINY_BACKBONE  # the bench's architecture, not the paper's
        assert hp["pretrained_path"] == str(out / provenance["weights"])
        assert data["batch_size"] == 16 and ckpt["epoch"] == 1  # 2 epochs (0-based 1)
    assert read_checkpoint(tmp_path / "b" / "cells" / "paper" / "scn-n0.3-s0" / "run" /
                           "checkpoints" / "last.ckpt")["hyper_parameters"]["relabel_margin"] == 0.3
    md = (tmp_path / "b" / "results.md").read_text()
    assert "Regime **paper**" in md and "adam 0.002 exponential x0.9/epoch, batch 16, 2 epochs" in md
    assert "| baseline@scn | paper |" in md


def test_a_changed_grid_never_reuses_a_stale_cell(tiny_manifest, tmp_path):
    from ufer.engine.bench.cells import StaleCellError

    cfg = BenchConfig(out=str(tmp_path), manifest=tiny_manifest, methods=["baseline"],
                      noise=[0.3], seeds=1, epochs=1, backbone=TINY_BACKBONE, batch_size=64,
                      cleanlab=False)
    run_bench(cfg, **tiny_fit_kwargs())
    for change, named in (({"epochs": 2}, "epochs: recorded 1, now 2"),
                          ({"batch_size": 32}, "batch_size"),
                          ({"image_size": 24}, "image_size"),
                          ({"method_configs": {"baseline": {"lr": 0.1}}}, "method_kwargs")):
        with pytest.raises(StaleCellError, match=named):
            run_bench(BenchConfig(**{**cfg.__dict__, **change}), **tiny_fit_kwargs())
    # more seeds (a grid-level setting) reuse the finished cell
    grown = run_bench(BenchConfig(**{**cfg.__dict__, "seeds": 2}), train=False,
                      **tiny_fit_kwargs())
    assert len(grown["cells"]) == 1
    # a cell without recorded settings (an older ufer) is only reused when asked
    cell = tmp_path / "cells" / "baseline-n0.3-s0"
    (cell / "settings.json").unlink()
    with pytest.raises(StaleCellError, match="--reuse-unverified"):
        run_bench(cfg, **tiny_fit_kwargs())
    assert run_bench(BenchConfig(**{**cfg.__dict__, "reuse_unverified": True}),
                     **tiny_fit_kwargs())["trained_now"] == 0


def test_another_manifest_gets_its_own_noisy_labels_and_no_stale_cell(tiny_manifest, tmp_path):
    from ufer.data.manifest import read_manifest, write_manifest
    from ufer.engine.bench.cells import StaleCellError, noisy_manifest

    data = read_manifest(tiny_manifest)
    frame = data.frame.drop(columns=["row"], errors="ignore")
    frame.loc[0, "label"] = (frame.loc[0, "label"] + 1) % 7
    other = write_manifest(frame, {k: v for k, v in data.meta.items() if k != "counts"},
                           Path(tiny_manifest).with_name("other.csv"))
    first = noisy_manifest(Path(tiny_manifest), tmp_path / "d", "symmetric", 0.3, 0)
    second = noisy_manifest(other, tmp_path / "d", "symmetric", 0.3, 0)
    assert first != second and first.exists() and second.exists()
    cfg = BenchConfig(out=str(tmp_path / "b"), manifest=tiny_manifest, methods=["baseline"],
                      noise=[0.3], seeds=1, epochs=1, backbone=TINY_BACKBONE, batch_size=64,
                      cleanlab=False)
    run_bench(cfg, **tiny_fit_kwargs())
    with pytest.raises(StaleCellError, match="data_sha256"):
        run_bench(BenchConfig(**{**cfg.__dict__, "manifest": str(other)}), **tiny_fit_kwargs())
