"""Convert face-api's ``face_recognition_model`` (dlib's ResNet) to a ufer safetensors file.

Set-up time only: ``fetch_dlib_face`` gets the npm package ``@vladmandic/face-api`` with
``npm pack`` (or takes a tarball downloaded by hand), checks its sha256, reads
``package/model/face_recognition_model-weights_manifest.json`` and its ``.bin`` shards
(tfjs format: tensors back to back, float32 or uint8-quantised with ``q * scale + min``),
renames and transposes them to ``DlibFaceResNet``'s state dict, and writes

- ``dlib_face_resnet.safetensors``: float32 tensors, including dlib's 128-D projection
  ``fc.weight`` (``load_pretrained`` drops it, so ufer's backbone is the 256-D trunk),
- ``dlib_face_resnet.json``: provenance (package, version, sha256 of tarball, sources and
  output, parameter count, licences),
- ``LICENSE.face-api.txt``: the package's MIT notice.

Nothing here runs at training or inference time, and nothing but ``npm pack`` touches the
network.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ufer.hashing import file_sha256

PACKAGE = "@vladmandic/face-api"
VERSION = "1.7.15"
TARBALL_NAME = f"vladmandic-face-api-{VERSION}.tgz"
TARBALL_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
MODEL_DIR = "package/model"
MANIFEST = "face_recognition_model-weights_manifest.json"
WEIGHTS_FILE = "dlib_face_resnet.safetensors"
PROVENANCE_FILE = "dlib_face_resnet.json"
LICENSE_FILE = "LICENSE.face-api.txt"
LICENCE_NOTE = ("package @vladmandic/face-api: MIT (its LICENSE is copied beside the weights); "
                "the face_recognition_model weights are a conversion of dlib's "
                "dlib_face_recognition_resnet_model_v1, which dlib releases as CC0 "
                "(public domain)")

# face-api layer -> ufer module: stem, then timm-style stages layer1..layer4 of blocks
_LAYERS = {"conv32_down": "stem", "conv256_down_out": "layer4.3"}
_STAGES = {"32": ("layer1", 0), "64": ("layer2", 1), "128": ("layer3", 1), "256": ("layer4", 1)}
_PARAMS = {"conv/filters": "conv.weight", "conv/bias": "conv.bias",
           "scale/weights": "scale.weight", "scale/biases": "scale.bias"}


class FetchError(RuntimeError):
    """The package could not be fetched, or is not the file it should be."""


@dataclass(frozen=True)
class FetchResult:
    """What ``fetch_dlib_face`` left in ``out``; ``converted`` is False when it was up to date."""

    weights: Path
    provenance: Path
    converted: bool


def ufer_name(faceapi_name: str) -> str:
    """face-api weight name -> ufer state-dict key.

    ``conv64_down/conv1/scale/weights`` -> ``layer2.0.conv1.scale.weight``;
    ``conv32_down/conv/filters`` -> ``stem.conv.weight``; ``fc`` -> ``fc.weight``.
    """
    if faceapi_name == "fc":
        return "fc.weight"
    layer, rest = faceapi_name.split("/", 1)
    if layer in _LAYERS:
        module = _LAYERS[layer]
    else:
        match = re.fullmatch(r"conv(\d+)_(down|\d)", layer)
        if match is None or match.group(1) not in _STAGES:
            raise ValueError(f"unknown face-api layer {layer!r} in {faceapi_name!r}")
        stage, first = _STAGES[match.group(1)]
        index = 0 if match.group(2) == "down" else int(match.group(2)) - 1 + first
        module = f"{stage}.{index}"
    conv, param = (None, rest) if module == "stem" else rest.split("/", 1)
    if param not in _PARAMS:
        raise ValueError(f"unknown face-api parameter {param!r} in {faceapi_name!r}")
    return ".".join(p for p in (module, conv, _PARAMS[param]) if p)


def to_torch_layout(array: np.ndarray, name: str) -> np.ndarray:
    """tfjs layout -> torch: conv filters HWIO -> OIHW; the (256, 128) fc matrix -> (128, 256)."""
    if array.ndim == 4:
        return array.transpose(3, 2, 0, 1)
    if name == "fc":
        return array.T
    return array


def decode_weights(manifest: list[dict], shards: dict[str, bytes]) -> dict[str, np.ndarray]:
    """tfjs weight groups -> {face-api name: float32 array in tfjs layout}.

    Each group's shards are concatenated in order and its tensors read back to back;
    quantised ones are ``q * scale + min`` computed in float64 then rounded to float32,
    exactly as tfjs's ``decodeWeights`` does.
    """
    arrays: dict[str, np.ndarray] = {}
    for group in manifest:
        buffer = b"".join(shards[path] for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"], dtype=np.int64))
            quant = spec.get("quantization")
            if spec["dtype"] != "float32":
                raise ValueError(f"{spec['name']}: dtype {spec['dtype']} is not float32")
            if quant is None:
                values = np.frombuffer(buffer, "<f4", count, offset).copy()
                offset += 4 * count
            elif quant["dtype"] == "uint8":
                q = np.frombuffer(buffer, np.uint8, count, offset).astype(np.float64)
                values = (q * quant["scale"] + quant["min"]).astype(np.float32)
                offset += count
            else:
                raise ValueError(f"{spec['name']}: quantisation {quant['dtype']} not handled")
            arrays[spec["name"]] = values.reshape(spec["shape"])
        if offset != len(buffer):
            raise ValueError(f"weights group {group['paths']}: read {offset} of "
                             f"{len(buffer)} bytes; manifest and .bin disagree")
    return arrays


def faceapi_to_state_dict(manifest: list[dict], shards: dict[str, bytes]) -> dict[str, torch.Tensor]:
    """Decode, rename and transpose: the full ``DlibFaceResNet(num_classes=128)`` state dict.

    Raises:
        ValueError: a tensor is missing, unexpected or of the wrong shape.
    """
    from ufer.models.dlib_resnet import DlibFaceResNet

    state = {ufer_name(name): torch.from_numpy(np.ascontiguousarray(to_torch_layout(a, name)))
             for name, a in decode_weights(manifest, shards).items()}
    DlibFaceResNet().load_state_dict(state, strict=True)  # raises on any mismatch
    return state


def read_tarball(tarball: str | Path) -> tuple[list[dict], dict[str, bytes], dict[str, bytes]]:
    """Read the manifest, its shards and the LICENSE from a face-api npm tarball.

    Returns:
        (manifest, {shard path: bytes}, {member name: bytes} of every file read).
    """
    files: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        def read(member: str) -> bytes:
            try:
                handle = archive.extractfile(member)
            except KeyError:
                handle = None
            if handle is None:
                raise FetchError(f"{tarball}: no {member}; is this the {PACKAGE} tarball?")
            files[member] = handle.read()
            return files[member]

        manifest = json.loads(read(f"{MODEL_DIR}/{MANIFEST}"))
        shards = {p: read(f"{MODEL_DIR}/{p}") for group in manifest for p in group["paths"]}
        read("package/LICENSE")
    return manifest, shards, files


def npm_pack(dest: Path, npm: str = "npm", timeout: float = 300.0) -> Path:
    """``npm pack PACKAGE@VERSION`` into ``dest``; the tarball's path.

    Raises:
        FetchError: npm is missing, fails or times out, saying how to get the file by hand.
    """
    spec = f"{PACKAGE}@{VERSION}"
    how = (f"On a machine with npm and internet access run `npm pack {spec}` (it writes "
           f"{TARBALL_NAME}, sha256 {TARBALL_SHA256}), copy that file here and run "
           f"`ufer weights fetch dlib-face --out DIR --tarball PATH/{TARBALL_NAME}`.")
    try:
        proc = subprocess.run([npm, "pack", spec, "--pack-destination", str(dest)],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as err:
        raise FetchError(f"cannot fetch {spec}: `{npm}` is not installed. {how}") from err
    except subprocess.TimeoutExpired as err:
        raise FetchError(f"cannot fetch {spec}: `npm pack` took over {timeout:.0f} s "
                         f"(offline?). {how}") from err
    tarball = dest / TARBALL_NAME
    if proc.returncode != 0 or not tarball.is_file():
        head = (proc.stderr or proc.stdout).strip().splitlines()[:4]  # npm's code and reason
        raise FetchError(f"cannot fetch {spec}: `npm pack` failed (npm registry unreachable?): "
                         f"{' | '.join(head)}. {how}")
    return tarball


def write_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write ``state`` to ``path`` through a temporary file, so a killed run leaves no half file."""
    from safetensors.torch import save_file

    partial = path.with_name(path.name + ".partial")
    save_file(state, str(partial), metadata=metadata)
    partial.chmod(0o644)  # safetensors creates it owner-only; these are public weights
    os.replace(partial, path)


def convert_tarball(tarball: str | Path, out: str | Path,
                    expected_sha256: str | None = TARBALL_SHA256) -> FetchResult:
    """Convert a face-api tarball into ``out`` (weights, provenance, licence).

    Args:
        tarball: the npm tarball of ``@vladmandic/face-api``.
        out: output folder, created if missing.
        expected_sha256: the tarball must have this sha256 (None: accept any, for tests).

    Raises:
        FetchError: the tarball's sha256 differs or a model file is missing.
    """
    start = time.perf_counter()
    tarball, out = Path(tarball), Path(out)
    tarball_sha = file_sha256(tarball)
    if expected_sha256 is not None and tarball_sha != expected_sha256:
        raise FetchError(f"{tarball}: sha256 {tarball_sha}, expected {expected_sha256} for "
                         f"{PACKAGE} {VERSION}; not the published package")
    manifest, shards, files = read_tarball(tarball)
    state = faceapi_to_state_dict(manifest, shards)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    source = {"architecture": "dlib_face_resnet", "package": PACKAGE, "version": VERSION,
              "tarball_sha256": tarball_sha}
    # one metadata key: safetensors orders several at random, which would change the sha256
    write_safetensors(state, weights, {"source": json.dumps(source, sort_keys=True)})
    (out / LICENSE_FILE).write_bytes(files["package/LICENSE"])
    provenance = {
        "model": "dlib_face_resnet",
        "what": "dlib's metric-learned face-recognition ResNet (dlib_face_recognition_resnet_"
                "model_v1, trained by dlib on about 3 M faces); not an MS-Celeb-1M ResNet-18",
        "package": PACKAGE, "version": VERSION,
        "tarball": {"file": tarball.name, "sha256": tarball_sha},
        "sources": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "output": {"file": WEIGHTS_FILE, "sha256": file_sha256(weights),
                   "tensors": len(state),
                   "parameters": sum(t.numel() for t in state.values()),
                   "parameters_without_fc": sum(t.numel() for k, t in state.items()
                                                if not k.startswith("fc."))},
        "conversion": "tfjs uint8 q -> q * scale + min (float64, stored float32) as tfjs; "
                      "float32 tensors copied; conv HWIO -> OIHW; fc (256, 128) -> (128, 256)",
        "licence": LICENCE_NOTE,
        "converted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 3),
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return FetchResult(weights, out / PROVENANCE_FILE, converted=True)


def is_up_to_date(out: str | Path, expected_sha256: str | None = TARBALL_SHA256) -> bool:
    """True when ``out`` holds weights whose sha256 matches their provenance file, which in
    turn names a tarball with ``expected_sha256`` (any when None)."""
    weights, record = Path(out) / WEIGHTS_FILE, Path(out) / PROVENANCE_FILE
    if not (weights.is_file() and record.is_file()):
        return False
    try:
        provenance = json.loads(record.read_text())
        recorded, tarball = provenance["output"]["sha256"], provenance["tarball"]["sha256"]
    except (ValueError, KeyError, TypeError):
        return False
    return recorded == file_sha256(weights) and expected_sha256 in (None, tarball)


def fetch_dlib_face(out: str | Path, tarball: str | Path | None = None, force: bool = False,
                    npm: str = "npm",
                    expected_sha256: str | None = TARBALL_SHA256) -> FetchResult:
    """Make ``out/dlib_face_resnet.safetensors`` once; later calls only check its sha256.

    Args:
        out: output folder.
        tarball: a local ``vladmandic-face-api-1.7.15.tgz``; None runs ``npm pack``.
        force: convert again even when ``out`` is up to date.
        npm: the npm executable.
        expected_sha256: the tarball's sha256 (None accepts any: tests only).

    Raises:
        FetchError: npm cannot fetch the package (with what to download by hand), or the
            tarball is not the published one.
    """
    out = Path(out)
    if not force and is_up_to_date(out, expected_sha256):
        return FetchResult(out / WEIGHTS_FILE, out / PROVENANCE_FILE, converted=False)
    if tarball is not None:
        return convert_tarball(tarball, out, expected_sha256)
    scratch = Path(tempfile.mkdtemp(prefix="ufer-faceapi-"))
    try:
        return convert_tarball(npm_pack(scratch, npm=npm), out, expected_sha256)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def describe(result: FetchResult) -> str:
    """One paragraph for the console: what is where and how to use it."""
    provenance = json.loads(result.provenance.read_text())
    state = "converted" if result.converted else "already there (sha256 checked)"
    return (f"dlib_face_resnet weights {state}: {result.weights}\n"
            f"  from {provenance['package']} {provenance['version']} (tarball sha256 "
            f"{provenance['tarball']['sha256']}), {provenance['output']['parameters']:,} "
            f"parameters, sha256 {provenance['output']['sha256']}\n"
            f"  use: --model.backbone dlib_face_resnet --model.pretrained_path {result.weights}")
