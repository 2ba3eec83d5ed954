"""``Recognizer`` and ``ufer predict``: photos, folders, videos and crops in, one row per face
out; bad inputs reported per file; nothing touches the network."""
import socket
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_BACKBONE, tiny_fit_kwargs
from PIL import Image
from skimage import data

from ufer.cli.main import main
from ufer.data.transforms import load_image_tensor
from ufer.engine.train import train_method
from ufer.inference.export import export_bundle
from ufer.inference.recognizer import BOX_COLUMNS, LANDMARK_COLUMNS, Recognizer

SIZE = 32


@pytest.fixture(scope="module")
def checkpoint(tiny_manifest, tmp_path_factory) -> Path:
    """An MTAC checkpoint (VA and AU heads) after two steps."""
    run = tmp_path_factory.mktemp("mtac")
    train_method(tiny_manifest, "mtac", run, 1, method_kwargs={"backbone": TINY_BACKBONE},
                 data_kwargs={"batch_size": 32, "image_size": SIZE}, test=False,
                 limit_train_batches=2, limit_val_batches=1, **tiny_fit_kwargs())
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def bundle(checkpoint, tmp_path_factory) -> Path:
    return export_bundle(checkpoint, tmp_path_factory.mktemp("bundle"), heads=True)


@pytest.fixture(scope="module")
def recognizer(bundle) -> Recognizer:
    return Recognizer.from_bundle(bundle)


def test_recognizer_is_importable_from_ufer():
    from ufer import Recognizer as Exported

    assert Exported is Recognizer


def test_recognizer_detects_and_classifies_the_astronaut(recognizer):
    photo = data.astronaut()
    before = photo.copy()
    frame = recognizer.predict(photo)
    assert np.array_equal(photo, before)
    assert len(frame) == 1 and list(frame.columns) == recognizer.columns
    row = frame.iloc[0]
    assert row["status"] == "ok" and row["face"] == 0 and row["input"] == "<input 0>"
    np.testing.assert_allclose(row[BOX_COLUMNS[:4]].astype(float), [181, 62, 87, 110], atol=8)
    assert row["FaceScore"] > 0.99
    assert row["left_eye_x"] < row["nose_x"] < row["right_eye_x"]
    probs = row[recognizer.class_names].astype(float)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert row["label"] == probs.idxmax()
    assert -1 <= row["valence"] <= 1 and -1 <= row["arousal"] <= 1
    assert all(0 <= row[a] <= 1 for a in recognizer.au_names) and recognizer.au_names
    # the row's probabilities are the network's on the aligned crop
    from ufer.inference.detect import align

    landmarks = row[LANDMARK_COLUMNS].astype(float).to_numpy().reshape(5, 2)
    crop = align(photo, landmarks, recognizer.crop_size, recognizer.template)
    expected = recognizer.classify(load_image_tensor(crop, SIZE)[None])["probs"][0]
    np.testing.assert_allclose(probs.to_numpy(), expected, atol=1e-5)


def test_recognizer_face_free_photo_gives_a_no_face_row(recognizer):
    frame = recognizer.predict([data.coffee(), data.astronaut()])
    assert list(frame["status"]) == ["no face", "ok"]
    empty = frame.iloc[0]
    assert empty["error"] == "no face detected" and pd.isna(empty["face"])
    assert empty[recognizer.class_names + ["label"]].isna().all()


def test_recognizer_accepts_every_input_type_single_and_batched(recognizer, tmp_path):
    """The same 40 x 40 face as path, PIL, numpy uint8/float, tensor uint8/float, batches."""
    face = np.ascontiguousarray(data.astronaut()[70:190:3, 165:285:3])  # (40, 40, 3)
    Image.fromarray(face).save(tmp_path / "face.png")
    as_float = face.astype(np.float32) / 255
    tensor = torch.from_numpy(face).permute(2, 0, 1).contiguous()
    inputs = [str(tmp_path / "face.png"), Image.fromarray(face), face, as_float, tensor,
              tensor.float() / 255]
    copies = [x.copy() if isinstance(x, np.ndarray) else x.clone()
              for x in inputs if isinstance(x, (np.ndarray, torch.Tensor))]
    frame = recognizer.predict(inputs, detect=False)
    batched = recognizer.predict([np.stack([face, face]), torch.stack([tensor, tensor])],
                                 detect=False)
    after = [x for x in inputs if isinstance(x, (np.ndarray, torch.Tensor))]
    assert all((a == b).all() for a, b in zip(copies, after, strict=True))
    assert len(frame) == 6 and len(batched) == 4
    assert list(batched["input"]) == ["<input 0>[0]", "<input 0>[1]", "<input 1>[0]",
                                      "<input 1>[1]"]
    expected = recognizer.classify(load_image_tensor(face, SIZE)[None])["probs"][0]
    for table in (frame, batched):
        assert (table["status"] == "ok").all()
        np.testing.assert_allclose(table[recognizer.class_names].to_numpy(float),
                                   np.tile(expected, (len(table), 1)), atol=1e-5)
    whole = frame.iloc[0]
    assert list(whole[BOX_COLUMNS[:4]]) == [0, 0, 40, 40] and pd.isna(whole["FaceScore"])
    bad = recognizer.predict([np.zeros((4, 4), np.int64), face * 0.0 + 2.0], detect=False)
    assert list(bad["status"]) == ["error", "error"]
    assert "uint8 or float" in bad["error"][0] and "[0, 1]" in bad["error"][1]


def test_recognizer_dicts_and_hsemotion_style_call(recognizer):
    face = np.ascontiguousarray(data.astronaut()[60:200, 160:290])
    rows = recognizer.predict_dicts([face], detect=False)
    assert len(rows) == 1 and list(rows[0]) == recognizer.columns
    label, probs = recognizer.predict_emotions(face)
    assert label == rows[0]["label"] and probs.shape == (len(recognizer.class_names),)
    np.testing.assert_allclose(probs, [rows[0][c] for c in recognizer.class_names], atol=1e-6)
    _, logits = recognizer.predict_emotions(face, logits=True)
    np.testing.assert_allclose(torch.tensor(logits).softmax(0).numpy(), probs, atol=1e-6)


def test_recognizer_from_checkpoint_equals_from_bundle(checkpoint, recognizer):
    from_ckpt = Recognizer.from_checkpoint(checkpoint)
    photo = data.astronaut()
    a, b = from_ckpt.predict(photo), recognizer.predict(photo)
    pd.testing.assert_frame_equal(a, b)


def _write_folder(root: Path) -> None:
    """Two good photos, a truncated PNG, a text file named .jpg and a non-image file."""
    (root / "sub").mkdir(parents=True)
    Image.fromarray(data.astronaut()).save(root / "astronaut.jpg")
    Image.fromarray(data.coffee()).save(root / "sub" / "coffee.png")
    good = (root / "sub" / "coffee.png").read_bytes()
    (root / "broken.png").write_bytes(good[: len(good) // 3])
    (root / "notes.jpg").write_text("not a picture")
    (root / "README.txt").write_text("ignored: not an image suffix")


def test_predict_folder_reports_bad_files_and_goes_on(bundle, tmp_path, capsys):
    _write_folder(tmp_path / "photos")
    out, annotated = tmp_path / "results.csv", tmp_path / "annotated"
    assert main(["predict", str(tmp_path / "photos"), "--model", str(bundle), "--out", str(out),
                 "--annotate", str(annotated)]) == 0
    frame = pd.read_csv(out).set_index("input")
    photos = str(tmp_path / "photos")
    assert sorted(frame.index) == sorted(f"{photos}/{n}" for n in
                                         ("astronaut.jpg", "broken.png", "notes.jpg",
                                          "sub/coffee.png"))
    assert frame.loc[f"{photos}/astronaut.jpg", "status"] == "ok"
    assert frame.loc[f"{photos}/sub/coffee.png", "status"] == "no face"
    for name, problem in (("broken.png", "truncated"), ("notes.jpg", "cannot identify")):
        row = frame.loc[f"{photos}/{name}"]
        assert row["status"] == "error" and problem in row["error"], row["error"]
    assert sorted(p.relative_to(annotated).as_posix() for p in annotated.rglob("*.jpg")) == \
        ["photos/astronaut.jpg", "photos/sub/coffee.jpg"]
    drawn = np.asarray(Image.open(annotated / "photos" / "astronaut.jpg"))
    assert drawn.shape == (512, 512, 3) and np.abs(drawn.astype(int)
                                                   - data.astronaut()).max() > 100
    assert "4 pictures from 4 files" in capsys.readouterr().err


def _write_video(path: Path, seconds: float, fps: int) -> None:
    """An MJPG AVI of the astronaut sliding right 2 px per frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (512, 512))
    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    for i in range(round(seconds * fps)):
        writer.write(np.roll(bgr, 2 * i, axis=1))
    writer.release()


def test_predict_video_gives_one_row_per_sampled_frame(bundle, tmp_path):
    video = tmp_path / "clip.avi"
    _write_video(video, 2.5, 10)
    out = tmp_path / "video.csv"
    assert main(["predict", str(video), "--model", str(bundle), "--every", "0.5",
                 "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame["frame"]) == [0, 5, 10, 15, 20]
    np.testing.assert_allclose(frame["time_s"], [0, 0.5, 1.0, 1.5, 2.0])
    assert (frame["status"] == "ok").all()
    assert np.diff(frame["FaceRectX"]).min() > 5  # the face moves right with the frames
    rec = Recognizer.from_bundle(bundle)
    assert len(rec.predict(video, every_s=0.5, max_frames=2)) == 2
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    assert rec.predict(broken)["status"].tolist() == ["error"]


def test_predict_runs_with_sockets_blocked(checkpoint, bundle, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during inference")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.jpg")
    for model in (checkpoint, bundle):
        out = tmp_path / f"{Path(model).stem}.csv"
        assert main(["predict", str(tmp_path / "astronaut.jpg"), "--model", str(model),
                     "--out", str(out)]) == 0
        assert pd.read_csv(out)["status"].tolist() == ["ok"]
    rec = Recognizer.from_checkpoint(checkpoint)
    assert rec.predict(data.astronaut())["status"].tolist() == ["ok"]


class _BrokenDetector:
    def detect(self, image: np.ndarray) -> list:
        raise RuntimeError("detector exploded")

    def describe(self) -> dict:
        return {"name": "broken"}


def test_recognizer_detection_failure_is_an_error_row(bundle):
    rec = Recognizer.from_bundle(bundle, detector=_BrokenDetector())
    frame = rec.predict([data.astronaut(), np.ascontiguousarray(data.astronaut()[:40, :40])],
                        detect=True)
    assert frame["status"].tolist() == ["error", "error"]
    assert "face detection failed (detector exploded)" in frame["error"][0]
    tiny = Recognizer.from_bundle(bundle).predict(np.zeros((5, 5, 3), np.uint8))
    assert tiny["status"].tolist() == ["no face"]
