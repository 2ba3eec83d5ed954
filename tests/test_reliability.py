"""Reliability: nothing the user gave is silently lost or mis-attached (issue 11)."""
import json
from pathlib import Path

import pytest
from conftest import TINY_BACKBONE, tiny_fit_kwargs

from ufer.data.manifest import read_manifest, write_manifest
from ufer.engine.train import train_method


def _reordered(manifest: str, tmp_path: Path) -> Path:
    """The same rows, training rows in reverse order, next to the original images."""
    data = read_manifest(manifest)
    frame = data.frame.drop(columns=["row"], errors="ignore")
    train = frame[frame["split"] == "train"].iloc[::-1]
    frame = frame.loc[list(train.index) + list(frame.index[frame["split"] != "train"])]
    return write_manifest(frame.reset_index(drop=True),
                          {k: v for k, v in data.meta.items() if k != "counts"},
                          Path(manifest).with_name("reordered.csv"))


def test_reliab_resume_with_a_reordered_manifest_is_refused(tiny_noisy_manifest, tmp_path):
    run = tmp_path / "run"
    # a per-epoch schedule: a run planned in steps (onecycle) cannot be extended at all
    method_kwargs = {"backbone": TINY_BACKBONE, "scheduler": "multistep"}
    train_method(tiny_noisy_manifest, "scn", run, 1, test=False, method_kwargs=method_kwargs,
                 data_kwargs={"batch_size": 64}, **tiny_fit_kwargs())
    shuffled = _reordered(tiny_noisy_manifest, tmp_path)
    with pytest.raises(ValueError, match=r"reordered.csv: row \d+ \(line \d+, path .* is not "
                                         r"the row the run trained on"):
        train_method(shuffled, "scn", tmp_path / "resumed", 2, test=False,
                     method_kwargs=method_kwargs, data_kwargs={"batch_size": 64},
                     resume=run / "checkpoints" / "last.ckpt", **tiny_fit_kwargs())


def test_reliab_report_with_a_reordered_manifest_is_refused(tiny_noisy_manifest, tmp_path):
    from ufer.engine.report import write_report

    run = tmp_path / "run"
    train_method(tiny_noisy_manifest, "baseline", run, 1, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE}, data_kwargs={"batch_size": 64},
                 **tiny_fit_kwargs())
    with pytest.raises(ValueError, match="is not the row the run trained on"):
        write_report(run, manifest=_reordered(tiny_noisy_manifest, tmp_path))


# ----------------------------------------------------------------------------- item 7
def test_reliab_noise_refuses_an_existing_sidecar_without_overwrite(tmp_path, capsys):
    from helpers import write_tiny_manifest

    from ufer.cli.main import main

    source = write_tiny_manifest(tmp_path / "in", n=12)
    (tmp_path / "out").mkdir()
    sidecar = tmp_path / "out" / "user.json"
    sidecar.write_text('{"mine": 1}\n')
    args = ["noise", str(source), "--out", str(tmp_path / "out" / "user.csv"), "--protocol",
            "symmetric", "--rate", "0.2"]
    assert main(args) == 1
    assert f"{sidecar} exists; pass --overwrite" in capsys.readouterr().err
    assert sidecar.read_text() == '{"mine": 1}\n'
    assert not (tmp_path / "out" / "user.csv").exists()
    assert main([*args, "--overwrite"]) == 0 and "noise" in json.loads(sidecar.read_text())


# ----------------------------------------------------------------------------- item 9
def test_reliab_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys,
                                                                   monkeypatch):
    from ufer.cli.main import main

    args = ["evaluate", str(tmp_path / "none.ckpt"), "--manifest", str(tmp_path / "m.csv")]
    assert main(args) == 1
    assert capsys.readouterr().err == f"ufer evaluate: error: manifest not found: " \
                                      f"{tmp_path / 'm.csv'}\n"
    with pytest.raises(FileNotFoundError):
        main([*args, "--debug"])
    monkeypatch.setenv("UFER_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(args)
    monkeypatch.delenv("UFER_DEBUG")

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("ufer.engine.evaluate.evaluate", broken)
    assert main(args) == 1
    assert capsys.readouterr().err == ("ufer evaluate: error: RuntimeError: boom (an unexpected "
                                       "error: run again with --debug or UFER_DEBUG=1 for the "
                                       "traceback)\n")
    assert main(["evaluate", "x.ckpt"]) == 2
    assert capsys.readouterr().err == ("ufer evaluate: error: the following arguments are "
                                       "required: --manifest (see ufer evaluate --help)\n")


def test_reliab_train_accepts_registry_names_and_lists_methods(tiny_manifest, capsys):
    from ufer.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(["train", "--model", "scn", "--data.manifest", tiny_manifest, "--print_config"])
    assert stop.value.code == 0
    assert "class_path: ufer.methods.scn.SCN" in capsys.readouterr().out
    assert main(["train", "--model", "Foo", "--data.manifest", tiny_manifest]) == 2
    assert capsys.readouterr().err == (
        "ufer train: error: --model Foo: unknown method; known: Baseline (baseline), LDLVA "
        "(ldlva), MTAC (mtac), POI (poi), SCN (scn), ULCAG (ulcag)\n")


def test_reliab_demo_checks_its_methods_before_any_work(tmp_path, monkeypatch):
    from ufer.engine import demo

    def synthesized(*args, **kwargs):
        raise AssertionError("the demo synthesized data before checking its arguments")

    monkeypatch.setattr(demo, "prepare_demo_data", synthesized)
    with pytest.raises(ValueError, match="unknown method 'foo'; known: baseline"):
        demo.run_demo(tmp_path / "demo", epochs=1, methods=["scn", "foo"])
    with pytest.raises(ValueError, match=r"--rate must lie in \[0, 1\], got 1.5"):
        demo.run_demo(tmp_path / "demo", epochs=1, rate=1.5)
    (tmp_path / "demo" / "scn-noisy" / "checkpoints").mkdir(parents=True)
    (tmp_path / "demo" / "scn-noisy" / "checkpoints" / "last.ckpt").write_bytes(b"kept")
    with pytest.raises(FileExistsError, match="scn-noisy holds a run of an earlier demo"):
        demo.run_demo(tmp_path / "demo", epochs=1, methods=["scn"])
