"""How one optimizer step's completions are shared by the training processes.

A preset states its completions per optimizer step, ``batch_size * grad_accum``, as one process runs
them. Launched on N processes (torchrun, ``accelerate launch``), the run keeps that number: gradient
accumulation shrinks first, then the per-process batch (:func:`process_batches`), so the objective,
the step count and the learning-rate schedule do not depend on how many GPUs trained it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .presets import InvalidSettingsError, Preset


@dataclass(frozen=True)
class ProcessBatches:
    """How one optimizer step's completions are shared by the training processes.

    Attributes:
        processes: training processes (GPUs, or CPU processes under torchrun).
        batch_size: completions per process per micro-batch (TRL's ``per_device_train_batch_size``).
        grad_accum: micro-batches per process per optimizer step.
        num_generations: completions per prompt.
    """

    processes: int
    batch_size: int
    grad_accum: int
    num_generations: int

    @property
    def completions(self) -> int:
        """Completions per optimizer step, all processes together."""
        return self.processes * self.batch_size * self.grad_accum

    def describe(self) -> str:
        """The line a run prints at its start.

        Example:
            >>> ProcessBatches(2, 2, 1, num_generations=4).describe()
            '2 processes x batch 2 x accumulation 1 = 4 completions = 1 prompt per optimizer step'
        """
        prompts = self.completions / self.num_generations
        return (
            f"{self.processes} process{'' if self.processes == 1 else 'es'} x batch {self.batch_size} x "
            f"accumulation {self.grad_accum} = {self.completions} completions = {prompts:g} "
            f"prompt{'' if prompts == 1 else 's'} per optimizer step"
        )


def process_batches(preset: Preset, processes: int = 1) -> ProcessBatches:
    """Per-process batch and accumulation that keep ``preset``'s completions per optimizer step.

    ``preset.batch_size * preset.grad_accum`` completions make one optimizer step whatever the number
    of processes: more processes shrink the gradient accumulation first, then the per-process batch.

    Args:
        preset: the run's preset (its batch and accumulation are those of one process).
        processes: training processes (the launcher's ``WORLD_SIZE``).

    Returns:
        A :class:`ProcessBatches`.

    Raises:
        InvalidSettingsError: no processes, or the completions cannot be shared evenly; the message
            names ``--grad-accum``, which sets a larger global batch.

    Example:
        >>> from chartrvr_nb.presets import get_preset
        >>> full = get_preset("full-ft")
        >>> [(b.batch_size, b.grad_accum) for b in (process_batches(full, n) for n in (1, 2, 4))]
        [(2, 2), (2, 1), (1, 1)]
        >>> process_batches(full, 8)
        Traceback (most recent call last):
        ...
        chartrvr_nb.presets.InvalidSettingsError: Preset 'full-ft' makes 4 completions per optimizer step ...
    """
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise InvalidSettingsError(
            f"The number of training processes (--num-processes) must be a positive integer, got {processes!r}."
        )
    total = preset.completions_per_step
    for batch_size in range(preset.batch_size, 0, -1):
        if total % (processes * batch_size) == 0:
            return ProcessBatches(processes, batch_size, total // (processes * batch_size), preset.num_generations)
    larger = next(
        accum
        for accum in range(preset.grad_accum + 1, preset.grad_accum * processes * preset.num_generations + 1)
        if preset.batch_size * accum % processes == 0 and preset.batch_size * accum % preset.num_generations == 0
    )
    raise InvalidSettingsError(
        f"Preset {preset.name!r} makes {total} completions per optimizer step (batch_size {preset.batch_size} x "
        f"grad_accum {preset.grad_accum}), which {processes} processes cannot share evenly (each needs a whole "
        f"micro-batch). Pass a larger global batch with --grad-accum, e.g. --grad-accum {larger} for "
        f"{preset.batch_size * larger} completions per step, or run on fewer processes."
    )
