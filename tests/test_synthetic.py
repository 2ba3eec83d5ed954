"""The synthetic expression dataset: determinism, class balance, AU/VA semantics, votes, CLI."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from ufer.cli import synth as synth_cli
from ufer.cli.main import main
from ufer.data import schema
from ufer.data.synthetic import AUS, generate, make_config, sample_face
from ufer.engine.plots import contact_sheet

SMALL = {"n_train": 60, "n_val": 10, "n_test": 20, "image_size": 32}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    generate(out, preset="tiny", seed=3)
    return out


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """Manifest fields of 1400 training samples (no drawing: fast)."""
    cfg = make_config("demo")
    return pd.DataFrame([sample_face(cfg, 5, "train", i)[1] for i in range(1400)])


def test_layout_and_sidecar(tiny):
    frame = pd.read_csv(tiny / "manifest.csv")
    meta = pd.read_json(tiny / "manifest.json", typ="series")
    assert list(meta["classes"]) == list(schema.EMOTIONS7)
    assert meta["source"] == "synthetic" and meta["preset"] == "tiny" and meta["seed"] == 3
    assert meta["aus"] == [schema.au_column(a) for a in AUS]
    assert frame[schema.SPLIT].value_counts().to_dict() == {"train": 200, "val": 50, "test": 100}
    assert (tiny / frame[schema.PATH].iloc[0]).is_file()
    assert frame[schema.VALENCE].between(-1, 1).all() and frame[schema.AROUSAL].between(-1, 1).all()
    assert (frame[schema.NOISY] == (frame[schema.LABEL] != frame[schema.CLEAN_LABEL])).all()


def test_same_seed_same_bytes_other_seed_differs(tmp_path, tiny):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, preset="tiny", seed=7, **SMALL)
    generate(b, preset="tiny", seed=7, workers=2, **SMALL)
    generate(c, preset="tiny", seed=8, **SMALL)
    files_a = _files(a)
    assert len(files_a) == 92
    assert files_a == _files(b)
    files_c = _files(c)
    assert files_a["manifest.csv"] != files_c["manifest.csv"]
    assert files_a["images/train/000000.png"] != files_c["images/train/000000.png"]


def test_class_balance(rows):
    counts = rows[schema.CLEAN_LABEL].value_counts().reindex(range(7), fill_value=0)
    n, p = len(rows), 1 / 7
    assert (abs(counts - n * p) < 4 * np.sqrt(n * p * (1 - p))).all()
    cfg = make_config("bench-cpu")
    test = [sample_face(cfg, 0, "test", i)[1][schema.CLEAN_LABEL] for i in range(70)]
    assert np.bincount(test).tolist() == [10] * 7


def test_class_prior(tmp_path):
    cfg = make_config("tiny", class_prior=(1, 0, 0, 0, 0, 0, 1))
    labels = {sample_face(cfg, 0, "train", i)[1][schema.CLEAN_LABEL] for i in range(50)}
    assert labels == {0, 6}


def test_au_statistics_follow_prototypes(rows):
    mean = rows.groupby(schema.CLEAN_LABEL)[[f"true_AU{a:02d}" for a in AUS]].mean()
    neutral, happy, sad, surprise, _fear, disgust, anger = range(7)
    assert mean["true_AU12"].idxmax() == happy
    assert mean["true_AU26"].idxmax() == surprise
    assert mean.loc[surprise, "true_AU05"] > 0.3 > mean.loc[neutral, "true_AU05"]
    assert mean["true_AU09"].idxmax() == disgust
    for k in (anger, sad):
        assert mean.loc[k, "true_AU04"] > mean.loc[neutral, "true_AU04"] + 0.2


def test_valence_arousal_circumplex(rows):
    va = rows.groupby(schema.CLEAN_LABEL)[[schema.VALENCE, schema.AROUSAL]].mean()
    neutral, happy, sad, surprise, fear, disgust, anger = range(7)
    assert va.loc[happy, schema.VALENCE] > 0.3
    assert (va.loc[[sad, anger, fear, disgust], schema.VALENCE] < -0.2).all()
    assert (va.loc[[surprise, fear], schema.AROUSAL] > va.loc[neutral, schema.AROUSAL] + 0.3).all()


def test_offered_aus_are_noisy_detection(rows):
    true = rows[[f"true_AU{a:02d}" for a in AUS]].to_numpy() >= 0.3
    offered = rows[[schema.au_column(a) for a in AUS]].to_numpy()
    assert set(np.unique(offered)) <= {0.0, 1.0}
    miss = 1 - offered[true].mean()
    false_alarm = offered[~true].mean()
    assert abs(miss - 0.15) < 0.03 and abs(false_alarm - 0.05) < 0.015


def test_votes_and_majority(rows):
    dist = rows[[f"dist_{c}" for c in schema.EMOTIONS7]].to_numpy()
    assert np.allclose(dist.sum(1), 1)
    majority = dist.max(1)
    assert np.allclose(dist[np.arange(len(rows)), rows[schema.LABEL]], majority)
    assert 0.03 < rows[schema.NOISY].mean() < 0.12


def test_contempt_is_eighth_class():
    cfg = make_config("tiny", classes=8)
    row = sample_face(cfg, 0, "train", 0)[1]
    assert "dist_contempt" in row


def test_cli_writes_and_refuses_non_empty(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["synth", "--preset", "tiny", "--seed", "1", "--out", str(out)]
    assert main(args + ["--n-train", "30", "--n-val", "5", "--n-test", "10"]) == 0
    assert "annotator majority" in capsys.readouterr().out
    assert len(pd.read_csv(out / "manifest.csv")) == 45
    assert main(args) == 1
    assert main(args + ["--overwrite", "--n-train", "20", "--n-val", "5", "--n-test", "5"]) == 0
    assert len(pd.read_csv(out / "manifest.csv")) == 30


def test_cli_help_documents_every_option(capsys):
    parser = synth_cli.add_parser(argparse.ArgumentParser().add_subparsers())
    assert all(action.help for action in parser._actions)
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    text = capsys.readouterr().out
    for option in ("--preset", "--seed", "--out", "--image-size", "--n-train", "--n-val",
                   "--n-test", "--classes", "--workers", "--sheet", "--overwrite"):
        assert option in text


def test_contact_sheet(tmp_path, tiny):
    frame = pd.read_csv(tiny / "manifest.csv").head(12)
    images = [cv2.imread(str(tiny / p))[:, :, ::-1] for p in frame[schema.PATH]]
    out = contact_sheet(images, [str(k) for k in frame[schema.LABEL]], tmp_path / "s.png",
                        ncols=5, scale=2)
    sheet = cv2.imread(str(out))
    assert sheet.shape[0] > 3 * 64 and sheet.shape[1] > 5 * 64
    with pytest.raises(ValueError):
        contact_sheet(images, ["x"], tmp_path / "bad.png")
