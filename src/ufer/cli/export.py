"""``ufer export``: a checkpoint as a bundle (safetensors + JSON) or one ONNX file."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

_EPILOG = """\
A bundle (model.safetensors + model.json) loads without Lightning or the training code:
Recognizer.from_bundle(FOLDER) or `ufer predict --model FOLDER`. Its JSON holds the
architecture, class list, preprocessing (input size, mean/std, alignment template) and
provenance (training data, method, checkpoint sha256, git commit). The ONNX file holds
the class network (input `image`, output `logits`, dynamic batch) with the same metadata
in its metadata_props; it is checked against onnxruntime on random inputs.

examples:
  ufer export runs/rafdb/checkpoints/best.ckpt --out export/rafdb
  ufer export runs/rafdb/checkpoints/best.ckpt --heads --out export/rafdb-va-au
  ufer export runs/rafdb/checkpoints/best.ckpt --format onnx --out export/rafdb.onnx
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint as a bundle or ONNX",
                       description=__doc__.split(": ", 1)[1], epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, metavar="CKPT", help="a ufer checkpoint (.ckpt)")
    p.add_argument("--format", choices=("bundle", "onnx"), default="bundle",
                   help="bundle folder or ONNX file (default: bundle)")
    p.add_argument("--out", type=Path,
                   help="output folder (bundle) or file (onnx); default: beside CKPT, "
                        "<stem>-bundle/ or <stem>.onnx")
    p.add_argument("--heads", action="store_true",
                   help="bundle: also store the VA / AU heads the method trained (the class "
                        "output does not change)")
    p.add_argument("--image-size", type=int,
                   help="input side (default: the size the checkpoint trained at)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ufer.inference import export

    ckpt: Path = args.checkpoint
    try:
        if args.format == "bundle":
            out = args.out or ckpt.with_name(f"{ckpt.stem}-bundle")
            folder = export.export_bundle(ckpt, out, args.image_size, heads=args.heads)
            meta = export.read_bundle_meta(folder)
            size = (folder / export.WEIGHTS_FILE).stat().st_size / 2**20
            print(f"bundle: {folder} ({export.WEIGHTS_FILE} {size:.1f} MiB, {export.META_FILE}); "
                  f"{meta['method']} {meta['backbone']}, {meta['image_size']} px, outputs "
                  f"{', '.join(meta['outputs'])}")
            return 0
        if args.heads:
            print("ufer export: --heads applies to bundles; the ONNX file holds the class "
                  "network only", file=sys.stderr)
            return 2
        out = args.out or ckpt.with_suffix(".onnx")
        path = export.export_onnx(ckpt, out, args.image_size)
        meta = export.read_onnx_metadata(path)
        method, _, _ = export.load_trained(ckpt)
        diff = export.onnx_max_difference(path, method.net, meta["image_size"])
    except (OSError, ValueError, ImportError, KeyError) as exc:
        print(f"ufer export: {ckpt}: {exc}", file=sys.stderr)
        return 1
    print(f"onnx: {path} ({path.stat().st_size / 2**20:.1f} MiB, {len(meta)} metadata "
          f"entries); onnxruntime vs PyTorch on 4 random inputs: max |diff| {diff:.2e}")
    return 0
