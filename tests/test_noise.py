"""Noise protocols: rates, uniformity, purity, reproducibility; apply_noise and `ufer noise`."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import write_tiny_manifest

from ufer.cli.main import build_parser
from ufer.data import schema
from ufer.data.manifest import read_manifest
from ufer.data.noise import (
    apply_noise,
    load_label_list,
    load_transition,
    matrix_noise,
    pairs_by_name,
    pairwise_matrix,
    symmetric_noise,
)

N, C = 20000, 7


@pytest.fixture
def labels() -> np.ndarray:
    return np.random.default_rng(123).integers(0, C, size=N)


def test_exact_variant_flips_exactly_round_rn(labels):
    for rate in (0.0, 0.1, 0.3, 0.45, 1.0):
        noisy = symmetric_noise(labels, C, rate, seed=0, exact=True)
        assert (noisy != labels).sum() == round(rate * N)


def test_probabilistic_rate_within_binomial_bound(labels):
    rate = 0.3
    flipped = (symmetric_noise(labels, C, rate, seed=1) != labels).sum()
    sigma = np.sqrt(N * rate * (1 - rate))
    assert abs(flipped - rate * N) < 4 * sigma


def test_never_maps_a_label_to_itself(labels):
    noisy = symmetric_noise(labels, C, 1.0, seed=2)
    assert (noisy != labels).all()


def test_flips_are_uniform_over_other_classes(labels):
    noisy = symmetric_noise(labels, C, 1.0, seed=3)
    counts = np.zeros((C, C))
    np.add.at(counts, (labels, noisy), 1)
    assert np.diag(counts).sum() == 0
    for i in range(C):
        row = np.delete(counts[i], i)
        expected = row.sum() / (C - 1)
        chi2 = ((row - expected) ** 2 / expected).sum()
        assert chi2 < 25  # chi-square, 5 dof: P(chi2 > 25) < 2e-4


def test_reproducible_and_seed_dependent_and_pure(labels):
    before = labels.copy()
    a = symmetric_noise(labels, C, 0.4, seed=7)
    assert np.array_equal(a, symmetric_noise(labels, C, 0.4, seed=7))
    assert not np.array_equal(a, symmetric_noise(labels, C, 0.4, seed=8))
    matrix_noise(labels, pairwise_matrix(C, 0.3, {0: 1}), seed=0)
    assert np.array_equal(labels, before)
    assert a.dtype == np.int64


def test_bad_arguments_are_rejected(labels):
    with pytest.raises(ValueError, match=r"rate must lie in \[0, 1\], got 1.5"):
        symmetric_noise(labels, C, 1.5, seed=0)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        symmetric_noise(labels, 3, 0.1, seed=0)


def test_matrix_noise_follows_transition(labels):
    rng = np.random.default_rng(0)
    t = rng.dirichlet(np.ones(C), size=C)
    noisy = matrix_noise(labels, t, seed=4)
    for i in range(C):
        given = labels == i
        observed = np.bincount(noisy[given], minlength=C) / given.sum()
        sigma = np.sqrt(t[i] * (1 - t[i]) / given.sum())
        assert (np.abs(observed - t[i]) < 4 * sigma + 1e-9).all()


def test_pairwise_matrix_and_names():
    pairs = pairs_by_name(list(schema.EMOTIONS7))
    fear, surprise, happy = 4, 3, 1
    assert pairs[fear] == surprise and happy not in pairs
    t = pairwise_matrix(C, 0.2, pairs)
    assert t[fear, fear] == pytest.approx(0.8) and t[fear, surprise] == pytest.approx(0.2)
    assert t[happy, happy] == 1 and np.allclose(t.sum(1), 1)
    with pytest.raises(ValueError, match="none of the pairs"):
        pairs_by_name(["cat", "dog"])


def test_load_transition_validates(tmp_path):
    good = np.full((3, 3), 1 / 3)
    np.save(tmp_path / "t.npy", good)
    assert np.allclose(load_transition(tmp_path / "t.npy", 3), good)
    np.savetxt(tmp_path / "t.csv", good, delimiter=",")
    assert np.allclose(load_transition(tmp_path / "t.csv"), good)
    with pytest.raises(ValueError, match=r"t\.csv: is 3 x 3 but there are 7 classes"):
        load_transition(tmp_path / "t.csv", 7)
    np.savetxt(tmp_path / "rect.csv", np.full((2, 3), 0.5), delimiter=",")
    with pytest.raises(ValueError, match=r"rect\.csv: must be a square C x C matrix"):
        load_transition(tmp_path / "rect.csv")
    bad = good.copy()
    bad[1] = [0.5, 0.5, 0.5]
    np.savetxt(tmp_path / "sum.csv", bad, delimiter=",")
    with pytest.raises(ValueError, match=r"sum\.csv: row 1 sums to 1\.5, not 1"):
        load_transition(tmp_path / "sum.csv")
    bad[1] = [1.5, -0.5, 0]
    np.savetxt(tmp_path / "neg.csv", bad, delimiter=",")
    with pytest.raises(ValueError, match=r"neg\.csv: row 1 has a negative probability"):
        load_transition(tmp_path / "neg.csv")


def test_load_label_list(tmp_path):
    path = tmp_path / "noise01.txt"
    path.write_text("train_00001.jpg 5\ntrain_00002.jpg 1\n\n")
    assert load_label_list(path) == {"train_00001.jpg": 4, "train_00002.jpg": 0}
    path.write_text("train_00001.jpg 5\ntrain_00002.jpg x\n")
    with pytest.raises(ValueError, match=r"noise01\.txt, line 2: expected"):
        load_label_list(path)


def test_apply_noise_keeps_truth_and_touches_only_train(tmp_path):
    m = read_manifest(write_tiny_manifest(tmp_path, n=40, clean=False))
    original = m.frame.copy()
    frame, meta = apply_noise(m, protocol="symmetric", rate=1.0, seed=0)
    assert m.frame.equals(original)  # the input manifest is untouched
    train = (frame[schema.SPLIT] == "train").to_numpy()
    assert (frame[schema.GIVEN_LABEL] == original[schema.LABEL]).all()
    assert (frame[schema.CLEAN_LABEL] == original[schema.LABEL]).all()
    assert (frame[schema.LABEL][train] != original[schema.LABEL][train]).all()
    assert (frame[schema.LABEL][~train] == original[schema.LABEL][~train]).all()
    assert frame[schema.NOISY].tolist() == train.tolist()
    noise = meta["noise"]
    assert noise["flipped"] == train.sum() and noise["realised_rate"] == 1.0
    assert (noise["protocol"], noise["seed"], noise["splits"]) == ("symmetric", 0, ["train"])
    assert np.array(noise["flip_counts"]).sum() == train.sum() and "counts" not in meta


def test_apply_noise_keeps_synthetic_clean_label(tmp_path):
    m = read_manifest(write_tiny_manifest(tmp_path, n=40))
    frame, _ = apply_noise(m, protocol="symmetric", rate=0.5, seed=1, exact=True)
    assert (frame[schema.CLEAN_LABEL] == m.frame[schema.CLEAN_LABEL]).all()
    assert (frame[schema.NOISY] == (frame[schema.LABEL] != frame[schema.CLEAN_LABEL])).all()


def test_apply_noise_from_label_list(tmp_path):
    m = read_manifest(write_tiny_manifest(tmp_path, n=4))
    listing = {"000.png": 6, "001.png": 1, "002.png": 0, "003.png": 0}
    frame, meta = apply_noise(m, protocol="list", rate=None, seed=0, label_list=listing)
    assert frame[schema.LABEL].tolist() == [6, 1, 2, 3] and meta["noise"]["flipped"] == 1
    with pytest.raises(ValueError, match=r"no label .* for image 'img/001\.png' \(manifest row 1"):
        apply_noise(m, protocol="list", rate=None, seed=0, label_list={"000.png": 1})


def _run(argv: list[str]) -> int:
    args = build_parser({"noise": "noise"}).parse_args(["noise", *argv])
    return args.func(args)


def test_cli_writes_new_manifest_with_protocol_and_seed(tmp_path, capsys):
    source = write_tiny_manifest(tmp_path, n=24)
    before = source.read_bytes(), schema.sidecar_path(source).read_bytes()
    out = tmp_path / "noisy" / "m_sym.csv"
    assert _run([str(source), "--out", str(out), "--protocol", "symmetric", "--rate", "0.5",
                 "--seed", "9", "--exact"]) == 0
    printed = capsys.readouterr().out
    assert "flipped 6 labels, realised rate 0.5000" in printed and "given \\ noisy" in printed
    noisy = read_manifest(out)  # image paths were rewritten and still resolve
    assert noisy.frame[schema.PATH].iat[0] == "../img/000.png"
    sidecar = json.loads(schema.sidecar_path(out).read_text())
    assert sidecar["noise"]["protocol"] == "symmetric" and sidecar["noise"]["seed"] == 9
    assert sidecar["noise"]["exact"] is True and sidecar["classes"] == noisy.classes
    assert (source.read_bytes(), schema.sidecar_path(source).read_bytes()) == before


def test_cli_same_folder_keeps_paths_and_pairwise(tmp_path, capsys):
    source = write_tiny_manifest(tmp_path, n=24)
    out = tmp_path / "m_pair.parquet"
    assert _run([str(source), "--out", str(out), "--protocol", "pairwise", "--rate", "0.5",
                 "--pairs", "neutral=happy"]) == 0
    noisy = read_manifest(out)
    assert noisy.frame[schema.PATH].iat[0] == "img/000.png"
    t = np.array(noisy.meta["noise"]["transition"])
    assert t[0, 1] == 0.5 and t[1, 1] == 1.0


def test_cli_refuses_to_overwrite_input(tmp_path, capsys):
    source = write_tiny_manifest(tmp_path)
    before = source.read_bytes()
    for out in (source, tmp_path / "m.parquet"):  # same file; same sidecar m.json
        assert _run([str(source), "--out", str(out), "--protocol", "symmetric",
                     "--rate", "0.2"]) == 1
        assert "would overwrite the input manifest" in capsys.readouterr().err
    assert source.read_bytes() == before
    existing = tmp_path / "other.csv"
    existing.write_text("keep")
    assert _run([str(source), "--out", str(existing), "--protocol", "symmetric",
                 "--rate", "0.2"]) == 1
    assert "pass --overwrite" in capsys.readouterr().err and existing.read_text() == "keep"


def test_cli_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser({"noise": "noise"}).parse_args(["noise", "--help"])
    text = capsys.readouterr().out
    for option in ("--out", "--protocol", "--rate", "--seed", "--exact", "--matrix", "--pairs",
                   "--list", "--splits", "--overwrite"):
        assert option in text
