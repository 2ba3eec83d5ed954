"""face-api -> safetensors conversion on a synthetic package tarball (no network).

The tarball is laid out like ``npm pack @vladmandic/face-api``'s: the real manifest names
and shapes, tensors back to back in two shards, most uint8-quantised, some float32.
"""
import io
import json
import math
import tarfile

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ufer.cli.main import main
from ufer.hashing import file_sha256
from ufer.models import convert_faceapi as conv

# face-api's layer names in manifest order, and the ufer module each becomes (an explicit
# table, independent of the converter's own mapping)
LAYERS = [("conv32_down", "stem")]
LAYERS += [(f"conv32_{i}", f"layer1.{i - 1}") for i in (1, 2, 3)]
LAYERS += [("conv64_down", "layer2.0")] + [(f"conv64_{i}", f"layer2.{i}") for i in (1, 2, 3)]
LAYERS += [("conv128_down", "layer3.0")] + [(f"conv128_{i}", f"layer3.{i}") for i in (1, 2)]
LAYERS += [("conv256_down", "layer4.0")] + [(f"conv256_{i}", f"layer4.{i}") for i in (1, 2)]
LAYERS += [("conv256_down_out", "layer4.3")]
WIDTHS = {"stem": (3, 32, 7), "layer1": (32, 32, 3), "layer2": (64, 64, 3),
          "layer3": (128, 128, 3), "layer4": (256, 256, 3)}
IN_WIDTH = {"layer2.0": 32, "layer3.0": 64, "layer4.0": 128}


def _layer_tensors(layer: str, module: str) -> list[tuple[str, str, list[int]]]:
    """(face-api name, ufer key, tfjs shape) of one layer's conv + scale parameters."""
    chs_in, chs, k = WIDTHS[module.split(".")[0]]
    convs = [("", "")] if module == "stem" else [("conv1/", "conv1."), ("conv2/", "conv2.")]
    out = []
    for j, (fa, uf) in enumerate(convs):
        cin = IN_WIDTH.get(module, chs_in) if j == 0 else chs
        out += [(f"{layer}/{fa}conv/filters", f"{module}.{uf}conv.weight", [k, k, cin, chs]),
                (f"{layer}/{fa}conv/bias", f"{module}.{uf}conv.bias", [chs]),
                (f"{layer}/{fa}scale/weights", f"{module}.{uf}scale.weight", [chs]),
                (f"{layer}/{fa}scale/biases", f"{module}.{uf}scale.bias", [chs])]
    return out


def _encode(rng: np.random.Generator):
    """Manifest, .bin bytes, and the float32 tensors the converter must produce (torch layout)."""
    specs, chunks, expected = [], [], {}
    tensors = [t for layer, module in LAYERS for t in _layer_tensors(layer, module)]
    tensors.append(("fc", "fc.weight", [256, 128]))
    for i, (name, key, shape) in enumerate(tensors):
        count = math.prod(shape)
        if i % 7 == 3:  # some float32 tensors, as face-api's conv64 filters
            values = rng.standard_normal(count).astype("<f4")
            specs.append({"name": name, "shape": shape, "dtype": "float32"})
            chunks.append(values.tobytes())
        else:
            q = rng.integers(0, 256, count, dtype=np.uint8)
            lo, scale = float(rng.normal()), float(rng.uniform(1e-4, 1e-2))
            values = (q.astype(np.float64) * scale + lo).astype(np.float32)
            specs.append({"name": name, "shape": shape, "dtype": "float32",
                          "quantization": {"dtype": "uint8", "scale": scale, "min": lo}})
            chunks.append(q.tobytes())
        array = values.reshape(shape)
        array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array
        expected[key] = torch.from_numpy(np.ascontiguousarray(array.T if name == "fc" else array))
    blob = b"".join(chunks)
    paths = ["face_recognition_model-shard1", "face_recognition_model-shard2"]
    manifest = [{"paths": paths, "weights": specs}]
    return manifest, {paths[0]: blob[:1_000_003], paths[1]: blob[1_000_003:]}, expected


def _tarball(path, manifest, shards) -> None:
    files = {f"package/model/{conv.MANIFEST}": json.dumps(manifest).encode(),
             "package/LICENSE": b"MIT License (test copy)\n"}
    files.update({f"package/model/{name}": data for name, data in shards.items()})
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """(tarball path, expected state dict) of a synthetic face-api package."""
    manifest, shards, expected = _encode(np.random.default_rng(0))
    path = tmp_path_factory.mktemp("npm") / conv.TARBALL_NAME
    _tarball(path, manifest, shards)
    return path, expected


@pytest.mark.parametrize(("faceapi", "ufer"), [
    ("conv32_down/conv/filters", "stem.conv.weight"),
    ("conv32_3/conv2/scale/biases", "layer1.2.conv2.scale.bias"),
    ("conv64_down/conv1/scale/weights", "layer2.0.conv1.scale.weight"),
    ("conv64_1/conv1/conv/bias", "layer2.1.conv1.conv.bias"),
    ("conv128_2/conv2/conv/filters", "layer3.2.conv2.conv.weight"),
    ("conv256_down_out/conv1/conv/filters", "layer4.3.conv1.conv.weight"),
    ("fc", "fc.weight"),
])
def test_faceapi_names_map_to_ufer_keys(faceapi, ufer):
    assert conv.ufer_name(faceapi) == ufer


def test_unknown_layer_is_named():
    with pytest.raises(ValueError, match="conv512_1"):
        conv.ufer_name("conv512_1/conv1/conv/filters")


def test_converts_quantised_and_float_tensors_exactly(package, tmp_path):
    tarball, expected = package
    result = conv.convert_tarball(tarball, tmp_path, expected_sha256=None)
    state = load_file(result.weights)
    assert state.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key
    provenance = json.loads(result.provenance.read_text())
    assert provenance["output"]["parameters"] == 5_614_592
    assert provenance["output"]["sha256"] == file_sha256(result.weights)
    assert provenance["tarball"]["sha256"] == file_sha256(tarball)
    assert set(provenance["sources"]) == {
        f"package/model/{conv.MANIFEST}", "package/LICENSE",
        "package/model/face_recognition_model-shard1",
        "package/model/face_recognition_model-shard2"}
    assert "CC0" in provenance["licence"] and "MIT" in provenance["licence"]
    assert (tmp_path / conv.LICENSE_FILE).read_bytes() == b"MIT License (test copy)\n"
    with safe_open(result.weights, "pt") as handle:
        assert json.loads(handle.metadata()["source"])["version"] == conv.VERSION
    again = conv.convert_tarball(tarball, tmp_path / "again", expected_sha256=None)
    assert file_sha256(again.weights) == file_sha256(result.weights)  # reproducible


def test_manifest_and_bin_that_disagree_are_refused(tmp_path):
    manifest, shards, _ = _encode(np.random.default_rng(1))
    last = manifest[0]["paths"][-1]
    shards[last] = shards[last] + b"\0"
    with pytest.raises(ValueError, match="manifest and .bin disagree"):
        conv.faceapi_to_state_dict(manifest, shards)


def test_fetch_converts_once_then_only_checks_sha256(package, tmp_path):
    tarball, _ = package
    first = conv.fetch_dlib_face(tmp_path, tarball=tarball, expected_sha256=None)
    stamp = first.weights.stat().st_mtime_ns
    again = conv.fetch_dlib_face(tmp_path, tarball=tarball, expected_sha256=None)
    assert first.converted and not again.converted
    assert again.weights.stat().st_mtime_ns == stamp
    with open(first.weights, "ab") as handle:  # a damaged file is converted again
        handle.write(b"\0")
    assert conv.fetch_dlib_face(tmp_path, tarball=tarball, expected_sha256=None).converted
    assert conv.is_up_to_date(tmp_path, expected_sha256=None)


def test_tarball_that_is_not_the_published_one_is_refused(package, tmp_path):
    tarball, _ = package
    with pytest.raises(conv.FetchError, match=f"expected {conv.TARBALL_SHA256}"):
        conv.fetch_dlib_face(tmp_path, tarball=tarball)
    assert not (tmp_path / conv.WEIGHTS_FILE).exists()


def test_offline_npm_says_what_to_download_and_which_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # nothing listens
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    monkeypatch.setenv("npm_config_offline", "false")
    with pytest.raises(conv.FetchError) as err:
        conv.fetch_dlib_face(tmp_path / "out")
    text = str(err.value)
    assert "npm pack @vladmandic/face-api@1.7.15" in text and "--tarball" in text
    assert conv.TARBALL_SHA256 in text


def test_missing_npm_is_named(tmp_path):
    with pytest.raises(conv.FetchError, match="`no-such-npm` is not installed.*--tarball"):
        conv.fetch_dlib_face(tmp_path, npm="no-such-npm")


def test_cli_prints_the_error_and_fails(package, tmp_path, capsys):
    tarball, _ = package
    code = main(["weights", "fetch", "dlib-face", "--out", str(tmp_path), "--tarball",
                 str(tarball)])
    assert code == 1
    assert "ufer weights:" in capsys.readouterr().err
