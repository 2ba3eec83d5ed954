"""Run face-api's own tfjs FaceRecognitionNet once and write tests/fixtures/dlib_faceapi_reference.json.

Set-up (outside the repository; nothing here is committed but this script and reference.js):

    mkdir -p /tmp/faceapi-ref && cd /tmp/faceapi-ref
    npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz
    npm init -y && npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0

Then, from the repository root:

    .venv/bin/python tools/faceapi_reference/make_fixture.py --scratch /tmp/faceapi-ref
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from fixtures.dlib_photos import __doc__ as RECIPE
from fixtures.dlib_photos import reference_photos, sha256_hex

FIXTURE = ROOT / "tests" / "fixtures" / "dlib_faceapi_reference.json"


def run_reference(scratch: Path, photos: dict[str, np.ndarray]) -> dict:
    """Write the photos as raw bytes into ``scratch``, run reference.js, return its JSON."""
    names = list(photos)
    np.stack([photos[n] for n in names]).astype(np.uint8).tofile(scratch / "inputs.bin")
    (scratch / "names.json").write_text(json.dumps({"names": names}))
    script = Path(__file__).with_name("reference.js")
    subprocess.run(["node", str(script), str(scratch / "package"), str(scratch / "inputs.bin"),
                    str(scratch / "names.json"), str(scratch / "outputs.json")], check=True)
    return json.loads((scratch / "outputs.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch", type=Path, required=True,
                        help="folder with package/ and node_modules/ (see above)")
    scratch = parser.parse_args().scratch.resolve()
    photos = reference_photos()
    result = run_reference(scratch, photos)
    fixture = {
        "what": "face-api FaceRecognitionNet descriptors (128-D) computed by the package's own "
                "tfjs code, run once by tools/faceapi_reference/make_fixture.py",
        "package": "@vladmandic/face-api", "version": result["faceapi"],
        "tfjs": result["tfjs"], "backend": result["backend"], "node": result["node"],
        "recipe": " ".join(RECIPE.split()),
        "photos": {name: {"input_sha256": sha256_hex(image),
                          "descriptor": result["descriptors"][name]}
                   for name, image in photos.items()},
    }
    FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {FIXTURE} ({len(photos)} photos)")


if __name__ == "__main__":
    main()
