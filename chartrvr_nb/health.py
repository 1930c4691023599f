"""Run health: the seed guide's "What to look for" and "When to worry", as rules over a run's logged metrics.

Each rule reads the training records of ``metrics.jsonl`` (one per logging step, with the keys TRL 1.16's
GRPOTrainer logs) and what else is known about the run (:class:`RunFacts`), and returns a :class:`Verdict`:
``ok``, ``warn`` (with the numbers and what to do) or ``wait`` (too few steps to say yet). The same rules
(:data:`CHECKS`) run live, each warning once (:class:`HealthWatch`, fed by ``callbacks.HealthCallback``), and on a
finished or running run folder (:func:`chartrvr_nb.doctor.doctor`, ``python -m chartrvr_nb doctor RUN_DIR``).
:func:`nonfinite_message` is what the trainer's guard says when it stops a run on a NaN or inf.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .env import in_colab
from .estimate import format_duration

WINDOW = 20  # logged steps a rule averages over
MIN_LOGGED = 5  # logged steps a rule needs before it judges a share or an average
# The seed guide expects format rewards "mostly 0.0, occasional 2.0" in steps 0-1,000: not one completion in
# format for this many steps (400 completions at the presets' 4 per step) is the "still 0" of its "When to worry".
FORMAT_PATIENCE_STEPS = 100
ALL_ZERO_LOGGED = 5  # logged steps in a row with a total reward of 0
MOST = 0.5  # "most" groups or completions
COLLAPSE_FRACTION = 0.25
# The <think>/<type>/<table>/<answer> format with even a one-cell table takes more tokens than this.
COLLAPSED_TOKENS = 32
COLAB_SESSION_HOURS = 12.0  # a free Colab runtime lasts at most about 12 hours (the seed: "after 12-24 hours")

FORMAT_KEY = "rewards/format_reward/mean"
REWARD_KEY = "reward"
ZERO_STD_KEY = "frac_reward_zero_std"
CLIPPED_KEY = "completions/clipped_ratio"
LENGTH_KEY = "completions/mean_length"
STEP_TIME_KEY = "step_time"
FINITE_KEYS = ("loss", "grad_norm", REWARD_KEY)
SAMPLES_ADVICE = "read the samples (python -m chartrvr_nb rewards RUN_DIR)"


@dataclass(frozen=True)
class RunFacts:
    """What the rules know about a run beyond its metrics (None: unknown)."""

    max_steps: int | None = None
    max_completion_length: int | None = None
    num_generations: int | None = None
    seconds_per_step: float | None = None  # measured; None: the median of the logged step_time
    drive: bool = False  # checkpoints are mirrored to Google Drive
    in_colab: bool = False


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: ``status`` is ``ok``, ``warn`` or ``wait``; ``message`` gives the numbers."""

    check: str
    status: str
    message: str


def _numbers(records: Sequence[Mapping], key: str) -> list[tuple[int, float]]:
    return [(r["step"], float(r[key])) for r in records if isinstance(r.get(key), (int, float))]


def _span(points: Sequence[tuple[int, float]]) -> str:
    return f"steps {points[0][0]}-{points[-1][0]}" if points[0][0] != points[-1][0] else f"step {points[0][0]}"


def _mean(points: Sequence[tuple[int, float]]) -> float:
    return statistics.fmean(value for _, value in points)


def _finite(records: Sequence[Mapping], facts: RunFacts) -> Verdict:
    for record in records:
        for key in FINITE_KEYS:
            value = record.get(key, 0.0)
            if value is None or isinstance(value, float) and not math.isfinite(value):
                return Verdict(
                    "finite",
                    "warn",
                    f"{key} was {value} at step {record['step']}: the run diverged there (or a reward returned NaN, "
                    "which TRL logs as None). The training output says what the guard found; a new run with a lower "
                    "--learning-rate usually avoids it.",
                )
    return Verdict("finite", "ok", f"loss, gradient norm and reward finite in all {len(records)} logged steps")


def _format(records: Sequence[Mapping], facts: RunFacts) -> Verdict:
    points = _numbers(records, FORMAT_KEY)
    if not points:
        return Verdict("format", "wait", "no format reward logged yet")
    last = points[-1][0]
    recent = [(step, value) for step, value in points if step > last - FORMAT_PATIENCE_STEPS]
    if any(value > 0 for _, value in recent):
        return Verdict("format", "ok", f"format reward {_mean(recent):.2f} of 2 on average over {_span(recent)}")
    if last < FORMAT_PATIENCE_STEPS:
        return Verdict("format", "wait", f"format reward 0 so far; judged after {FORMAT_PATIENCE_STEPS} steps")
    return Verdict(
        "format",
        "warn",
        f"format reward still 0 over {_span(recent)}: not one completion followed the <think>/<type>/<table>/"
        "<answer> format, so format, count and accuracy cannot rise. Check that the system prompt asks for it "
        f"(python -m chartrvr_nb prompt), that completions are not cut off (see 'clipped'), and {SAMPLES_ADVICE}.",
    )


def _rewards(records: Sequence[Mapping], facts: RunFacts) -> Verdict:
    points = _numbers(records, REWARD_KEY)
    recent = points[-ALL_ZERO_LOGGED:]
    if any(value != 0 for _, value in recent):
        return Verdict("rewards", "ok", f"total reward {_mean(recent):.2f} on average over {_span(recent)}")
    if len(recent) < ALL_ZERO_LOGGED:
        return Verdict("rewards", "wait", f"total reward 0 so far; judged after {ALL_ZERO_LOGGED} logged steps")
    return Verdict(
        "rewards",
        "warn",
        f"every reward was 0 for every completion over {_span(recent)}: GRPO has nothing to learn from. That is a "
        "model or prompt problem, not slow learning (the seed guide: if all completions fail, check model "
        f"loading): check the model and its processor loaded, the system prompt, and {SAMPLES_ADVICE}.",
    )


def _spread(records: Sequence[Mapping], facts: RunFacts) -> Verdict:
    points = _numbers(records, ZERO_STD_KEY)[-WINDOW:]
    if len(points) < MIN_LOGGED:
        return Verdict("spread", "wait", f"judged after {MIN_LOGGED} logged steps")
    share = _mean(points)
    if share <= MOST:
        return Verdict("spread", "ok", f"{share:.0%} of prompt groups without reward spread over {_span(points)}")
    generations = f", now {facts.num_generations}" if facts.num_generations else ""
    return Verdict(
        "spread",
        "warn",
        f"{share:.0%} of prompt groups gave every completion the same reward over {_span(points)} (TRL's "
        "frac_reward_zero_std): their advantages are 0, so most of each step teaches nothing. More completions per "
        f"prompt (--num-generations{generations}) make differing rewards likelier; or train on other rows "
        "(--subset-size, --seed) if these are all too easy or too hard.",
    )


def _clipped(records: Sequence[Mapping], facts: RunFacts) -> Verdict:
    points = _numbers(records, CLIPPED_KEY)[-WINDOW:]
    if len(points) < MIN_LOGGED:
        return Verdict("clipped", "wait", f"judged after {MIN_LOGGED} logged steps")
    share = _mean(points)
    limit = f" ({facts.max_completion_length} tokens)" if facts.max_completion_length else ""
    if share <= MOST:
        return Verdict("clipped", "ok", f"{share:.0%} of completions cut at the length limit over {_span(points)}")
    return Verdict(
        "clipped",
        "warn",
        f"{share:.0%} of completions stopped at the length limit{limit} over {_span(points)} (TRL's "
        "completions/clipped_ratio): a cut-off answer scores 0 on format, count and accuracy. Raise "
        f"--max-completion-length, or {SAMPLES_ADVICE}: does the model ramble or repeat itself?",
    )


def _length(records: Sequence[Mapping], facts: RunFacts) -> Verdict:
    points = _numbers(records, LENGTH_KEY)
    if len(points) < 2 * MIN_LOGGED:
        return Verdict("length", "wait", f"judged after {2 * MIN_LOGGED} logged steps")
    size = min(WINDOW, len(points) // 2)
    early, recent = points[:size], points[-size:]
    before, now = _mean(early), _mean(recent)
    if not (now < COLLAPSE_FRACTION * before and now < COLLAPSED_TOKENS):
        return Verdict("length", "ok", f"mean completion length {before:.0f} tokens early, {now:.0f} recently")
    return Verdict(
        "length",
        "warn",
        f"mean completion length collapsed from {before:.0f} tokens ({_span(early)}) to {now:.0f} ({_span(recent)}), "
        "too short to hold the format: the policy found a short answer the rewards pay for, or diverged. Start a "
        f"new run with a lower --learning-rate, and {SAMPLES_ADVICE}.",
    )


def _seconds_per_step(records: Sequence[Mapping], facts: RunFacts) -> float | None:
    if facts.seconds_per_step:
        return facts.seconds_per_step
    times = [value for _, value in _numbers(records, STEP_TIME_KEY)[-WINDOW:]]
    return statistics.median(times) if times else None


def _session(records: Sequence[Mapping], facts: RunFacts) -> Verdict:
    per_step = _seconds_per_step(records, facts)
    if not records or facts.max_steps is None or per_step is None:
        return Verdict("session", "wait", "the run's length or speed is not known yet")
    if records[-1]["step"] >= facts.max_steps:
        return Verdict("session", "ok", f"the run has done all its {facts.max_steps} steps")
    left = (facts.max_steps - records[-1]["step"]) * per_step
    remaining = f"about {format_duration(left)} of training left ({per_step:.3g} s/step)"
    if left <= COLAB_SESSION_HOURS * 3600:
        return Verdict("session", "ok", f"{remaining}, within a Colab session")
    if not facts.in_colab:
        return Verdict("session", "ok", f"{remaining}; not in Colab, so no session limit")
    if facts.drive:
        return Verdict("session", "ok", f"{remaining}, longer than a Colab session, with checkpoints mirrored to Drive")
    return Verdict(
        "session",
        "warn",
        f"{remaining}, longer than a Colab session lasts (about {COLAB_SESSION_HOURS:g} h), and checkpoints are not "
        "mirrored to Google Drive: when the runtime disconnects, its disk and every checkpoint go with it. Run again "
        "with a Drive folder (use_drive in 02_train, --drive-dir on the command line): it resumes from the newest "
        "checkpoint and mirrors every later one, and 03_resume_from_drive continues it after a disconnect.",
    )


# The checks, in the order they are reported; each takes the training records and the run's facts.
CHECKS: dict[str, Callable[[Sequence[Mapping], RunFacts], Verdict]] = {
    "finite": _finite,
    "format": _format,
    "rewards": _rewards,
    "spread": _spread,
    "clipped": _clipped,
    "length": _length,
    "session": _session,
}


def preset_facts(preset, drive: bool) -> RunFacts:
    """What is known of a run of ``preset`` before it starts (the Trainer adds its step count).

    Example:
        >>> from chartrvr_nb.presets import get_preset
        >>> preset_facts(get_preset("colab-t4"), drive=True).max_completion_length
        768
    """
    return RunFacts(
        max_completion_length=preset.max_completion_length,
        num_generations=preset.num_generations,
        drive=drive,
        in_colab=in_colab(),
    )


def training_records(records: Sequence[Mapping]) -> list[Mapping]:
    """The records of optimizer steps (those with a total reward), not the end-of-training summary."""
    return [r for r in records if isinstance(r.get("step"), int) and REWARD_KEY in r]


def check_run(records: Sequence[Mapping], facts: RunFacts) -> list[Verdict]:
    """Every check of :data:`CHECKS` on a run's metrics records.

    Example:
        >>> records = [{"step": s, "reward": 0.0, "rewards/format_reward/mean": 0.0} for s in range(1, 7)]
        >>> [(v.check, v.status) for v in check_run(records, RunFacts())][:3]
        [('finite', 'ok'), ('format', 'wait'), ('rewards', 'warn')]
    """
    records = training_records(records)
    return [check(records, facts) for check in CHECKS.values()]


class HealthWatch:
    """The checks during training: fed each log event, it returns each condition's first warning, once.

    It keeps the first :data:`WINDOW` records (the early completion length) and the latest
    :data:`FORMAT_PATIENCE_STEPS`, so a run of 100,000 steps costs no more than one of 100.
    """

    def __init__(self, facts: RunFacts):
        self.facts = facts
        self._early: list[Mapping] = []
        self._recent: deque[Mapping] = deque(maxlen=FORMAT_PATIENCE_STEPS)
        self._warned: set[str] = set()

    def update(self, record: Mapping, **facts) -> list[Verdict]:
        """Add one log event (``{"step": ..., **logs}``); ``facts`` updates :class:`RunFacts` fields first.

        Returns:
            The warnings of conditions that had not warned before.
        """
        self.facts = dataclasses.replace(self.facts, **facts)
        if not training_records([record]):
            return []
        (self._early if len(self._early) < WINDOW else self._recent).append(dict(record))
        found = check_run([*self._early, *self._recent], self.facts)
        new = [verdict for verdict in found if verdict.status == "warn" and verdict.check not in self._warned]
        self._warned.update(verdict.check for verdict in new)
        return new


# --------------------------------------------------------------------------------------------
# What the trainer's non-finite guard says
# --------------------------------------------------------------------------------------------


class NonFiniteError(RuntimeError):
    """Training met a NaN or inf and stopped before saving it; the message says where and what to try."""


def nonfinite_message(
    step: int, quantity: str, detail: str, learning_rate: float, precision: str, newest_checkpoint: str | None
) -> str:
    """Why the guard stopped the run at ``step``, what to try, and where the run resumes from.

    Args:
        step: the optimizer step that met it.
        quantity: ``loss``, ``gradient norm``, ``reward``, ``weights`` or ``generation``.
        detail: the value (loss, gradient norm), which reward returned it, or which weight holds it.
        learning_rate: the run's learning rate.
        precision: the run's mixed precision (``bf16``, ``fp16`` or ``no``).
        newest_checkpoint: the newest complete checkpoint's folder name, or None.

    Example:
        >>> print(nonfinite_message(4, "loss", "nan", 1e-5, "bf16", "checkpoint-2"))  # doctest: +ELLIPSIS
        Training stopped at step 4: the loss is nan. Try a lower learning rate (now 1e-05) ... from checkpoint-2.
    """
    what = {
        "loss": f"the loss is {detail}",
        "gradient norm": f"the gradient norm is {detail}",
        "reward": f"a reward is not a finite number ({detail})",
        "weights": f"a trained weight is not finite ({detail})",
        "generation": f"the model's next-token probabilities are not finite while generating ({detail})",
    }[quantity]
    if quantity == "reward":
        advice = (
            "Every reward must return a finite number for every completion (TRL would count a NaN as 0 without a "
            "word): score the newest samples to find the completion (python -m chartrvr_nb rewards RUN_DIR) and fix "
            "the reward function."
        )
    else:
        range_note = {
            "fp16": " This run computes in fp16 (the GPU has no native bf16), whose range (up to 65,504) the language "
            "model can exceed: a GPU with bf16 (L4, A100) keeps fp32's range.",
            "bf16": " bf16 keeps fp32's range, so the numbers themselves diverged.",
        }.get(precision, "")
        advice = (
            f"Try a lower learning rate (now {learning_rate:g}) or a smaller --max-grad-norm, in a new run "
            f"(--output-dir).{range_note} The reward curves of the steps before it show whether it built up."
        )
    if newest_checkpoint:
        where = (
            f"Nothing from step {step} was saved: {newest_checkpoint} is the newest good checkpoint, and running the "
            f"same command again resumes from {newest_checkpoint}"
        )
    else:
        where = f"Nothing from step {step} was saved; no checkpoint was written before it, so running again starts over"
    return f"Training stopped at step {step}: {what}. {advice} {where}."
