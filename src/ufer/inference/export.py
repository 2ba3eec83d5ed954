"""Export a trained model: a bundle (safetensors + JSON) or one ONNX file, both carrying
the same metadata.

A bundle folder holds ``model.safetensors`` (FERNet's weights; with ``heads=True`` also
the VA / AU heads under ``heads.``) and ``model.json``:

- architecture: ``architecture`` (``FERNet``), ``backbone``, ``num_classes``,
  ``class_names``, ``outputs``, ``heads`` (sizes), ``au_names``, ``uncertainty``;
- preprocessing: ``image_size``, ``mean``, ``std``, ``input`` (how pixels become the
  input), ``alignment`` (template name and points, crop size, how the training data
  was aligned);
- provenance: ``method``, ``ufer_version`` and ``provenance`` (training data, checkpoint
  and its sha256, the git commit of the exporting code, time).

Reading a bundle (:func:`load_bundle`, :func:`load_network`) needs neither Lightning nor
the methods' training code: this module imports them only to read checkpoints. The ONNX
file holds FERNet alone (input ``image``, output ``logits``, dynamic batch) and the same
metadata as ``metadata_props`` (each value JSON-encoded), written after saving so that
``onnx.load`` returns it.
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import ufer
from ufer.hashing import file_sha256
from ufer.inference.detect import ARCFACE_112
from ufer.inference.network import InferenceNetwork, build_network
from ufer.models.net import FERNet

if TYPE_CHECKING:
    from ufer.data.manifest import Manifest
    from ufer.methods.base import FERMethod

BUNDLE_FORMAT = "ufer-bundle"
BUNDLE_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
INPUT_RULE = "RGB uint8 (B, 3, S, S) aligned faces -> x / 255 -> (x - mean) / std per channel"


# --------------------------------------------------------------------------- from a method
def load_trained(source: FERMethod | str | Path) -> tuple[FERMethod, dict[str, Any], Path | None]:
    """(method in eval mode, its data settings, checkpoint path or None) of a checkpoint
    path or an in-memory method (whose data settings are then unknown: {})."""
    if isinstance(source, (str, Path)):
        from ufer.methods.base import load_method

        method, data = load_method(source)
        return method, data, Path(source)
    return source.eval(), {}, None


def network_from_method(method: FERMethod, heads: bool = True) -> InferenceNetwork:
    """The inference network around a trained method's own modules (shared, not copied).

    ``heads``: include the method's VA and AU heads (``FERMethod.inference_heads``) where it
    has them. A weight-free uncertainty (POI's UEM) is always included.
    """
    spec = method.inference_heads()
    va, au = (spec.get("va"), spec.get("au")) if heads else (None, None)
    return InferenceNetwork(method.net, va, au, spec.get("uncertainty")).eval()


def bundle_meta(method: FERMethod, network: InferenceNetwork, data: dict[str, Any],
                image_size: int | None, checkpoint: Path | None) -> dict[str, Any]:
    """The bundle JSON (see the module docstring) of ``network`` built from ``method``."""
    hp = method.hparams
    mean, std = method.normalization
    manifest = training_manifest(data)
    sidecar = None if manifest is None else manifest.meta
    return {
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION,
        "architecture": "FERNet", "backbone": hp.backbone, "num_classes": hp.num_classes,
        "class_names": list(hp.class_names or []),
        "outputs": network.outputs, "heads": network.head_specs(),
        "au_names": _au_names(network, manifest), "uncertainty": network.uncertainty,
        "image_size": image_size, "mean": list(mean), "std": list(std), "input": INPUT_RULE,
        "alignment": alignment_record(sidecar, image_size),
        "method": method.method_name, "ufer_version": ufer.__version__,
        "provenance": {
            "training_data": _training_record(data, sidecar),
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "checkpoint_sha256": None if checkpoint is None else file_sha256(checkpoint),
            **_git_state(),
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
        },
    }


def training_manifest(data: dict[str, Any]) -> Manifest | None:
    """The manifest the model trained on (data settings' ``manifest``), None when it is
    not readable here."""
    path = data.get("manifest")
    if not path or not Path(path).is_file():
        return None
    from ufer.data.manifest import read_manifest

    return read_manifest(path, check_images=False)


def training_image_size(data: dict[str, Any], manifest: Manifest | None) -> int | None:
    """The input side the model trained at: the data settings' ``image_size``, else the
    size of the training manifest's first image when it is square; None when unknown."""
    if data.get("image_size"):
        return int(data["image_size"])
    first = manifest.image_path(0) if manifest is not None and len(manifest) else None
    if first is None or not first.is_file():
        return None
    with Image.open(first) as image:
        width, height = image.size
    return width if width == height else None


def alignment_record(sidecar: dict[str, Any] | None, image_size: int | None) -> dict[str, Any]:
    """How faces are aligned for this model: the template and crop size ``ufer prepare
    --detect`` used for the training data, else ARCFACE_112 at ``image_size``; with a note
    on how the training images were aligned."""
    aligned = ((sidecar or {}).get("prepare") or {}).get("images", {}).get("aligned")
    if aligned:
        return {"template": aligned["template"], "crop_size": aligned["size"],
                "training_data": f"aligned by ufer prepare --detect ({aligned['detector']['name']})"}
    source = ((sidecar or {}).get("source") or {})
    name = source.get("name", source) if isinstance(source, dict) else source
    return {"template": ARCFACE_112.to_dict(), "crop_size": image_size,
            "training_data": f"as the source provided them ({name or 'unknown source'}); "
                             "inference aligns detected faces to this template"}


def _training_record(data: dict[str, Any], sidecar: dict[str, Any] | None) -> dict[str, Any]:
    record: dict[str, Any] = {"manifest": data.get("manifest")}
    if sidecar:
        record.update({k: sidecar[k] for k in ("source", "noise", "counts") if k in sidecar})
    return record


def _au_names(network: InferenceNetwork, manifest: Manifest | None) -> list[str]:
    """Names of the AU head's outputs: the training manifest's AU columns in the loader's
    order, else ``au_0``, ``au_1``, ..."""
    if "au" not in network.heads:
        return []
    count = network.head_specs()["au"]["num_aus"]
    names = manifest.au_names if manifest is not None else []
    return names if len(names) == count else [f"au_{k}" for k in range(count)]


def _git_state() -> dict[str, Any]:
    """``git_commit`` / ``git_dirty`` of the ufer source tree doing the export (None when
    ufer is not running from a git checkout)."""
    where = str(Path(ufer.__file__).resolve().parent)

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", where, *args], capture_output=True, text=True,
                              timeout=10, check=False)

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"git_commit": None, "git_dirty": None}
    if commit.returncode != 0:
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit.stdout.strip(), "git_dirty": bool(status.stdout.strip())}


# --------------------------------------------------------------------------- bundles
def export_bundle(source: FERMethod | str | Path, out_dir: str | Path,
                  image_size: int | None = None, heads: bool = False) -> Path:
    """Write ``model.safetensors`` + ``model.json``; returns the folder.

    Args:
        source: a checkpoint path or a trained method.
        out_dir: the bundle folder (created).
        image_size: input side; default: what the checkpoint trained at
            (:func:`training_image_size`).
        heads: also store the VA / AU heads (the class output does not change).
    """
    method, data, checkpoint = load_trained(source)
    image_size = image_size or training_image_size(data, training_manifest(data))
    network = network_from_method(method, heads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(network.bundle_state(), str(out / WEIGHTS_FILE))
    meta = bundle_meta(method, network, data, image_size, checkpoint)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def read_bundle_meta(folder: str | Path) -> dict[str, Any]:
    """The JSON of a bundle folder (or of its ``model.json`` given directly)."""
    path = Path(folder)
    path = path if path.suffix == ".json" else path / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent} is not a ufer bundle (no {META_FILE})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def load_network(folder: str | Path) -> tuple[InferenceNetwork, dict[str, Any]]:
    """(InferenceNetwork in eval mode, metadata) of a bundle folder."""
    meta = read_bundle_meta(folder)
    folder = Path(folder)
    folder = folder.parent if folder.suffix == ".json" else folder
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{folder} is not a ufer bundle (no {WEIGHTS_FILE})")
    return build_network(meta, load_file(str(weights))), meta


def load_bundle(folder: str | Path) -> tuple[FERNet, dict[str, Any]]:
    """(FERNet in eval mode, metadata): the class network of a bundle, without heads."""
    network, meta = load_network(folder)
    return network.net, meta


# --------------------------------------------------------------------------- ONNX
def _require_onnx(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"ONNX needs {', '.join(missing)}: pip install 'ufer[export]'")


def export_onnx(source: FERMethod | str | Path, path: str | Path,
                image_size: int | None = None) -> Path:
    """Export FERNet to one ONNX file with the bundle metadata in ``metadata_props``.

    Input ``image`` float (B, 3, S, S) normalised as ``mean``/``std`` say, output
    ``logits`` (B, C); the batch is dynamic, S fixed. The metadata is the bundle's with
    ``outputs`` = ["logits"] and no heads or uncertainty (the file holds FERNet alone).

    Raises:
        ImportError: onnx / onnxscript missing (the ``export`` extra).
        ValueError: the input size is unknown (pass ``image_size``).
    """
    _require_onnx("onnx", "onnxscript")
    method, data, checkpoint = load_trained(source)
    image_size = image_size or training_image_size(data, training_manifest(data))
    if not image_size:
        raise ValueError("the checkpoint does not say its input size; pass image_size")
    meta = bundle_meta(method, InferenceNetwork(method.net), data, image_size, checkpoint)
    net = method.net.eval().cpu()
    example = torch.randn(2, 3, image_size, image_size)
    program = torch.onnx.export(net, (example,), dynamo=True, verbose=False,
                                input_names=["image"], output_names=["logits"],
                                dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    program.save(str(path), external_data=False)
    write_onnx_metadata(path, meta)
    return Path(path)


def write_onnx_metadata(path: str | Path, meta: dict[str, Any]) -> None:
    """Replace an ONNX file's ``metadata_props`` by ``meta`` (values JSON-encoded)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, str(path))


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an ONNX file written by :func:`export_onnx` (values decoded)."""
    _require_onnx("onnx")
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in model.metadata_props}


def onnx_max_difference(path: str | Path, net: FERNet, image_size: int, batch: int = 4,
                        seed: int = 0) -> float:
    """max |logits_onnxruntime - logits_torch| on ``batch`` random normal inputs."""
    _require_onnx("onnxruntime")
    import onnxruntime

    x = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(["logits"], {"image": x.numpy()})
    with torch.no_grad():
        torch_logits = net.eval()(x)
    return float((torch.from_numpy(onnx_logits) - torch_logits).abs().max())
