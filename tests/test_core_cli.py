"""`ufer train` (LightningCLI) and `ufer evaluate` end to end on the tiny data."""
import json

from conftest import TINY_BACKBONE

from ufer.cli.main import main


def test_train_then_evaluate(tiny_noisy_manifest, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "Baseline", "--data.manifest", tiny_noisy_manifest,
                 "--model.backbone", TINY_BACKBONE, "--data.batch_size", "32",
                 "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
                 "--run_dir", str(run)]) == 0
    assert (run / "metrics.csv").exists() and (run / "config.yaml").exists()
    assert main(["evaluate", str(run / "checkpoints" / "last.ckpt"),
                 "--manifest", tiny_noisy_manifest, "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "overall accuracy" in out and "mean class accuracy" in out
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["n"] == 100 and sum(map(sum, result["confusion"])) == 100
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000
    assert "accuracy_clean" in result


def test_every_verb_has_help(capsys):
    for verb in ("synth", "noise", "evaluate", "demo"):
        try:
            main([verb, "--help"])
        except SystemExit as stop:
            assert stop.code == 0
    assert "--manifest" in capsys.readouterr().out
