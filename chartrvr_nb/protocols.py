"""Evaluation protocols, declared as data: what a benchmark's numbers are comparable with.

A protocol is everything about an evaluation that decides whether its number can stand beside a
published one, apart from the scoring rule (that is ``official`` or ``chart_rvr_code``, reported side
by side, :mod:`chartrvr_nb.official_scoring`): the system prompt, the image size, the user text, how
many tokens the model may write, how the answer is read from the reply, and which examples are asked.

``project`` is this project's evaluation: the prompt the evaluated run trained with, images fitted
down to the training budget, each benchmark's question as :mod:`chartrvr_nb.benchmarks` words it,
answers read as the accuracy reward reads them, every example. ``chart-rvr`` is what the Chart-RVR
authors' ``main.py --mode eval`` did at sanchit97/chartrl@83c4406, so that the ``chart_rvr_code``
figure stands beside the paper's table row for row. Where each of its values comes from:

==================  ==================================================================================
system prompt       template 4 with chain of thought, template 1 without (main.py 171; utils.py 48-51)
images              RGB, scaled up or down to 480*28*28 = 376,320 pixels (``resize_fit``, utils.py
                    410-424), then onto the 28-pixel grid by qwen-vl-utils 0.0.11 (utils.py 138)
user text           the dataset's question alone (``get_prompt_temp``, utils.py 230-254), with what each
                    loader adds (``Benchmark.chart_rvr_question``; dataset_process.py 251-267, 391, 438)
new tokens          768 with chain of thought, 100 without (utils.py 24)
decoding            the checkpoint's generation config, no sampling settings passed (utils.py 155)
answer              with chain of thought: the text after the last ``<answer>`` (the whole reply when
                    there is none), stripped, cut at the first ``</answer>``, stripped (utils.py 165-168);
                    without: the reply as decoded (``answers.chart_rvr_answer``)
examples            PlotQA and ChartBench: ``Dataset.shuffle(seed=2026).select(range(5000))`` over the
                    loader's examples (main.py 35, 133-134, 163); every example elsewhere
==================  ==================================================================================

A protocol names rules by key (the way a benchmark names its metric): ``answer`` is a key of
``generation.ANSWER_READERS``, ``question`` says which of an example's texts is asked, ``image_resize``
is one of ``presets.IMAGE_RESIZE_MODES`` as training uses them (``data.fit_to_pixel_budget``). A value
of None (or an empty table) leaves that setting to :class:`chartrvr_nb.eval_config.EvalConfig`.

Pure data: it imports no other module of the package (``eval_config`` builds on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# sanchit97/chartrl@83c4406: the evaluation image budget (utils.py 413) and the seed main.py sets and
# shuffles the sampled benchmarks with (main.py 35, 133, 163).
AUTHORS_EVAL_PIXELS = 480 * 28 * 28
AUTHORS_SAMPLE_SEED = 2026
AUTHORS_SAMPLE_SIZE = 5000
QUESTION_TEXTS = ("project", "chart-rvr")


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Attributes:
        name: the ``--protocol`` value.
        title: what it is, in a line (the results table and the docs name it).
        system_prompt: the system prompt choice it fixes (``chart-rvr``), or None: the run's prompt,
            else the model's default (``eval_inputs.evaluation_system_prompt``).
        max_pixels: the image budget it fixes, or None: ``EvalConfig.max_pixels``.
        image_resize: ``"project"``: images larger than the budget are shrunk to it; ``"chart-rvr"``:
            every image is scaled up or down to it, as the authors' ``resize_fit`` does.
        max_new_tokens: tokens per answer it fixes, by prompt style; empty: ``EvalConfig``'s.
        question: which text of an example is asked: ``"project"`` (``example["question"]``) or
            ``"chart-rvr"`` (``example["chart_rvr_question"]``, the authors' loaders' wording).
        answer: a key of ``generation.ANSWER_READERS``: how the scored answer is read from a reply.
        samples: benchmark name -> how many examples are drawn (with ``sample_seed``) instead of all.
        sample_seed: the seed of ``datasets.Dataset.shuffle`` for those draws.
        source: where its values come from (a repository at a commit), or None for this project's own.
    """

    name: str
    title: str
    system_prompt: str | None = None
    max_pixels: int | None = None
    image_resize: str = "project"
    max_new_tokens: Mapping[str, int] = field(default_factory=dict)
    question: str = "project"
    answer: str = "project"
    samples: Mapping[str, int] = field(default_factory=dict)
    sample_seed: int | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.question not in QUESTION_TEXTS:
            raise ValueError(f"{self.name}: question must be one of {QUESTION_TEXTS}, got {self.question!r}")
        if self.samples and self.sample_seed is None:
            raise ValueError(f"{self.name}: samples need a sample_seed")
        object.__setattr__(self, "max_new_tokens", MappingProxyType(dict(self.max_new_tokens)))
        object.__setattr__(self, "samples", MappingProxyType(dict(self.samples)))

    def fixes(self) -> dict[str, object]:
        """The ``EvalConfig`` settings this protocol decides (an ``EvalConfig`` that sets them otherwise is
        refused), with the value it gives them; ``max_new_tokens`` is a table by prompt style.

        Example:
            >>> sorted(PROTOCOLS["chart-rvr"].fixes())
            ['max_new_tokens', 'max_pixels', 'system_prompt']
            >>> PROTOCOLS["project"].fixes()
            {}
        """
        fixed = {"system_prompt": self.system_prompt, "max_pixels": self.max_pixels}
        fixed["max_new_tokens"] = dict(self.max_new_tokens) or None
        return {name: value for name, value in fixed.items() if value is not None}


PROTOCOLS: dict[str, Protocol] = {
    "project": Protocol(
        name="project",
        title="this project's evaluation (the run's prompt, images fitted to the training budget, every example)",
    ),
    "chart-rvr": Protocol(
        name="chart-rvr",
        title="the Chart-RVR authors' evaluation (their prompt, 376,320-pixel images, their answer reading, "
        "5,000-example samples)",
        system_prompt="chart-rvr",
        max_pixels=AUTHORS_EVAL_PIXELS,
        image_resize="chart-rvr",
        max_new_tokens={"rvr": 768, "cot": 768, "direct": 100},
        question="chart-rvr",
        answer="chart-rvr",
        samples={"plotqa": AUTHORS_SAMPLE_SIZE, "chartbench": AUTHORS_SAMPLE_SIZE},
        sample_seed=AUTHORS_SAMPLE_SEED,
        source="sanchit97/chartrl@83c4406 main.py --mode eval",
    ),
}


def get_protocol(name: str) -> Protocol:
    """A protocol by name, with the valid names in the error otherwise.

    Example:
        >>> get_protocol("chart-rvr").max_pixels
        376320
        >>> get_protocol("paper")
        Traceback (most recent call last):
        ...
        ValueError: Unknown protocol 'paper'; choose one of project, chart-rvr (--protocol).
    """
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)} (--protocol).")
    return PROTOCOLS[name]
