"""``ufer pretrain``: a backbone pretrained on synthetic face identities (MS-Celeb stand-in)."""
from __future__ import annotations

import argparse

_EPILOG = """\
The persons are drawn from a random stream no expression dataset uses, so none of them
appears in `ufer synth` data or in a bench; each has every expression and nuisance, and
the network learns to tell the persons apart (expression labels are never seen). Output:
OUT/backbone.safetensors (load it with --model.pretrained_path or `ufer bench --pretrained`)
and OUT/provenance.json (seed, persons, images, epochs, held-out identity accuracy, sha256).
Run the same command again to continue an interrupted pretraining.

example:
  ufer pretrain --backbone fer_resnet_small --out runs/pretrain-small
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain a backbone on synthetic face identities",
                       description=__doc__, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--backbone", default="fer_resnet_small", help="any registered backbone")
    p.add_argument("--identities", type=int, default=400, help="number of persons")
    p.add_argument("--per-identity", type=int, default=30, help="training images per person")
    p.add_argument("--held-out", type=int, default=5,
                   help="held-out images per person (identity accuracy)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs")
    p.add_argument("--image-size", type=int, default=48, help="image side in pixels")
    p.add_argument("--batch-size", type=int, default=128, help="batch size")
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate (OneCycle)")
    p.add_argument("--seed", type=int, default=0, help="generator and training seed")
    p.add_argument("--workers", type=int, default=1, help="processes drawing the faces")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ufer.engine.pretrain import pretrain
    from ufer.engine.train import set_threads

    for name in ("identities", "per_identity", "held_out", "epochs", "image_size",
                 "batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"ufer pretrain: --{name.replace('_', '-')} must be >= 1, "
                             f"got {getattr(args, name)}")
    set_threads()
    result = pretrain(args.out, args.backbone, args.identities, args.per_identity, args.held_out,
                      args.epochs, args.image_size, args.batch_size, args.lr, args.seed,
                      args.workers, accelerator=args.accelerator)
    print(f"identity accuracy on held-out images: {100 * result['identity_accuracy_held_out']:.1f}% "
          f"({result['identities']} persons)")
    print(f"written: {args.out}/{result['weights']} (sha256 {result['sha256'][:12]}...), "
          f"{args.out}/provenance.json")
    return 0
