"""The calm console of a training run: one compact line per logging step, and no known noise.

TRL prints each step's whole metrics dict (dozens of keys on one line) above the progress bar;
:func:`use_calm_console` replaces that with one line: step / total, total reward, the seven
reward means, completion length, seconds per step and time left. The full dict still goes to
``metrics.jsonl`` (and to TRL's raw lines with ``--verbose``). :func:`quiet_known_warnings` hides
the transformers deprecation warnings that TRL triggers at every generation, only while our
commands train; under several processes only the first prints warnings, so each is seen once.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from typing import Any, Iterator, Mapping

from .rewards import REWARDS

# transformers 5 renamed gradient checkpointing to activation checkpointing; TRL still uses the
# old names (a config field, and three methods at every generation). Nothing to act on for our users.
KNOWN_WARNINGS = (
    r"`gradient_checkpointing` is deprecated",
    r"`gradient_checkpointing_enable` is deprecated",
    r"`gradient_checkpointing_disable` is deprecated",
    r"`is_gradient_checkpointing` is deprecated",
)


@contextlib.contextmanager
def quiet_known_warnings() -> Iterator[None]:
    """Hide :data:`KNOWN_WARNINGS` (and, on processes other than the first, every warning) inside.

    Known library *log* messages are dropped for the whole process (``chartrvr_nb.KNOWN_LIBRARY_MESSAGES``).

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
        for pattern in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=FutureWarning)
        yield


def duration(seconds: float) -> str:
    """``h:mm:ss`` (``m:ss`` under an hour).

    Example:
        >>> duration(75), duration(3725.4)
        ('1:15', '1:02:05')
    """
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


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
        parts.append(f"ETA {duration(max(0, max_steps - step) * seconds_per_step)}")
    return " | ".join(parts)


def _calm_progress_class() -> type:
    from transformers.trainer_callback import ProgressCallback

    class CalmProgress(ProgressCallback):
        """TRL's progress bar, with :func:`step_line` written above it instead of the raw dict."""

        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            self._started, self._start_step = time.perf_counter(), state.global_step  # a resume starts later

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or self.training_bar is None or not logs:
                return
            if "train_runtime" in logs:  # the end-of-training summary
                self.training_bar.write(
                    f"done: {state.global_step} steps in {duration(logs['train_runtime'])}"
                    + (f", mean loss {logs['train_loss']:.4g}" if isinstance(logs.get("train_loss"), float) else "")
                )
                return
            done = state.global_step - self._start_step
            per_step = (time.perf_counter() - self._started) / done if done > 0 else None
            self.training_bar.write(step_line(logs, state.global_step, state.max_steps, per_step))

    CalmProgress.__module__ = __name__
    return CalmProgress


def use_calm_console(trainer) -> None:
    """Swap the trainer's console progress callback for the calm one (notebook progress stays)."""
    from transformers.trainer_callback import ProgressCallback

    if any(type(callback) is ProgressCallback for callback in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_calm_progress_class()())
