"""Run jobs (a function, its arguments and its output folder) in this process or in a pool of
worker processes, each with its share of the cores; Ctrl-C, ``kill PID`` or a failed job
stops the workers too."""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ufer.engine.train import set_threads


def _in_process(fn: Any, args: tuple, log_dir: Path, threads: int,
                overrides: dict[str, Any]) -> str:
    """Run one job in a worker process with ``threads`` torch threads; output to train.log."""
    import torch

    torch.set_num_threads(threads)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "train.log", "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        fn(*args, **overrides)
    return log_dir.name


def run_jobs(jobs: list[tuple[Any, tuple, Path]], processes: int,
              overrides: dict[str, Any]) -> None:
    """Run (function, args, folder) jobs: in this process, or ``processes`` at a time."""
    total = len(jobs)
    if processes <= 1:
        for number, (fn, args, folder) in enumerate(jobs, 1):
            print(f"[{number}/{total}] {folder.name}: training", flush=True)
            fn(*args, **overrides)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = set_threads(processes)
    with _sigterm_as_interrupt(), ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_in_process, fn, args, folder, threads, overrides)
                   for fn, args, folder in jobs]
        try:
            for number, future in enumerate(as_completed(futures), 1):
                print(f"[{number}/{total}] {future.result()}: finished", flush=True)
        except BaseException:  # Ctrl-C, kill, or a failed cell: stop the other workers too
            for future in futures:
                future.cancel()
            for child in multiprocessing.active_children():
                child.kill()
            raise


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM (``kill PID``) raises KeyboardInterrupt like Ctrl-C does, so
    the bench stops its worker processes instead of leaving them training on their own.
    Only the main thread can set signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
