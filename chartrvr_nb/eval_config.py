"""Evaluation settings: :class:`EvalConfig`, a frozen dataclass whose fields carry their help text.

How a benchmark is evaluated (protocol, greedy generation settings, which examples, what else to
report), declared the way an lmms-eval task declares its ``generation_kwargs``, and checked on
creation. The ``eval`` command's flags are generated from its fields (:mod:`chartrvr_nb.settings`);
:meth:`EvalConfig.for_preset` evaluates as a training preset trains.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .presets import AUTHORS_TRAIN_PIXELS, SYSTEM_PROMPTS, Preset, as_preset
from .protocols import PROTOCOLS, Protocol
from .settings import positive_int_errors, setting

# Tokens generated per answer when not given, by prompt style: the authors' completion length (768) for
# the reasoning prompts, and enough for a short phrase for the direct prompt. The styles are
# ``prompts.PROMPT_STYLES``' names, written out here because settings import no scoring code (a test
# checks that the two agree).
DEFAULT_MAX_NEW_TOKENS = {"rvr": 768, "cot": 768, "direct": 64}


@dataclass(frozen=True)
class EvalConfig:
    """How a benchmark is evaluated (the way an lmms-eval task's ``generation_kwargs`` are declared):
    the protocol, greedy generation settings, which examples, and what else to report. Checked on creation.

    What is evaluated (the model, the adapter, the benchmark) and where the files go are the
    arguments of ``evaluate.run_evaluation`` beside it. A ``protocol`` other than ``project``
    (:mod:`chartrvr_nb.protocols`) decides some settings itself; setting one of those otherwise is
    refused, since the number would then no longer be comparable with what the protocol reproduces.

    Example:
        >>> EvalConfig(prompt="direct").tokens_per_answer
        64
        >>> config = EvalConfig(protocol="chart-rvr", prompt="direct")
        >>> config.tokens_per_answer, config.pixel_budget, config.system_prompt_choice
        (100, 376320, 'chart-rvr')
        >>> EvalConfig(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: Invalid evaluation settings: batch_size must be a positive integer, got 0.
    """

    protocol: str = setting(
        "project",
        "evaluation protocol: project (this project's) or chart-rvr (the Chart-RVR authors' evaluation at "
        "83c4406: their prompt, 376,320-pixel images, their answer reading, 5,000-example PlotQA and "
        "ChartBench samples; the paper's numbers are comparable only under it)",
        choices=PROTOCOLS,
    )
    batch_size: int = setting(8, "examples per generation batch")
    prompt: str = setting(
        "rvr", "prompt style: rvr (the trained format), cot or direct", choices=DEFAULT_MAX_NEW_TOKENS
    )
    max_new_tokens: int | None = setting(
        None,
        "tokens generated per answer (default: 768 for rvr and cot, 64 for direct; the chart-rvr protocol's "
        "768 and 100)",
    )
    max_pixels: int | None = setting(
        None,
        f"image pixel budget: images are resized to it, never cropped (default: {AUTHORS_TRAIN_PIXELS:,}, the "
        "authors' training budget; the chart-rvr protocol's 376,320)",
    )
    system_prompt: str | None = setting(
        None,
        "system prompt: chart-rvr (the authors' template 4; template 1 for --prompt direct) or project "
        "(default: the protocol's, else the one the evaluated run trained with, else chart-rvr, or project "
        "for the tiny models)",
        choices=SYSTEM_PROMPTS,
    )
    system_prompt_file: str | None = setting(
        None, "a local copy of the authors' prompts.py (commit 83c4406) for chart-rvr on a machine without internet"
    )
    limit: int | None = setting(None, "evaluate only the first N examples (of the protocol's sample, if it draws one)")
    seed: int = setting(2025, "seeds torch and the bootstrap")
    load_in_4bit: bool | None = setting(
        None,
        "load the base model in 4-bit NF4, as a QLoRA run (colab-t4) trains it (default: as the evaluated run "
        "trained, else off)",
    )
    compare_base: bool = setting(
        False,
        "also evaluate the base model (adapter disabled) on the same examples and report the difference "
        "with a paired-bootstrap 95% interval",
    )
    data_dir: str | os.PathLike | None = setting(
        None, "folder with the released files of plotqa / chartfc, or a local copy of a hub benchmark"
    )
    progress: bool = setting(True, "progress bars while generating")

    def __post_init__(self) -> None:
        errors = positive_int_errors(self, ("batch_size",))
        errors += positive_int_errors(self, ("max_new_tokens", "max_pixels", "limit"), optional=True)
        if self.protocol not in PROTOCOLS:
            errors.append(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.prompt not in DEFAULT_MAX_NEW_TOKENS:
            errors.append(f"prompt must be one of {', '.join(DEFAULT_MAX_NEW_TOKENS)}, got {self.prompt!r}")
        if self.system_prompt not in (None, *SYSTEM_PROMPTS):
            errors.append(f"system_prompt must be one of {', '.join(SYSTEM_PROMPTS)}, got {self.system_prompt!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            errors.append(f"seed must be an integer, got {self.seed!r}")
        if errors:
            raise ValueError("Invalid evaluation settings: " + "; ".join(errors) + ".")
        self._check_protocol()

    def _check_protocol(self) -> None:
        """Refuse a setting the protocol decides, set to another value (setting it to the same value is fine)."""
        fixed = dict(self.protocol_rules.fixes())
        if "max_new_tokens" in fixed:
            fixed["max_new_tokens"] = fixed["max_new_tokens"].get(self.prompt)
        clashes = [
            f"--{name.replace('_', '-')} {getattr(self, name)} (it uses {value})"
            for name, value in fixed.items()
            if getattr(self, name) is not None and getattr(self, name) != value
        ]
        if clashes:
            raise ValueError(
                f"The {self.protocol} protocol decides these settings itself: {'; '.join(clashes)}. Leave them out "
                "to evaluate as it does, or pass --protocol project to evaluate with your own settings."
            )

    @property
    def protocol_rules(self) -> Protocol:
        """The :class:`~chartrvr_nb.protocols.Protocol` named by ``protocol``."""
        return PROTOCOLS[self.protocol]

    @property
    def tokens_per_answer(self) -> int:
        """``max_new_tokens``, else the protocol's for the prompt style, else the style's default
        (:data:`DEFAULT_MAX_NEW_TOKENS`)."""
        return (
            self.max_new_tokens
            or self.protocol_rules.max_new_tokens.get(self.prompt)
            or DEFAULT_MAX_NEW_TOKENS[self.prompt]
        )

    @property
    def pixel_budget(self) -> int:
        """``max_pixels``, else the protocol's, else the authors' training budget (:data:`AUTHORS_TRAIN_PIXELS`)."""
        return self.max_pixels or self.protocol_rules.max_pixels or AUTHORS_TRAIN_PIXELS

    @property
    def system_prompt_choice(self) -> str | None:
        """``system_prompt``, else the protocol's; None leaves it to the evaluated run and the model."""
        return self.system_prompt or self.protocol_rules.system_prompt

    @classmethod
    def for_preset(cls, preset: Preset | str, **settings: Any) -> EvalConfig:
        """Settings that evaluate as ``preset`` trains: its completion length, pixel budget, 4-bit base and
        system prompt, except what the ``protocol`` among ``settings`` decides itself.

        Example:
            >>> config = EvalConfig.for_preset("smoke", limit=8)
            >>> config.max_new_tokens, config.max_pixels, config.limit, config.system_prompt
            (160, 50176, 8, 'project')
            >>> config = EvalConfig.for_preset("paper", protocol="chart-rvr")
            >>> config.tokens_per_answer, config.pixel_budget, config.system_prompt_choice
            (768, 376320, 'chart-rvr')
        """
        preset = as_preset(preset)
        trained_as = dict(
            max_new_tokens=preset.max_completion_length,
            max_pixels=preset.max_pixels,
            load_in_4bit=preset.load_in_4bit,
            system_prompt=preset.system_prompt,
            system_prompt_file=preset.system_prompt_file,
        )
        protocol = PROTOCOLS.get(settings.get("protocol", "project"))  # an unknown one is refused by cls below
        decided = protocol.fixes() if protocol is not None else {}
        trained_as = {name: value for name, value in trained_as.items() if name not in decided}
        return cls(**{**trained_as, **settings})
