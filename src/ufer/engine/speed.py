"""``ufer bench --speed``: training cost of every method relative to the baseline.

All methods are measured side by side in ONE process on the same real batch (a synthetic
``tiny`` manifest at the requested image size, so AU/VA branches are active): a warm-up,
then rounds in which every method takes ``steps / rounds`` steps in turn (interleaved, so
a slow phase of a shared machine hits every method alike). Also measured: the data
loader's images/s alone (decode or cache, collate, batched augmentation) against the
images/s the baseline consumes, peak memory per method (CUDA: max_memory_allocated; CPU:
peak resident set size, reset per method through /proc/self/clear_refs where Linux allows
it) and the inference latency of the exported FERNet at batch 1 and 64.
"""
from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ufer._registry import create_method, list_methods
from ufer.data.datamodule import FERDataModule
from ufer.data.synthetic import generate
from ufer.engine.bench.config import merged_config, method_of
from ufer.engine.train import set_threads
from ufer.inference.export import export_bundle, load_bundle


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> bool:
    """Reset the peak-memory counter; False when this platform cannot (CPU without /proc)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _device(accelerator: str) -> torch.device:
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


class _Stepper:
    """One method (or variant ``name@label``) with its own data module, SGD optimizer and fixed
    batch (taken after the method set the data module up, e.g. to deliver neighbour images)."""

    def __init__(self, label: str, manifest: Path, batch_size: int, kwargs: dict[str, Any],
                 device: torch.device):
        self.name = label
        dm = FERDataModule(str(manifest), batch_size=batch_size, seed=0)
        dm.setup("fit")
        self.method = create_method(method_of(label), **{**dm.method_sizes(), **kwargs})
        self.method = self.method.to(device)
        self.method.prepare_state(dm)
        self.method.train()
        batch = next(iter(dm.train_dataloader()))
        self.batch = dm.on_after_batch_transfer({k: v.to(device) for k, v in batch.items()}, 0)
        self.optimizer = torch.optim.SGD([g for g in self.method.param_groups() if g["params"]],
                                         lr=1e-3, momentum=0.9)
        self.times: list[float] = []
        self.peak_mib = float("nan")
        self.error: str | None = None

    def step(self) -> None:
        batch = self.batch
        out = self.method.forward_train(batch)
        loss = self.method.training_losses(batch, out)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.method.apply_state_update(batch, out)

    def params(self) -> tuple[int, int]:
        total = sum(p.numel() for p in self.method.parameters())
        return total, sum(p.numel() for p in self.method.net.parameters())


def _loader_throughput(dm: FERDataModule, device: torch.device, batches: int) -> float:
    """Images/s of the training loader alone, including transfer and batched augmentation."""
    loader = dm.train_dataloader()
    seen, start = 0, time.perf_counter()
    while seen < batches * dm.batch_size:
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            batch = dm.on_after_batch_transfer(batch, 0)
            seen += batch["image"].shape[0]
            if seen >= batches * dm.batch_size:
                break
    _sync(device)
    return seen / (time.perf_counter() - start)


@torch.inference_mode()
def _latency_ms(net: torch.nn.Module, size: int, batch: int, device: torch.device,
                reps: int) -> float:
    x = torch.randn(batch, 3, size, size, device=device)
    for _ in range(2):
        net(x)
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        net(x)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run_speed(methods: list[str] | None = None, backbone: str = "fer_resnet_small",
              image_size: int = 48, batch_size: int = 128, steps: int = 20, warmup: int = 3,
              rounds: int = 4, out: str | Path = "runs/speed", accelerator: str = "auto",
              latency_reps: int = 10,
              method_configs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Measure every method; write OUT/speed.md and OUT/speed.json; return the results.

    ``methods`` may name variants ``name@label`` whose constructor arguments come from
    ``method_configs[label]`` (after ``all`` and ``name``), as in ``ufer bench``.
    """
    set_threads()
    device = _device(accelerator)
    out = Path(out)
    data = out / f"data-{image_size}px"
    manifest = data / "manifest.csv"
    if not manifest.exists():
        generate(data, preset="tiny", seed=0, image_size=image_size,
                 n_train=max(2 * batch_size, 200))
    names = list(methods or list_methods())
    if "baseline" in names:
        names.remove("baseline")
    names.insert(0, "baseline")
    configs = method_configs or {}
    steppers = [_Stepper(n, manifest, batch_size,
                         {"backbone": backbone, **merged_config(configs, n)}, device)
                for n in names]
    for s in steppers:  # warm-up and peak memory, one method at a time
        try:
            can_reset = _reset_peak(device)
            for _ in range(warmup):
                s.step()
            _sync(device)
            s.peak_mib = _peak_mib(device) if can_reset else float("nan")
        except Exception as err:  # noqa: BLE001 (a failing method is a table row)
            s.error = f"{type(err).__name__}: {err}"
    per_round = max(1, steps // rounds)
    for _ in range(rounds):
        for s in steppers:
            if s.error:
                continue
            _sync(device)
            start = time.perf_counter()
            for _ in range(per_round):
                s.step()
            _sync(device)
            s.times.append((time.perf_counter() - start) / per_round)
    dm = FERDataModule(str(manifest), batch_size=batch_size, seed=0)
    dm.setup("fit")
    loader_ips = _loader_throughput(dm, device, batches=max(4, steps // 2))
    base_step = statistics.median(steppers[0].times) if steppers[0].times else float("nan")
    rows = []
    for s in steppers:
        total, inference = s.params()
        step = statistics.median(s.times) if s.times else float("nan")
        rows.append({"method": s.name, "step_ms": 1000 * step, "relative": step / base_step,
                     "images_per_second": batch_size / step, "peak_mib": s.peak_mib,
                     "params_training": total, "params_inference": inference,
                     "error": s.error})
    net, _ = load_bundle(export_bundle(steppers[0].method, out / "export", image_size))
    net = net.to(device)
    latency = {"batch1_ms": _latency_ms(net, image_size, 1, device, latency_reps),
               "batch64_ms": _latency_ms(net, image_size, 64, device, latency_reps)}
    result = {"device": str(device), "threads": torch.get_num_threads(), "backbone": backbone,
              "image_size": image_size, "batch_size": batch_size, "steps": per_round * rounds,
              "methods": rows, "loader_images_per_second": loader_ips,
              "baseline_images_per_second": batch_size / base_step, "latency": latency}
    result["markdown"] = format_speed(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "speed.md").write_text(result["markdown"] + "\n")
    return result


def format_speed(r: dict[str, Any]) -> str:
    memory = "peak GPU memory allocated" if r["device"].startswith("cuda") else \
        "peak process RSS"
    lines = [(f"# ufer bench --speed: {r['backbone']}, {r['image_size']} px, batch "
             f"{r['batch_size']}, {r['device']} ({r['threads']} threads)"), "",
             (f"Training step (forward, losses, backward, optimizer, state update), median over "
             f"{r['steps']} interleaved steps per method in one process."), "",
             (f"| method | step (ms) | vs baseline | images/s | {memory} (MiB) | "
             "params training | params inference |"), "|---|---|---|---|---|---|---|"]
    for m in r["methods"]:
        if m["error"]:
            lines.append(f"| {m['method']} | failed: {m['error']} | | | | | |")
            continue
        lines.append(f"| {m['method']} | {m['step_ms']:.1f} | {m['relative']:.2f}x | "
                     f"{m['images_per_second']:.0f} | {m['peak_mib']:.0f} | "
                     f"{m['params_training']:,} | {m['params_inference']:,} |")
    lat = r["latency"]
    keeps_up = r["loader_images_per_second"] >= r["baseline_images_per_second"]
    lines += ["", (f"Data loader alone: {r['loader_images_per_second']:.0f} images/s; the "
              f"baseline consumes {r['baseline_images_per_second']:.0f} images/s "
              f"({'the loader keeps up' if keeps_up else 'the loader is the bottleneck'})."),
              (f"Exported FERNet inference (identical for every method): batch 1 "
              f"{lat['batch1_ms']:.2f} ms, batch 64 {lat['batch64_ms']:.2f} ms "
              f"({64000 / lat['batch64_ms']:.0f} images/s).")]
    return "\n".join(lines)
