"""``ufer predict``: expressions of the faces in photos, folders and videos -> one CSV row per face."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ufer.inference.inputs import VIDEO_SUFFIXES, Picture, folder_files, read_file

_EPILOG = """\
One row per face: input, frame and time (videos), face index, status (ok / no face /
error) and error text, the box (FaceRectX, FaceRectY, FaceRectWidth, FaceRectHeight,
FaceScore), five landmarks, the top class (label) and one probability column per class;
valence/arousal, AU probabilities and uncertainty where the model has them. An unreadable
file gives an error row and the run goes on.

Models trained on ufer's synthetic faces do not recognise real expressions: train on real
data first (ufer prepare + ufer train).

examples:
  ufer predict photo.jpg --model runs/rafdb/checkpoints/best.ckpt
  ufer predict photos/ clip.mp4 --model export/bundle --out results.csv --annotate annotated/
  ufer predict crops/ --model export/bundle --no-detect --out crops.csv
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="recognise expressions in photos, folders and videos",
                       description=__doc__.split(": ", 1)[1], epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="image files, folders (searched recursively for images and videos) "
                        "and video files")
    p.add_argument("--model", required=True, type=Path,
                   help="a checkpoint (.ckpt) or a bundle folder (ufer export)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="write the rows here (.csv or .parquet); default: CSV on stdout")
    p.add_argument("--annotate", type=Path, metavar="DIR",
                   help="also write each picture with boxes, landmarks and labels into DIR")
    p.add_argument("--no-detect", dest="detect", action="store_false",
                   help="the inputs are aligned face crops: no detection")
    p.add_argument("--every", type=float, default=1.0, metavar="SECONDS",
                   help="video frame sampling interval (default: 1.0)")
    p.add_argument("--max-frames", type=int, metavar="N",
                   help="at most N sampled frames per video")
    p.add_argument("--min-score", type=float, default=0.9, metavar="P",
                   help="smallest detector confidence kept (default: 0.9)")
    p.add_argument("--batch-size", type=int, default=32, help="faces per network call")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: torch's choice; 1 is fastest on a "
                        "busy machine)")
    p.add_argument("--image-size", type=int,
                   help="network input side, for models that do not record it")
    p.set_defaults(func=run)


def input_files(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """(file, name relative to its input) for each input: folders expanded recursively,
    files (existing or not: a missing one becomes an error row) kept as given."""
    out: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            out += [(f, Path(item.name) / f.relative_to(item)) for f in folder_files(item)]
        else:
            out.append((item, Path(item.name)))
    return out


def annotated_path(folder: Path, name: Path, picture: Picture) -> Path:
    """Where the annotated copy of a picture goes: ``folder/name`` as JPEG; a video frame
    as ``folder/<name without suffix>/frame_<index>.jpg``."""
    if picture.frame is not None:
        return folder / name.with_suffix("") / f"frame_{picture.frame:06d}.jpg"
    return folder / name.with_suffix(".jpg")


def _load(args: argparse.Namespace):
    from ufer.inference.detect import MTCNNDetector
    from ufer.inference.recognizer import Recognizer

    detector = MTCNNDetector(min_score=args.min_score, device=args.device) if args.detect \
        else None
    model: Path = args.model
    if model.is_dir() or model.suffix == ".json":
        return Recognizer.from_bundle(model, detector=detector, device=args.device,
                                      image_size=args.image_size)
    return Recognizer.from_checkpoint(model, detector=detector, device=args.device,
                                      image_size=args.image_size)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ufer.inference.annotate import annotate
    from ufer.inference.recognizer import results_frame

    logging.getLogger("ufer").setLevel(logging.WARNING)  # model-building notes are noise here
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        recognizer = _load(args)
    except (OSError, ValueError, ImportError, KeyError) as exc:
        print(f"ufer predict: cannot load the model {args.model}: {exc}", file=sys.stderr)
        return 1
    files = input_files(args.inputs)
    names = {str(f): name for f, name in files}
    has_video = any(f.suffix.lower() in VIDEO_SUFFIXES for f, _ in files)

    def items() -> Iterator[Picture]:
        for f, _ in files:
            yield from read_file(f, args.every, args.max_frames)

    start = time.perf_counter()
    rows, count = [], 0
    bar = tqdm(total=None if has_video else len(files), unit="picture", disable=None,
               file=sys.stderr)
    for picture, picture_rows in recognizer.iter_results(items(), detect=args.detect,
                                                         batch_size=args.batch_size):
        rows += picture_rows
        count += 1
        bar.update()
        if args.annotate is not None and picture.image is not None:
            target = annotated_path(args.annotate, names[picture.source], picture)
            target.parent.mkdir(parents=True, exist_ok=True)
            annotate(picture.image, picture_rows).save(target, quality=90)
    bar.close()
    seconds = time.perf_counter() - start
    frame = results_frame(rows, recognizer.columns)
    if args.out is None:
        frame.to_csv(sys.stdout, index=False)
    elif args.out.suffix == ".parquet":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(args.out, index=False)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)
    status = frame["status"].value_counts()
    print(f"ufer predict: {count} pictures from {len(files)} files in {seconds:.1f} s "
          f"({count / max(seconds, 1e-9):.1f} pictures/s): {status.get('ok', 0)} faces, "
          f"{status.get('no face', 0)} pictures without a face, {status.get('error', 0)} "
          f"unreadable" + (f"; rows in {args.out}" if args.out else ""), file=sys.stderr)
    return 0 if count > status.get("error", 0) else 1
