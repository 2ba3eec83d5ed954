"""Export the inference network: a weights bundle (safetensors + JSON) and ONNX.

Only ``FERNet`` (backbone + classifier) is exported; auxiliary heads and per-sample
state stay in the training checkpoint.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import ufer
from ufer.methods.base import FERMethod, load_method
from ufer.models.net import FERNet


def bundle_meta(method: FERMethod, image_size: int | None) -> dict[str, Any]:
    """What a user of the exported network needs to preprocess and read its outputs."""
    hp = method.hparams
    mean, std = method.normalization
    return {"backbone": hp.backbone, "num_classes": hp.num_classes,
            "class_names": list(hp.class_names or []), "image_size": image_size,
            "mean": list(mean), "std": list(std), "input": "RGB, NCHW",
            "method": method.method_name, "ufer_version": ufer.__version__}


def export_bundle(source: FERMethod | str | Path, out_dir: str | Path,
                  image_size: int | None = None) -> Path:
    """Write ``model.safetensors`` + ``model.json`` for the inference net; returns the folder.

    ``source`` is a method or a checkpoint path; ``image_size`` defaults to the training
    data's size recorded in the checkpoint.
    """
    method, data = load_method(source) if isinstance(source, (str, Path)) else (source, {})
    image_size = image_size or data.get("image_size")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in method.net.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    (out / "model.json").write_text(json.dumps(bundle_meta(method, image_size), indent=2) + "\n")
    return out


def load_bundle(folder: str | Path) -> tuple[FERNet, dict[str, Any]]:
    """(FERNet in eval mode, metadata) from a folder written by ``export_bundle``."""
    folder = Path(folder)
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not a ufer export (no model.json)")
    meta = json.loads(meta_path.read_text())
    net = FERNet(meta["backbone"], meta["num_classes"])
    net.load_state_dict(load_file(str(folder / "model.safetensors")))
    return net.eval(), meta


def export_onnx(source: FERMethod | str | Path, path: str | Path, image_size: int) -> Path:
    """Export the inference net to one ONNX file (dynamic batch, input ``image``, output
    ``logits``); needs ``pip install ufer[export]``."""
    if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript")):
        raise ImportError("ONNX export needs the export extra: pip install 'ufer[export]'")
    method = load_method(source)[0] if isinstance(source, (str, Path)) else source
    net = method.net.eval().cpu()
    example = torch.randn(2, 3, image_size, image_size)
    program = torch.onnx.export(net, (example,), dynamo=True, input_names=["image"],
                                output_names=["logits"],
                                dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    for key, value in bundle_meta(method, image_size).items():
        program.model_proto.metadata_props.add(key=key, value=json.dumps(value))
    program.save(str(path), external_data=False)
    return Path(path)
