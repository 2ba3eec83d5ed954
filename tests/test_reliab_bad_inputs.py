"""Bad inputs and the one line each prints (issue 11): every row of docs/bad_inputs.md is run
here, in-process, and the table is generated from what the commands printed.

Each row runs ``ufer.cli.main.main`` in a workspace of small files (a 48-image synthetic
dataset, variants of its manifest, damaged checkpoints, a one-epoch run) and must exit
non-zero with its expected message in at most 3 lines on stderr. The last test renders
the table; when docs/bad_inputs.md differs it is rewritten and the test fails, so the
page always shows what the code prints (commit the rewritten file).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import textwrap
from contextlib import chdir, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY_BACKBONE

from ufer.cli.main import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
T = ["train", "--model", "Baseline", "--model.backbone", TINY_BACKBONE,
     "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1"]
LAST = "run/checkpoints/last.ckpt"


@dataclass(frozen=True)
class Row:
    """One bad input: what it is, the command (run from the workspace) and a regular
    expression its error line must match."""

    what: str
    argv: tuple[str, ...]
    expect: str

    @property
    def command(self) -> str:
        argv = list(self.argv)
        shown = ["T", *argv[len(T):]] if argv[:len(T)] == T else ["ufer", *argv]
        return " ".join(shown)


def train(*args: str) -> tuple[str, ...]:
    return (*T, *args)


def on(manifest: str, *args: str) -> tuple[str, ...]:
    return train("--data.manifest", f"data/{manifest}", *args)


ROWS = [
    # ---- the manifest file and its sidecar
    Row("manifest file missing", on("missing.csv"), r"manifest not found: data/missing.csv"),
    Row("sidecar JSON missing", on("no_sidecar.csv"), r"sidecar .*no_sidecar.json is missing"),
    Row("sidecar not JSON", on("bad_json.csv"), r"bad_json.json, line 1: is not valid JSON"),
    Row("sidecar 'classes' a string", on("classes_string.csv"), r"needs 'classes'"),
    Row("empty file (0 bytes)", on("empty.csv"), r"empty.csv: is empty \(no header row\)"),
    Row("header only, no rows", on("header_only.csv"), r"has no 'train' rows \(no rows at all\)"),
    Row("no train split", on("no_train.csv"), r"has no 'train' rows \(val \d+, test \d+\)"),
    Row("manifest not .csv/.parquet", on("manifest.txt"), r"must end in .csv or .parquet"),
    Row("Latin-1 encoded CSV", on("latin1.csv"), r"latin1.csv, line \d+: is not UTF-8 text"),
    Row("semicolon-separated CSV", on("semicolon.csv"), r"column 'path': required column"),
    Row("row with an extra field", on("ragged.csv"), r"line 6: malformed CSV: \d+ fields"),
    Row("no label column", on("no_label.csv"), r"column 'label': required column is missing"),
    Row("valence without arousal", on("valence_only.csv"), r"'valence' and 'arousal' must come"),
    # ---- cells
    Row("label 7 with 7 classes", on("label_7.csv"), r"row 3 \(line 5\), column 'label': "
        r"value '7' is not a class index 0..6"),
    Row("label -1", on("label_neg.csv"), r"value '-1' is not a class index"),
    Row("label 2.5", on("label_frac.csv"), r"value '2.5' is not an integer class index"),
    Row("label 'happy' (a name)", on("label_text.csv"), r"value 'happy' is not a number"),
    Row("label empty", on("label_empty.csv"), r"is empty; every row needs a class index"),
    Row("split 'Train'", on("split_case.csv"), r"value 'Train' is not a split"),
    Row("duplicate image path", on("dup_path.csv"), r"column 'path': value .* duplicates row"),
    Row("empty image path", on("empty_path.csv"), r"column 'path': image path is empty"),
    Row("valence 'nan'", on("valence_nan.csv"), r"value 'nan' is NaN; leave the cell empty"),
    Row("valence 5", on("valence_5.csv"), r"value '5' is outside \[-1, 1\]"),
    Row("AU 2.0", on("au_2.csv"), r"column 'AU04': value '2.0' is outside \[0, 1\]"),
    Row("vote distribution sums to 1.9", on("dist_sum.csv"), r"dist_ values sum to 1.9"),
    Row("noisy 'maybe'", on("noisy_maybe.csv"), r"value 'maybe' is not a boolean"),
    # ---- images
    Row("image file missing", on("missing_image.csv"), r"points to a missing image file"),
    Row("truncated PNG", on("truncated_png.csv"), r"points to an image that cannot be decoded"),
    Row("text file named .png", on("text_png.csv"), r"cannot be decoded.*cannot identify"),
    Row("empty image file (0 bytes)", on("zero_png.csv"), r"cannot be decoded"),
    Row("path to a file that is not an image (../notes/passwd)", on("not_image.csv"),
        r"value '../notes/passwd'.*cannot be decoded"),
    Row("one 64 px image among 32 px ones", on("mixed_sizes.csv"),
        r"image size \(64, 64\) differs from the first image's \(32, 32\)"),
    # ---- arguments of ufer train
    Row("unknown method", on("manifest.csv", "--model", "Foo"),
        r"--model Foo: unknown method; known: Baseline \(baseline\)"),
    Row("misspelt method option", on("manifest.csv", "--model.lrr", "0.1"),
        r"--model: Option 'lrr' is not accepted"),
    Row("misspelt data option", on("manifest.csv", "--data.batchsize", "4"),
        r"unrecognized arguments: --data.batchsize 4"),
    Row("learning rate not a number", on("manifest.csv", "--model.lr", "abc"),
        r"--model.lr: expected float, got 'abc'"),
    Row("unknown scheduler", on("manifest.csv", "--model.scheduler", "nope"),
        r"--model.scheduler: expected one of \['onecycle'"),
    Row("unknown backbone", on("manifest.csv", "--model.backbone", "resnet_nope"),
        r"unknown backbone 'resnet_nope'"),
    Row("negative learning rate", on("manifest.csv", "--model.lr", "-1"),
        r"Invalid learning rate: -1.0"),
    Row("max_epochs 0", on("manifest.csv", "--trainer.max_epochs", "0"),
        r"max_epochs must be at least 1, got 0"),
    Row("max_epochs not a number", on("manifest.csv", "--trainer.max_epochs", "x"),
        r"--trainer.max_epochs: expected int, got 'x'"),
    Row("image size 0", on("manifest.csv", "--data.image_size", "0"),
        r"image_size must be an integer >= 1 or None"),
    Row("image size -5", on("manifest.csv", "--data.image_size", "-5"),
        r"image_size must be an integer >= 1 or None .* got -5"),
    Row("batch size 0", on("manifest.csv", "--data.batch_size", "0"),
        r"batch_size must be an integer >= 1, got 0"),
    Row("validation split 'validation'", on("manifest.csv", "--data.val_split", "validation"),
        r"val_split 'validation' is not a split"),
    # ---- run folders and checkpoints
    Row("run folder of an existing run", on("manifest.csv", "--run_dir", "run"),
        r"run holds a run already .* --ckpt_path run/checkpoints/last.ckpt"),
    Row("checkpoint missing", on("manifest.csv", "--ckpt_path", "ck/missing.ckpt"),
        r"checkpoint not found: ck/missing.ckpt"),
    Row("checkpoint a folder", on("manifest.csv", "--ckpt_path", "run"),
        r"checkpoint not found: run \(a folder"),
    Row("checkpoint a text file", on("manifest.csv", "--ckpt_path", "ck/text.ckpt"),
        r"ck/text.ckpt cannot be read as a checkpoint"),
    Row("checkpoint truncated", on("manifest.csv", "--ckpt_path", "ck/truncated.ckpt"),
        r"ck/truncated.ckpt cannot be read as a checkpoint: it is truncated"),
    Row("checkpoint empty (0 bytes)", on("manifest.csv", "--ckpt_path", "ck/empty.ckpt"),
        r"ck/empty.ckpt is empty \(0 bytes\)"),
    Row("checkpoint with code in it (pickle)", on("manifest.csv", "--ckpt_path", "ck/evil.ckpt"),
        r"ck/evil.ckpt holds objects other than weights"),
    Row("checkpoint not written by ufer", on("manifest.csv", "--ckpt_path", "ck/plain.ckpt"),
        r"ck/plain.ckpt is not a ufer checkpoint"),
    Row("resume with another method", on("manifest.csv", "--model", "SCN", "--ckpt_path", LAST,
                                         "--trainer.max_epochs", "2"),
        r"was trained by method 'baseline', not 'scn'"),
    Row("resume with another learning rate", on("manifest.csv", "--model.lr", "0.5",
                                                "--ckpt_path", LAST, "--trainer.max_epochs", "2"),
        r"was trained with model.lr 0.05, not 0.5"),
    Row("resume with another batch size", on("manifest.csv", "--data.batch_size", "8",
                                             "--ckpt_path", LAST, "--trainer.max_epochs", "2"),
        r"was trained with data.batch_size 128, not 8"),
    Row("resume a onecycle run for more epochs", on("manifest.csv", "--ckpt_path", LAST,
                                                    "--trainer.max_epochs", "2"),
        r"was planned for 1 epoch by its onecycle schedule"),
    Row("resume a finished run", on("manifest.csv", "--ckpt_path", LAST),
        r"has trained 1 epoch already: max_epochs 1 leaves nothing to train"),
    # ---- ufer evaluate
    Row("evaluate: checkpoint missing", ("evaluate", "ck/missing.ckpt", "--manifest",
                                         "data/manifest.csv"), r"checkpoint not found"),
    Row("evaluate: checkpoint a text file", ("evaluate", "ck/text.ckpt", "--manifest",
                                             "data/manifest.csv"), r"ck/text.ckpt cannot be read"),
    Row("evaluate: 8-class data, 7-class checkpoint", ("evaluate", LAST, "--manifest",
                                                       "data/eight.csv"),
        r"predicts 7 classes but data/eight.csv has 8"),
    Row("evaluate: unknown split", ("evaluate", LAST, "--manifest", "data/manifest.csv",
                                    "--split", "validation"),
        r"split 'validation' is not a split"),
    Row("evaluate: empty split", ("evaluate", LAST, "--manifest", "data/no_test.csv"),
        r"has no 'test' rows \(train \d+, val \d+\)"),
    Row("evaluate: image size 0", ("evaluate", LAST, "--manifest", "data/manifest.csv",
                                   "--image-size", "0"), r"image_size must be an integer >= 1"),
    Row("evaluate: no --manifest", ("evaluate", LAST),
        r"required: --manifest \(see ufer evaluate --help\)"),
    # ---- ufer report, noise, demo, bench, synth
    Row("report: not a run folder", ("report", "notarun"),
        r"checkpoint not found: notarun/checkpoints/last.ckpt"),
    Row("report: manifest reordered since training", ("report", "run", "--manifest",
                                                      "data/reordered.csv"),
        r"data/reordered.csv: row \d+ .* is not the row the run trained on"),
    Row("noise: OUT's sidecar exists", ("noise", "data/manifest.csv", "--out", "mine/user.csv",
                                       "--protocol", "symmetric", "--rate", "0.2"),
        r"mine/user.json exists; pass --overwrite"),
    Row("noise: OUT is the input", ("noise", "data/manifest.csv", "--out", "data/manifest.csv",
                                   "--protocol", "symmetric", "--rate", "0.2"),
        r"would overwrite the input manifest"),
    Row("noise: rate 1.5", ("noise", "data/manifest.csv", "--out", "noisy.csv", "--protocol",
                           "symmetric", "--rate", "1.5"), r"rate must lie in \[0, 1\]"),
    Row("noise: Latin-1 encoded CSV", ("noise", "data/latin1.csv", "--out", "noisy.csv",
                                      "--protocol", "symmetric", "--rate", "0.2"),
        r"latin1.csv, line \d+: is not UTF-8 text"),
    Row("demo: unknown method", ("demo", "--out", "demo", "--methods", "foo"),
        r"unknown method 'foo'; known: baseline"),
    Row("demo: rate 1.5", ("demo", "--out", "demo", "--rate", "1.5"),
        r"--rate must lie in \[0, 1\], got 1.5"),
    Row("demo: epochs 0", ("demo", "--out", "demo", "--epochs", "0"),
        r"max_epochs must be at least 1, got 0"),
    Row("demo: runs of an earlier demo", ("demo", "--out", "old_demo"),
        r"old_demo/baseline-clean holds a run of an earlier demo"),
    Row("bench: seeds 0", ("bench", "--manifest", "data/manifest.csv", "--seeds", "0",
                          "--out", "bench"), r"seeds must be at least 1, got 0"),
    Row("bench: jobs 0", ("bench", "--manifest", "data/manifest.csv", "--jobs", "0",
                         "--out", "bench"), r"jobs must be at least 1, got 0"),
    Row("bench: folds 1", ("bench", "--manifest", "data/manifest.csv", "--folds", "1",
                          "--out", "bench"), r"folds must be at least 2, got 1"),
    Row("bench: unknown method", ("bench", "--manifest", "data/manifest.csv", "--methods",
                                 "foo", "--out", "bench"), r"unknown method\(s\) \['foo'\]"),
    Row("synth: negative training size", ("synth", "--out", "synth", "--n-train", "-5"),
        r"n.train"),
    Row("misspelt verb", ("trian",), r"invalid choice: 'trian'"),
]


# ----------------------------------------------------------------------------- workspace
class _Payload:
    """Pickles as a call of os.system: a checkpoint that would run code if loaded fully."""

    def __reduce__(self):
        return os.system, ("touch PAYLOAD_RAN",)


def _variant(data: Path, name: str, edit=None, *, sidecar: bool = True) -> Path:
    """data/NAME.csv: the manifest's cells as text after ``edit(frame)``, and a sidecar."""
    frame = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    frame = edit(frame) if edit else frame
    frame.to_csv(data / f"{name}.csv", index=False)
    if sidecar:
        shutil.copy(data / "manifest.json", data / f"{name}.json")
    return data / f"{name}.csv"


def _cell(row: int, column: str, value: str):
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame
    return edit


def _text_variant(data: Path, name: str, text: str | bytes) -> None:
    target = data / f"{name}.csv"
    target.write_bytes(text if isinstance(text, bytes) else text.encode())
    shutil.copy(data / "manifest.json", data / f"{name}.json")


def _bad_images(ws: Path, data: Path) -> None:
    """Damaged images under data/bad/ and a text file outside the dataset folder."""
    bad = data / "bad"
    bad.mkdir()
    png = (data / pd.read_csv(data / "manifest.csv")["path"][0]).read_bytes()
    (bad / "truncated.png").write_bytes(png[: len(png) // 2])
    (bad / "text.png").write_text("not a picture\n")
    (bad / "zero.png").write_bytes(b"")
    from PIL import Image
    Image.new("RGB", (64, 64), (90, 90, 90)).save(bad / "big.png")
    (ws / "notes").mkdir()
    (ws / "notes" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    for name, path in (("missing_image", "images/train/nope.png"),
                       ("truncated_png", "bad/truncated.png"), ("text_png", "bad/text.png"),
                       ("zero_png", "bad/zero.png"), ("not_image", "../notes/passwd"),
                       ("mixed_sizes", "bad/big.png")):
        _variant(data, name, _cell(1, "path", path))


def _manifests(data: Path) -> None:
    header = (data / "manifest.csv").read_text().splitlines()[0]
    lines = (data / "manifest.csv").read_text().splitlines()
    for name, row, column, value in (
            ("label_7", 3, "label", "7"), ("label_neg", 3, "label", "-1"),
            ("label_frac", 3, "label", "2.5"), ("label_text", 3, "label", "happy"),
            ("label_empty", 3, "label", ""), ("split_case", 2, "split", "Train"),
            ("empty_path", 2, "path", ""), ("valence_nan", 2, "valence", "nan"),
            ("valence_5", 2, "valence", "5"), ("au_2", 2, "AU04", "2.0")):
        _variant(data, name, _cell(row, column, value))
    first = pd.read_csv(data / "manifest.csv", dtype=str)["path"][1]
    _variant(data, "dup_path", _cell(4, "path", first))
    _variant(data, "dist_sum", _cell(2, "dist_neutral", str(
        float(pd.read_csv(data / "manifest.csv")["dist_neutral"][2]) + 0.9)))
    _variant(data, "noisy_maybe", lambda f: f.assign(noisy=["False"] * 2 + ["maybe"] +
                                                     ["False"] * (len(f) - 3)))
    _variant(data, "no_label", lambda f: f.drop(columns=["label"]))
    _variant(data, "valence_only", lambda f: f.drop(columns=["arousal"]))
    _variant(data, "no_train", lambda f: f[f["split"] != "train"])
    _variant(data, "no_test", lambda f: f[f["split"] != "test"])
    _variant(data, "reordered", lambda f: pd.concat([f[f["split"] == "train"].iloc[::-1],
                                                     f[f["split"] != "train"]]))
    _variant(data, "no_sidecar", sidecar=False)
    _variant(data, "bad_json", sidecar=False)
    (data / "bad_json.json").write_text("{not json\n")
    _variant(data, "classes_string", sidecar=False)
    (data / "classes_string.json").write_text('{"classes": "neutral,happy"}\n')
    _text_variant(data, "empty", "")
    _text_variant(data, "header_only", header + "\n")
    _text_variant(data, "ragged", "\n".join(lines[:5] + [lines[5] + ",extra"] + lines[6:]))
    _text_variant(data, "semicolon", "\n".join(line.replace(",", ";") for line in lines))
    latin = lines[:3] + [lines[3].replace("images/", "images/café-", 1)] + lines[4:]
    _text_variant(data, "latin1", "\n".join(latin).encode("latin-1"))
    shutil.copy(data / "manifest.csv", data / "manifest.txt")
    _variant(data, "eight", lambda f: f.assign(dist_contempt="0"), sidecar=False)
    meta = json.loads((data / "manifest.json").read_text())
    (data / "eight.json").write_text(json.dumps({**meta, "classes": meta["classes"] +
                                                 ["contempt"]}))


def _checkpoints(ws: Path) -> None:
    ck = ws / "ck"
    ck.mkdir()
    good = (ws / LAST).read_bytes()
    (ck / "text.ckpt").write_text("hello, not a checkpoint\n")
    (ck / "truncated.ckpt").write_bytes(good[: len(good) // 2])
    (ck / "empty.ckpt").write_bytes(b"")
    torch.save({"x": _Payload()}, ck / "evil.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, ck / "plain.ckpt")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Every file the rows use, in a fresh folder that the rows run in."""
    return build_workspace(tmp_path_factory.mktemp("bad_inputs"))


def build_workspace(ws: Path) -> Path:
    """Write into ``ws`` the data, broken manifests, images and checkpoints and the run."""
    from ufer.data.synthetic import generate

    data = generate(ws / "data", preset="tiny", seed=0, n_train=32, n_val=8, n_test=8).parent
    _manifests(data)
    _bad_images(ws, data)
    with chdir(ws):
        assert _run(on("manifest.csv", "--run_dir", "run"))[0] == 0
    _checkpoints(ws)
    (ws / "mine").mkdir()
    (ws / "mine" / "user.json").write_text('{"mine": 1}\n')
    (ws / "old_demo" / "baseline-clean").mkdir(parents=True)
    (ws / "old_demo" / "baseline-clean" / "results.json").write_text("{}\n")
    return ws


# ----------------------------------------------------------------------------- running
def _run(argv: tuple[str, ...]) -> tuple[int, str]:
    """(exit status, stderr) of ``ufer ARGV`` run in-process."""
    err = io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            status = main(list(argv))
    finally:
        torch.set_num_threads(1)  # ufer train takes every core; tests keep to one
    return status, err.getvalue()


_OUTCOMES: dict[Row, tuple[int, str]] = {}


def outcome(row: Row, workspace: Path) -> tuple[int, str]:
    """The row's (exit status, stderr), run once per session."""
    if row not in _OUTCOMES:
        with chdir(workspace):
            _OUTCOMES[row] = _run(row.argv)
    return _OUTCOMES[row]


@pytest.mark.parametrize("row", ROWS, ids=[r.what for r in ROWS])
def test_reliab_bad_input_prints_one_clear_line(row: Row, workspace: Path):
    status, err = outcome(row, workspace)
    lines = err.strip().splitlines()
    assert status != 0, err
    assert 1 <= len(lines) <= 3, err
    assert re.search(row.expect, lines[-1]), err
    assert lines[-1].startswith(f"ufer {row.argv[0]}: error: " if row.argv[0] != "trian"
                                else "ufer: error: ")
    assert not (workspace / "PAYLOAD_RAN").exists()


INTRO = ("Generated by `tests/test_reliab_bad_inputs.py` from what each command printed (do "
         "not edit: run `pytest -k reliab_bad_input` and commit the rewritten file). Every "
         "error is one line on stderr and a non-zero exit status (2 for a wrong argument); "
         "`--debug` or `UFER_DEBUG=1` shows the traceback instead. The commands ran in a "
         "folder holding `data/` (a 48-image synthetic dataset and broken copies of its "
         "manifest), `ck/` (damaged checkpoints) and `run/` (a one-epoch baseline run).")


def render(outcomes: list[tuple[Row, str]]) -> str:
    """docs/bad_inputs.md from each row's stderr."""
    head = ["# Bad inputs and what ufer prints", "", textwrap.fill(INTRO, 92), "",
            f"`T` = `ufer {' '.join(T)}`", "",
            "| input | command | error printed |", "|---|---|---|"]
    body = [f"| {row.what} | `{row.command}` | {_cell_text(err.strip().splitlines()[-1])} |"
            for row, err in outcomes]
    return "\n".join(head + body) + "\n"


def _cell_text(line: str) -> str:
    return line.replace("|", "\\|")


def test_reliab_bad_input_table_is_current(workspace: Path):
    """docs/bad_inputs.md is the table of what the rows print (rewritten when it differs)."""
    table = render([(row, outcome(row, workspace)[1]) for row in ROWS])
    assert len(ROWS) >= 40
    current = DOC.read_text() if DOC.exists() else ""
    if current != table:
        DOC.write_text(table)
    assert current == table, f"{DOC} was out of date and has been rewritten: commit it"
