"""ufer pseudo-va (LDLVA's valence/arousal): from a model with a VA head or a user table, into
a NEW manifest with coverage; a model without VA head, or an existing output, is refused."""
import json

import pandas as pd
import pytest
import torch
from conftest import TINY_BACKBONE, tiny_fit_kwargs
from helpers import write_tiny_manifest

from ufer.cli.main import build_parser
from ufer.data import schema
from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest, write_manifest
from ufer.data.transforms import preprocess
from ufer.engine.pseudo_va import pseudo_va
from ufer.engine.train import train_method
from ufer.methods.base import load_method


def _without_va(manifest: str, out) -> str:
    """A copy of ``manifest`` without its VA columns (what RAF-DB looks like)."""
    m = read_manifest(manifest)
    frame = m.frame.drop(columns=[schema.VALENCE, schema.AROUSAL])
    frame[schema.PATH] = [str(m.image_path(i)) for i in range(len(m))]
    return str(write_manifest(frame, {"classes": m.classes, "aus": m.au_names}, out))


def test_ldlva_pseudo_va_from_a_model_with_a_va_head(tiny_manifest, tmp_path):
    run = tmp_path / "mtac"
    train_method(tiny_manifest, "mtac", run, 1, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE}, data_kwargs={"batch_size": 64},
                 **tiny_fit_kwargs())
    ckpt = run / "checkpoints" / "last.ckpt"
    plain = _without_va(tiny_manifest, tmp_path / "plain.csv")
    assert not read_manifest(plain).has_va
    info = pseudo_va(plain, tmp_path / "va.csv", model=ckpt)
    assert info["kind"] == "model" and info["method"] == "mtac"
    assert info["coverage"]["share"] == 1.0
    annotated = read_manifest(tmp_path / "va.csv")
    assert annotated.has_va and annotated.meta["va_source"]["checkpoint"] == str(ckpt)
    # the values are the VA head's on the un-augmented images, whatever the labels say
    method, _ = load_method(ckpt)
    images = torch.stack([ManifestDataset(read_manifest(plain))[i]["image"] for i in range(5)])
    expected = method.auxiliary_outputs(preprocess(images, *method.normalization))
    got = annotated.frame[[schema.VALENCE, schema.AROUSAL]].to_numpy()[:5]
    torch.testing.assert_close(torch.tensor(got).float(), expected["valence_arousal"])
    # an existing output is refused before anything runs; a baseline has no VA head
    with pytest.raises(FileExistsError, match="--overwrite"):
        pseudo_va(plain, tmp_path / "va.csv", model=ckpt)
    train_method(tiny_manifest, "baseline", tmp_path / "base", 1, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE}, data_kwargs={"batch_size": 64},
                 **tiny_fit_kwargs())
    with pytest.raises(ValueError, match="predicts no valence/arousal"):
        pseudo_va(plain, tmp_path / "va2.csv",
                  model=tmp_path / "base" / "checkpoints" / "last.ckpt")
    assert not (tmp_path / "va2.csv").exists()


def test_ldlva_pseudo_va_from_a_table_via_the_cli(tmp_path, capsys):
    manifest = write_tiny_manifest(tmp_path, n=8, va=False)
    table = tmp_path / "va_table.csv"
    pd.DataFrame({"path": ["img/000.png", "img/001.png", "img/004.png"],
                  "valence": [1.0, 5.0, 9.0], "arousal": [5.0, 5.0, 1.0]}).to_csv(table,
                                                                              index=False)
    args = build_parser({"pseudo-va": "pseudo_va"}).parse_args(
        ["pseudo-va", "--manifest", str(manifest), "--csv", str(table), "--scale", "1", "9",
         "--out", str(tmp_path / "out.csv")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "coverage 3 of 8 images (37.5%" in printed and "train 75.0%" in printed
    frame = read_manifest(tmp_path / "out.csv").frame
    assert frame[schema.VALENCE].tolist()[:2] == [-1.0, 0.0] and frame[schema.AROUSAL][4] == -1.0
    assert frame[schema.VALENCE].isna().sum() == 5
    sidecar = json.loads(schema.sidecar_path(tmp_path / "out.csv").read_text())
    assert sidecar["va_source"]["coverage"]["annotated"] == 3
    # never over the input, never over an existing output without --overwrite
    for out, message in ((manifest, "would overwrite the input"), (tmp_path / "out.csv", "exists")):
        args = build_parser({"pseudo-va": "pseudo_va"}).parse_args(
            ["pseudo-va", "--manifest", str(manifest), "--csv", str(table), "--out", str(out)])
        assert args.func(args) == 1
        assert message in capsys.readouterr().err
