"""The evaluation benchmarks, declared as data.

A benchmark is one :class:`Benchmark` entry in :data:`BENCHMARKS`: where its rows live (a hub
dataset, released files in a local folder, or the synthetic generator), which fields hold the
question, answer and image, how the question is shown to the model, which metric scores it,
and the paper's numbers to compare with. Adding a benchmark means adding one entry (and, when
its rows are not one question each, one small ``*_examples`` function); the runner in
:mod:`chartrvr_nb.evaluate` never names a benchmark.

Every row becomes one or more *examples*: plain dicts with ``id``, ``question`` (the text shown to
the model), ``chart_rvr_question`` (the text the Chart-RVR authors' loader showed instead, asked
under ``--protocol chart-rvr``: :mod:`chartrvr_nb.protocols`), ``answer``, ``image`` (a PIL image,
encoded bytes, an image dict or a file path, decoded only when generating), ``subset`` (or None),
``metric`` and ``meta`` (what the metric and the aggregations need, e.g. ChartQAPro's question type
and year flags, ChartBench's pairs).

A benchmark names its project metric and aggregations by key (:mod:`chartrvr_nb.metrics`: the
metric is the rule the accuracy reward trains on). Beside them each benchmark declares the rules
that make its numbers comparable with published tables (:mod:`chartrvr_nb.official_scoring`):
``official``, its own evaluation code's scorer, and ``chart_rvr_tolerance``, the tolerance the
Chart-RVR authors' code scored it with.

Pure Python: nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .metrics import AGGREGATIONS, METRICS
from .official_scoring import OFFICIAL_SCORERS

QWEN_DIRECT = "Qwen2.5-VL-3B (direct)"
CHART_RVR = "Chart-RVR-3B"
# Training-schema fields a row may carry beside its answer; examples keep them in ``meta`` so
# evaluation can score every reward, not only the answer (see ``eval_rewards.reward_summary``).
GROUND_TRUTH_FIELDS = ("chart_type", "table", "reasoning")


# --------------------------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    """One evaluation benchmark, as data.

    Where the rows come from, in order of precedence: a local ``data_dir`` (always allowed; a
    copy of the hub dataset, or the released files); ``source`` as a hub dataset id, loaded with
    ``datasets.load_dataset(source, config, split=split)``; ``source == "synthetic"``, the
    generator. Benchmarks with ``release_files`` are read from released JSON files plus an image
    folder (searched for under ``data_dir``, or under a snapshot of the ``source`` hub repo).

    Attributes:
        name: the ``--dataset-name``.
        title: how tables and plots name it.
        source: hub dataset id, ``"release"`` (local files only) or ``"synthetic"``
            (``"synthetic:bar,pie"``: only those chart types).
        split, config: the hub split and configuration.
        question_field, answer_field, image_field, id_field: the row fields (a list answer
            counts its first item).
        subset_field, subset_names: the field that splits results into subsets, and display
            names for its values (ChartQA's 0/1 are "human"/"augmented").
        question_template: how the question is shown; ``{question}`` is the row's question, stripped.
        chart_rvr_question: how the Chart-RVR authors' loader showed it (sanchit97/chartrl@83c4406
            dataset_process.py and utils.get_prompt_temp, which adds nothing); ``{question}`` is the
            row's question field as it is (ChartQAPro's list of turns included, as their text was).
        metric: a key of :data:`METRICS`.
        aggregations: keys of :data:`AGGREGATIONS` reported beside the plain accuracy.
        headline: the summary key of the project metric's main number (``"accuracy"`` or an aggregation).
        official: a key of ``official_scoring.OFFICIAL_SCORERS``: the benchmark's own evaluation
            code's rule, reported as ``summary["official"]`` (its leaderboard's number).
        chart_rvr_tolerance: the relative tolerance the Chart-RVR authors' code scored this
            benchmark with (``summary["chart_rvr_code"]``, the number beside the paper's).
        paper: the paper's numbers for this benchmark, by model (percent).
        release_files: file names of the released question file (first found wins).
        records_key: key of the list of questions inside the released file (PlotQA: ``qa_pairs``).
        image_dirs: folders the images are in, relative to the question file or ``data_dir``.
        image_name: how a row's image field becomes a file name (PlotQA: ``"{}.png"``).
        image_archive: a zip in the dataset repo that holds the images (ChartBench).
        answer_names: gold answers given as codes, and their text (ChartFC: 1 -> "Yes").
        meta_fields: row fields copied into ``meta`` for the official scorer (EvoChart: ``is_clear``).
        to_examples: ``(benchmark, row, index) -> [example, ...]`` when one row is not one
            question; the default reads the fields above.
        synthetic_seed, synthetic_rows: the held-out generator seed and default size.
    """

    name: str
    title: str
    source: str
    split: str = "test"
    config: str | None = None
    question_field: str = "query"
    answer_field: str = "label"
    image_field: str = "image"
    id_field: str | None = None
    subset_field: str | None = None
    subset_names: Mapping[Any, str] = field(default_factory=dict)
    question_template: str = "{question}"
    chart_rvr_question: str = "{question}"
    metric: str = "relaxed"
    aggregations: tuple[str, ...] = ()
    headline: str = "accuracy"
    official: str = "pix2struct"
    chart_rvr_tolerance: float = 0.05
    paper: Mapping[str, float] = field(default_factory=dict)
    release_files: tuple[str, ...] = ()
    records_key: str | None = None
    image_dirs: tuple[str, ...] = ()
    image_name: str = "{}"
    image_archive: str | None = None
    answer_names: Mapping[Any, str] = field(default_factory=dict)
    meta_fields: tuple[str, ...] = ()
    to_examples: Callable[[Benchmark, Mapping[str, Any], int], list[dict[str, Any]]] | None = None
    synthetic_seed: int = 10_000
    synthetic_rows: int = 200

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"{self.name}: unknown metric {self.metric!r}; choose one of {sorted(METRICS)}.")
        if self.official not in OFFICIAL_SCORERS:
            raise ValueError(
                f"{self.name}: unknown official scorer {self.official!r}; choose one of {sorted(OFFICIAL_SCORERS)}."
            )
        unknown = sorted(set(self.aggregations) - set(AGGREGATIONS))
        if unknown:
            raise ValueError(f"{self.name}: unknown aggregations {unknown}; choose from {sorted(AGGREGATIONS)}.")

    def examples(self, row: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        """The examples of one row (most rows hold one question; ChartBench rows hold two)."""
        if self.to_examples is not None:
            return self.to_examples(self, row, index)
        return [field_example(self, row, index)]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) and value else value


def field_example(benchmark: Benchmark, row: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The example of a one-question row, read through the benchmark's field names.

    Example:
        >>> bench = Benchmark("demo", "Demo", "release", subset_field="kind",
        ...                   question_template="{question} Answer yes or no.", answer_names={1: "Yes"})
        >>> example = field_example(bench, {"query": "Is A > B?", "label": [1], "image": "a.png",
        ...                                 "kind": "compare"}, 7)
        >>> example["id"], example["question"], example["answer"], example["subset"], example["meta"]["labels"]
        ('7', 'Is A > B? Answer yes or no.', 'Yes', 'compare', ['Yes'])
        >>> example["chart_rvr_question"]
        'Is A > B?'

        >>> field_example(bench, {"query": "q", "label": "Yes ", "image": "a.png"}, 8)["meta"]["labels"]
        ['Yes ']
    """
    labels = row[benchmark.answer_field]
    answer = _first(labels)
    answer = benchmark.answer_names.get(answer, answer)
    meta = {name: row[name] for name in GROUND_TRUTH_FIELDS if row.get(name) is not None}
    meta.update({name: row.get(name) for name in benchmark.meta_fields})
    # Every gold label as the dataset gives it, unstripped: the official scorers take the best of several
    # and compare them unstripped (official_scoring.score_pix2struct); `answer` is the first, stripped.
    raw_labels = labels if isinstance(labels, (list, tuple)) and labels else [labels]
    meta["labels"] = [str(benchmark.answer_names.get(label, label)) for label in raw_labels]
    subset = None
    if benchmark.subset_field is not None and row.get(benchmark.subset_field) is not None:
        value = row[benchmark.subset_field]
        subset = benchmark.subset_names.get(value, str(value))
    identifier = row.get(benchmark.id_field) if benchmark.id_field else None
    return {
        "id": str(index if identifier is None else identifier),
        "question": benchmark.question_template.format(question=str(row[benchmark.question_field]).strip()),
        "chart_rvr_question": benchmark.chart_rvr_question.format(question=row[benchmark.question_field]),
        "answer": str(answer).strip(),
        "image": row[benchmark.image_field],
        "subset": subset,
        "metric": benchmark.metric,
        "meta": meta,
    }


def chartqapro_examples(benchmark: Benchmark, row: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    """One ChartQAPro row: the last question is asked, earlier turns of a conversation are context.

    ``Question``/``Answer``/``Year`` are lists (several turns for Conversational rows);
    ``Paragraph`` is optional context text. Only the last answer is scored, as ChartQAPro's script
    does, with the last year flag for conversations. ``meta["answers"]`` keeps every turn's answer
    as the dataset gives it: the official scorer reads the last unstripped, the Chart-RVR
    authors' code scored the first. Their loader asked the ``Question`` field as it is, a list of
    turns written out as a Python list (dataset_process.py 438 and ``"{question}".format`` in
    utils.py 243-245), with no paragraph.

    Example:
        >>> row = {"Question": ["Which year is highest?", "By how much?"], "Answer": ["2019", "4"],
        ...        "Question Type": "Conversational", "Year": ["YES", "NO"], "Paragraph": "",
        ...        "image": b"..."}
        >>> example = chartqapro_examples(BENCHMARKS["chartqapro"], row, 3)[0]
        >>> print(example["question"])
        Earlier question: Which year is highest?
        Earlier answer: 2019
        Question: By how much?
        >>> example["answer"], example["subset"], example["meta"]["year_flags"], example["meta"]["answers"]
        ('4', 'Conversational', ['NO'], ['2019', '4'])
        >>> example["chart_rvr_question"]
        "['Which year is highest?', 'By how much?']"
    """
    questions = row["Question"] if isinstance(row["Question"], (list, tuple)) else [row["Question"]]
    answers = row["Answer"] if isinstance(row["Answer"], (list, tuple)) else [row["Answer"]]
    question_type = row.get("Question Type") or ""
    year_flags = list(row.get("Year") or [])
    if question_type == "Conversational":
        lines = []
        for turn, question in enumerate(questions[:-1]):
            lines.append(f"Earlier question: {str(question).strip()}")
            if turn < len(answers):
                lines.append(f"Earlier answer: {str(answers[turn]).strip()}")
        lines.append(f"Question: {str(questions[-1]).strip()}")
        text = "\n".join(lines) if len(questions) > 1 else str(questions[-1]).strip()
        year_flags = year_flags[-1:]
    else:
        text = str(questions[-1]).strip()
    paragraph = str(row.get("Paragraph") or "").strip()
    if paragraph:
        text = f"Context: {paragraph}\n\n{text}"
    return [
        {
            "id": str(row.get("id", index)),
            "question": benchmark.question_template.format(question=text),
            "chart_rvr_question": benchmark.chart_rvr_question.format(question=row["Question"]),
            "answer": str(answers[-1]).strip(),
            "image": row[benchmark.image_field],
            "subset": question_type or None,
            "metric": benchmark.metric,
            "meta": {"question_type": question_type, "year_flags": year_flags, "answers": [str(a) for a in answers]},
        }
    ]


CHARTBENCH_YES_NO = "Is this statement about the chart correct? {question} Answer yes or no."


def chartbench_examples(benchmark: Benchmark, row: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    """One ChartBench row: an ``Acc+`` pair of yes/no assertions, or one numeric question.

    ``type`` holds ``chart``, ``image`` (the fine chart type), ``task`` and ``QA`` (``"Acc+"`` or
    ``"GPT-acc"``); ``conversation`` holds ``{"query", "label"}`` turns. Both assertions of a pair
    share ``meta["pair"]`` (with ``meta["turn"]``) so :func:`chartrvr_nb.metrics.acc_plus` can score the chart;
    numeric questions use relaxed accuracy and keep every label in ``meta["labels"]``. The Chart-RVR
    authors' loader asked every turn the same way, the query stripped and an instruction appended
    (dataset_process.py 246-270), and made the same examples in the same order wherever a two-turn
    conversation is an ``Acc+`` pair.

    Example:
        >>> row = {"id": 5, "image": "./data/test/bar/c5/image.png",
        ...        "type": {"chart": "bar", "QA": "Acc+"},
        ...        "conversation": [{"query": "A is 3.", "label": "Yes"}, {"query": "A is 4.", "label": "No"}]}
        >>> [(e["id"], e["answer"], e["metric"], e["meta"]["pair"])
        ...  for e in chartbench_examples(BENCHMARKS["chartbench"], row, 0)]
        [('5-0', 'Yes', 'yes_no', '5'), ('5-1', 'No', 'yes_no', '5')]
    """
    kinds = row.get("type") or {}
    conversation = list(row.get("conversation") or [])
    chart_id = str(row.get("id", index))
    paired = kinds.get("QA") == "Acc+" and len(conversation) == 2
    # what ChartBench's own script groups and scores by (official_scoring.score_chartbench)
    kind_meta = {"qa": kinds.get("QA"), "image_type": kinds.get("image"), "task": kinds.get("task") or None}
    examples = []
    for turn, message in enumerate(conversation if paired else conversation[:1]):
        template = CHARTBENCH_YES_NO if paired else benchmark.question_template
        labels = message["label"] if isinstance(message["label"], (list, tuple)) else [message["label"]]
        extra = {"pair": chart_id, "turn": turn} if paired else {"labels": [str(label) for label in labels]}
        examples.append(
            {
                "id": f"{chart_id}-{turn}",
                "question": template.format(question=str(message["query"]).strip()),
                "chart_rvr_question": benchmark.chart_rvr_question.format(question=str(message["query"]).strip()),
                "answer": str(_first(message["label"])).strip(),
                "image": row[benchmark.image_field],
                "subset": kinds.get("chart"),
                "metric": "yes_no" if paired else "relaxed",
                "meta": {**kind_meta, **extra},
            }
        )
    return examples


BENCHMARKS: dict[str, Benchmark] = {
    "chartqa": Benchmark(
        name="chartqa",
        title="ChartQA",
        source="HuggingFaceM4/ChartQA",
        split="test",
        question_field="query",
        answer_field="label",
        subset_field="human_or_machine",
        subset_names={0: "human", 1: "augmented"},
        aggregations=("subsets", "subset_mean"),
        headline="subset_mean",
        paper={QWEN_DIRECT: 82.0, CHART_RVR: 84.56},
    ),
    "plotqa": Benchmark(
        name="plotqa",
        title="PlotQA",
        source="release",
        question_field="question_string",
        answer_field="answer",
        image_field="image_index",
        id_field="question_id",
        subset_field="type",
        aggregations=("subsets",),
        paper={QWEN_DIRECT: 80.5, CHART_RVR: 78.68},
        release_files=("qa_pairs_V2.json", "qa_pairs_V1.json", "plotqa-qa-test.json"),  # the last: the authors' name
        records_key="qa_pairs",
        image_dirs=("png",),
        image_name="{}.png",
    ),
    "chartfc": Benchmark(
        name="chartfc",
        title="ChartFC",
        source="release",
        question_field="question",
        answer_field="answer",
        image_field="image_filename",
        id_field="qid",
        question_template="Claim: {question}\nDoes the chart support this claim? Answer yes or no.",
        chart_rvr_question="{question}. Answer yes/no.",  # dataset_process.py 391 at 83c4406
        metric="yes_no",
        official="project",
        paper={QWEN_DIRECT: 74.4, CHART_RVR: 77.62},
        release_files=("test_barplot_seaborn_diverse_charts.json",),
        image_dirs=("images", "charts_seaborn_v5", "../images"),
        answer_names={1: "Yes", 0: "No", "1": "Yes", "0": "No", "supports": "Yes", "refutes": "No"},
    ),
    "evochart": Benchmark(
        name="evochart",
        title="EvoChart-QA",
        source="MuyeHuang/EvoChart-QA-Benchmark",
        question_field="query",
        answer_field="label",
        image_field="imgname",
        official="evochart",
        meta_fields=("is_clear",),
        paper={QWEN_DIRECT: 48.72, CHART_RVR: 53.36},
        release_files=("EvoChart-QA.json",),
        image_dirs=("png", "images"),
    ),
    "chartqapro": Benchmark(
        name="chartqapro",
        title="ChartQAPro",
        source="ahmed-masry/ChartQAPro",
        split="test",
        question_field="Question",
        answer_field="Answer",
        subset_field="Question Type",
        metric="chartqapro",
        aggregations=("subsets",),
        official="chartqapro",
        chart_rvr_tolerance=1.0,  # chartrl's eval passed `True` as the tolerance for ChartQAPro
        paper={QWEN_DIRECT: 25.7, CHART_RVR: 28.38},
        to_examples=chartqapro_examples,
    ),
    "chartbench": Benchmark(
        name="chartbench",
        title="ChartBench",
        source="SincereX/ChartBench",
        config="chart_bench",
        split="test_data",
        question_field="conversation",
        answer_field="conversation",
        aggregations=("acc_plus", "subsets"),
        chart_rvr_question="{question} For binary questions, answer in yes/no.",  # dataset_process.py 251
        official="chartbench",
        paper={CHART_RVR: 68.32},
        image_archive="data/test.zip",
        to_examples=chartbench_examples,
    ),
    "synthetic": Benchmark(
        name="synthetic",
        title="Synthetic (held-out seeds)",
        source="synthetic",
        question_field="query",
        answer_field="label",
        subset_field="chart_type",
        aggregations=("subsets",),
        official="project",
    ),
    # The learn-check's held-out charts: the chart types whose names the tiny-learn warm start swaps.
    "learn-check": Benchmark(
        name="learn-check",
        title="Learn-check (held-out synthetic charts)",
        source="synthetic:bar,line,pie",
        question_field="query",
        answer_field="label",
        subset_field="chart_type",
        aggregations=("subsets",),
        official="project",
    ),
}


def get_benchmark(name: str) -> Benchmark:
    """The declaration of a benchmark by name, with the valid names in the error otherwise.

    Example:
        >>> get_benchmark("chartqa").source
        'HuggingFaceM4/ChartQA'
        >>> get_benchmark("chart-qa")
        Traceback (most recent call last):
        ...
        ValueError: Unknown benchmark 'chart-qa'; choose one of ['chartbench', 'chartfc', ...
    """
    if name not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)} (--dataset-name).")
    return BENCHMARKS[name]
