"""``ufer weights fetch dlib-face --out DIR``: make pretrained weights once, at set-up time."""
from __future__ import annotations

import argparse
import sys

_EPILOG = """\
dlib-face: dlib's face-recognition ResNet (trained by dlib on about 3 M faces; not the
papers' MS-Celeb-1M ResNet-18), taken from the npm package @vladmandic/face-api 1.7.15
with `npm pack`, checked by sha256 and converted once to DIR/dlib_face_resnet.safetensors
with provenance in DIR/dlib_face_resnet.json. Running it again only checks the sha256.
Without network: get the tarball elsewhere (`npm pack @vladmandic/face-api@1.7.15`) and
pass it with --tarball.

examples:
  ufer weights fetch dlib-face --out .cache/ufer/dlib_face
  ufer weights fetch dlib-face --out weights/ --tarball vladmandic-face-api-1.7.15.tgz
  ufer train --model Baseline --model.backbone dlib_face_resnet \\
      --model.pretrained_path .cache/ufer/dlib_face/dlib_face_resnet.safetensors ...
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="fetch and convert pretrained weights (set-up time)",
                       description=__doc__, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    fetch = actions.add_parser("fetch", help="fetch and convert a model's weights once")
    fetch.add_argument("model", choices=("dlib-face",), help="which weights")
    fetch.add_argument("--out", required=True, help="output folder")
    fetch.add_argument("--tarball", default=None,
                       help="a local vladmandic-face-api-1.7.15.tgz instead of `npm pack`")
    fetch.add_argument("--force", action="store_true",
                       help="convert again even when DIR is up to date")
    fetch.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ufer.models.convert_faceapi import FetchError, describe, fetch_dlib_face

    try:
        result = fetch_dlib_face(args.out, tarball=args.tarball, force=args.force)
    except FetchError as err:
        print(f"ufer weights: {err}", file=sys.stderr)
        return 1
    print(describe(result))
    return 0
