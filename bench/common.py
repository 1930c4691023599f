"""What the three benches share: the machine line, the device, timing and the ratio line.

Every bench prints where it ran first (figures from a shared 2-core machine and from a GPU are
not comparable) and a ``RATIO ...`` line last, so a reader or a test can find the result.
"""

from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager


def device() -> str:
    """``"cuda"`` when a GPU is visible to torch, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads in torch (``None`` keeps torch's default of one per core).

    On a machine shared with other jobs, one thread can beat two: a second thread that waits for
    a busy core stalls every operation.
    """
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def machine_line() -> str:
    """One line naming the machine: OS, CPU cores, torch threads, load, GPU and library versions."""
    import torch
    import transformers

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        gpu = f"{properties.name} ({properties.total_memory / 2**30:.0f} GiB)"
    else:
        gpu = "no GPU"
    return (
        f"machine: {platform.system()} {platform.machine()}, {cores} CPU cores, torch threads "
        f"{torch.get_num_threads()}, load average {load}, {gpu}; torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )


def synchronize() -> None:
    """Wait for queued GPU work, so a timer stops when the work is done (a no-op on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextmanager
def stopwatch(into: list[float]):
    """Append the seconds spent in the ``with`` block to ``into`` (GPU work included)."""
    synchronize()
    started = time.perf_counter()
    try:
        yield
    finally:
        synchronize()
        into.append(time.perf_counter() - started)


def ratio_line(what: str, new_name: str, new: float, old_name: str, old: float) -> str:
    """The closing line of a bench: ``RATIO <what>: <new_name> N vs <old_name> M = R.RRx``.

    ``new`` and ``old`` are rates (higher is better), so the ratio is ``new / old``.

    Example:
        >>> ratio_line("full-set completions/s", "batched", 812.3, "one-at-a-time", 203.1)
        'RATIO full-set completions/s: batched 812.3 vs one-at-a-time 203.1 = 4.00x'
    """
    ratio = new / old if old > 0 else float("inf")
    return f"RATIO {what}: {new_name} {rate(new)} vs {old_name} {rate(old)} = {ratio:.2f}x"


def rate(value: float) -> str:
    """A rate with one decimal, or three significant digits below 10.

    Example:
        >>> rate(812.34), rate(0.04321)
        ('812.3', '0.0432')
    """
    return f"{value:.1f}" if value >= 10 else f"{value:.3g}"


def gib(num_bytes: float) -> str:
    """Bytes as GiB with two decimals.

    Example:
        >>> gib(3 * 2**30)
        '3.00 GiB'
    """
    return f"{num_bytes / 2**30:.2f} GiB"
