"""The calm console of a training run: one compact line per logging step, and no known noise.

TRL prints each step's whole metrics dict (dozens of keys on one line) above the progress bar;
the calm progress callback (``callbacks.CalmProgress``) writes :func:`step_line` instead: step / total,
total reward, the seven reward means, completion length, seconds per step and time left. The full
dict still goes to ``metrics.jsonl`` (and to TRL's raw lines with ``--verbose``).
:func:`quiet_known_warnings` hides the transformers deprecation warnings that TRL triggers at every
generation, only while our commands train; under several processes only the first prints warnings,
so each is seen once.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from . import KNOWN_LIBRARY_WARNINGS
from .estimate import format_duration
from .rewards import REWARDS


@contextlib.contextmanager
def quiet_known_warnings() -> Iterator[None]:
    """Hide ``chartrvr_nb.KNOWN_LIBRARY_WARNINGS`` (and, on processes other than the first, every warning) inside.

    Importing ``chartrvr_nb`` ignores those warnings for the whole process; inside this block they stay
    hidden even where something reset the warning filters since. Known library *log* messages are
    dropped for the whole process (``chartrvr_nb.KNOWN_LIBRARY_MESSAGES``).

    Example:
        >>> with warnings.catch_warnings(record=True) as seen:
        ...     warnings.simplefilter("always")
        ...     with quiet_known_warnings():
        ...         warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed", FutureWarning)
        ...         warnings.warn("something else", FutureWarning)
        >>> [str(warning.message) for warning in seen]
        ['something else']
    """
    with warnings.catch_warnings():
        if int(os.environ.get("RANK", "0") or 0) > 0:
            warnings.simplefilter("ignore")  # rank 0 prints the same warning
        for pattern in KNOWN_LIBRARY_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=FutureWarning)
        yield


def step_line(logs: Mapping[str, Any], step: int, max_steps: int, seconds_per_step: float | None) -> str:
    """One logging event of a GRPO run on one line.

    Example:
        >>> logs = {"reward": 4.5, "rewards/format_reward/mean": 2.0, "rewards/accuracy_reward/mean": 0.5,
        ...         "completions/mean_length": 96.0, "loss": 0.01}
        >>> step_line(logs, 3, 16, 1.25)
        'step 3/16 | reward 4.50 | format 2.00 accuracy 0.50 | len 96 | 1.25 s/step | ETA 0:16'
    """
    parts = [f"step {step}/{max_steps}"]
    if isinstance(logs.get("reward"), (int, float)):
        parts.append(f"reward {logs['reward']:.2f}")
    means = [
        f"{name} {logs[key]:.2f}"
        for name in REWARDS
        if isinstance(logs.get(key := f"rewards/{name}_reward/mean"), (int, float))
    ]
    if means:
        parts.append(" ".join(means))
    if isinstance(logs.get("completions/mean_length"), (int, float)):
        parts.append(f"len {logs['completions/mean_length']:.0f}")
    if len(parts) == 1:  # not a training step (an evaluation, a summary): its numbers, briefly
        parts.append(" ".join(f"{key} {value:.4g}" for key, value in logs.items() if isinstance(value, (int, float))))
    if seconds_per_step is not None:
        parts.append(f"{seconds_per_step:.3g} s/step")
        parts.append(f"ETA {format_duration(max(0, max_steps - step) * seconds_per_step, 'clock')}")
    return " | ".join(parts)
