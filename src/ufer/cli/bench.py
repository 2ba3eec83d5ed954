"""``ufer bench``: compare methods over noise rates and seeds, or measure their speed."""
from __future__ import annotations

import argparse
from pathlib import Path

from ufer.data.synthetic import PRESETS

_EPILOG = """\
The grid is every method x noise rate x seed, each cell trained with the same data
settings and schedule. Finished cells are kept in OUT/cells/ and skipped when the same
command runs again, so a killed bench continues where it stopped.

Outputs: OUT/results.md (accuracy, label corrections, detection of wrong labels with
cleanlab as the outside reference), OUT/results.json, OUT/plots/*.png.

examples:
  ufer bench --preset bench-cpu --out runs/bench-cpu --jobs 2
  ufer bench --preset tiny --methods baseline scn --noise 0,0.3 --seeds 1 --epochs 1
  ufer bench --manifest data/rafdb.csv --methods baseline scn --noise 0,0.1,0.2,0.3 \\
      --seeds 3 --epochs 40 --backbone resnet18 --image-size 112 --out runs/bench-raf \\
      --method-config scn=scn_switches.yaml   # e.g. "relabel_scope: all"
  ufer bench --speed --backbone fer_resnet_small --image-size 48 --batch-size 128
"""


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected rates like 0,0.1,0.3, got {text!r}") from err
    if not rates or any(not 0.0 <= r <= 1.0 for r in rates):
        raise argparse.ArgumentTypeError(f"noise rates must be in [0, 1], got {text!r}")
    return rates


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="methods x noise x seeds benchmark, or --speed",
                       description=__doc__, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_mutually_exclusive_group()
    data.add_argument("--manifest", help="clean manifest to benchmark on (your data)")
    data.add_argument("--preset", choices=sorted(PRESETS),
                      help="generate this synthetic preset into OUT/data and use it; also "
                           "sets the default epochs, backbone, batch size and grid "
                           "(bench-cpu: 70 epochs, fer_resnet_small, batch 128, noise 0,0.3, "
                           "3 seeds)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="methods to compare (default: every registered one); NAME@LABEL is a "
                        "variant of NAME with its own --method-config NAME@LABEL=YAML, e.g. "
                        "ldlva@forward")
    p.add_argument("--noise", type=_rates, default=None,
                   help="comma-separated noise rates (default from the preset, else "
                        "0,0.1,0.2,0.3)")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds, 0..S-1 unless --first-seed (default from the "
                        "preset, else 3)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="start the seeds here (seeds K..K+S-1), e.g. to split a grid across "
                        "machines: each runs its seeds into its own --out")
    p.add_argument("--protocol", default="symmetric",
                   help="symmetric | pairwise | FILE (a C x C transition matrix .csv/.npy "
                        "whose flip pattern is scaled to each rate)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per cell (default from the preset, else 30)")
    p.add_argument("--backbone", default=None,
                   help="backbone of every cell (default from the preset)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size")
    p.add_argument("--image-size", type=int, default=None,
                   help="resize images (default: as stored)")
    p.add_argument("--method-config", action="append", default=[], metavar="NAME=YAML",
                   help="constructor arguments of method NAME (or 'all') from YAML: a flat "
                        "mapping or a `ufer train` config's model.init_args; repeatable")
    p.add_argument("--regime", choices=("scratch", "paper"), default="scratch",
                   help="scratch: every row from random weights under one shared schedule "
                        "(the methods' paper switches); paper: each method's own paper recipe "
                        "(optimizer, schedule, batch size, epochs from configs/paper/) from a "
                        "pretrained backbone, and the baseline under each recipe of the grid")
    p.add_argument("--pretrained", default=None, metavar="PATH",
                   help="paper regime: backbone weights to start from (default: `ufer "
                        "pretrain` run once into OUT/data, synthetic identities)")
    p.add_argument("--reuse-unverified", action="store_true",
                   help="reuse cells written before cells recorded their settings (they cannot "
                        "be checked against this grid)")
    p.add_argument("--no-cleanlab", action="store_true",
                   help="skip the cleanlab reference (k-fold out-of-fold baseline)")
    p.add_argument("--folds", type=int, default=3, help="cleanlab cross-validation folds")
    p.add_argument("--no-train", action="store_true",
                   help="train nothing: write the tables from the finished cells only (a look "
                        "at a grid that is still running or was stopped)")
    p.add_argument("--jobs", type=int, default=1,
                   help="cells trained at once, each in its own process with cores/jobs "
                        "threads; their output goes to OUT/cells/<cell>/train.log")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto, cpu, gpu)")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/bench, or runs/speed with --speed)")
    speed = p.add_argument_group("speed benchmark (--speed)")
    speed.add_argument("--speed", action="store_true",
                       help="measure training step time of every method relative to the "
                            "baseline, data-loader throughput, peak memory, inference latency")
    speed.add_argument("--steps", type=int, default=20, help="timed steps per method")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ufer.engine.bench import BenchConfig, load_method_config, run_bench

    configs: dict[str, dict] = {}
    for item in args.method_config:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"ufer bench: --method-config expects NAME=YAML, got {item!r}")
        configs.setdefault(name, {}).update(load_method_config(path))
    if args.speed:
        from ufer.engine.speed import run_speed

        result = run_speed(methods=args.methods, backbone=args.backbone or "fer_resnet_small",
                           image_size=args.image_size or 48, batch_size=args.batch_size or 128,
                           steps=args.steps, out=args.out or "runs/speed",
                           accelerator=args.accelerator, method_configs=configs)
        print(result["markdown"])
        return 0
    if args.manifest is None and args.preset is None:
        raise SystemExit("ufer bench: give --manifest (your data) or --preset (synthetic)")
    cfg = BenchConfig(out=args.out or "runs/bench", manifest=args.manifest, preset=args.preset,
                      methods=args.methods, noise=args.noise, seeds=args.seeds,
                      first_seed=args.first_seed,
                      protocol=args.protocol, epochs=args.epochs, backbone=args.backbone,
                      batch_size=args.batch_size, image_size=args.image_size,
                      method_configs=configs, cleanlab=not args.no_cleanlab, folds=args.folds,
                      jobs=args.jobs, regime=args.regime, pretrained=args.pretrained,
                      reuse_unverified=args.reuse_unverified)
    results = run_bench(cfg, train=not args.no_train, accelerator=args.accelerator)
    print(Path(results["config"]["out"], "results.md").read_text())
    print(f"written: {results['config']['out']}/results.md, results.json, plots/")
    return 0
