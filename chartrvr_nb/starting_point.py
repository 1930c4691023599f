"""The starting point a warm start leaves GRPO: its choices taught, then measured and judged on unseen charts.

The ``tiny-learn`` warm start teaches choices (:class:`chartrvr_nb.warm_start.Choice`): one token
where the option a reward pays for gets only a minority of the probability. The learn-check
means something only when, on charts the warm start never saw, greedy decoding takes the wrong
option of each choice (so the reward has room to rise) while sampling takes the right one often
enough that GRPO's groups of completions differ in that reward (so there is a signal to learn
from). :func:`measure_choices` reads both from one teacher-forced forward pass per chart;
:func:`starting_point_problems` says, in words, what a measured starting point lacks.

:func:`teach_choices` is the build's second phase: after the ideal answers (the format, and each
chart's own type) are learnt, it teaches the choices' odds, checking both phases on validation
charts, training further when a phase falls short and failing with the measurements when that
does not help. Taught on a model that cannot yet tell the chart types apart, the odds stay a
near tie between the three types whose greedy winner is rounding noise (measured: the first
build's winner moved with matplotlib's version). The learn-check checks the held-out charts'
starting point again before it trains (:mod:`chartrvr_nb.learncheck`).

torch is imported inside the functions that measure or train.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# After the odds, greedy decoding may take the right option on at most this share of a chart
# type's charts...
MAX_GREEDY_RIGHT = 0.1
# ...and sampling (temperature 1) must take it with at least this mean probability: with 4
# completions per prompt, 1 - (1 - 0.15) ** 4 = 48% of groups hold a right one at 0.15.
MIN_SAMPLED_RIGHT = 0.15
# Before the odds, each choice's right side must have at least this mean probability on each chart
# type's charts: a chart the model half confuses with the type before it in the swap would be
# taught mostly its own name (the other type's swap), and greedy decoding would start right.
MIN_LEARNT_RIGHT = 0.95
CHOICE_STEPS = 150  # optimizer steps teaching the odds (measured: 100 reach them on the first build)
EXTRA_ROUNDS = 2  # further rounds of a phase that falls short, before the build gives up
VALIDATION_CHARTS = 90
VALIDATION_SEED = 4321  # synthetic generator seed of the validation charts: not the learn-check's 10000
_BATCH = 16


def measure_choices(
    model, processor, rows: Sequence[Mapping[str, Any]], recipe, system_prompt: str | None = None
) -> list[dict[str, Any]]:
    """Each chart's odds at each choice the recipe teaches.

    Args:
        model / processor: a tiny Qwen2.5-VL and its processor.
        rows: synthetic rows (``query``, ``image`` fitted as evaluation fits it, ``chart_type``,
            ``table``, ``label``).
        recipe: the warm start's :class:`chartrvr_nb.warm_start.TinyRecipe`.
        system_prompt: the system message the charts are asked with (default this project's wording).

    Returns:
        One dict per row and choice: ``reward``, ``chart_type``, ``right`` (the probability of the
        right option at temperature 1), ``wrong`` (of the taught wrong one) and ``greedy_right``
        (the right option is the most probable token).
    """
    import torch

    from .warm_start import collate, encode_examples

    measured = []
    pad_id = processor.tokenizer.pad_token_id
    for start in range(0, len(rows), _BATCH):
        batch_rows = rows[start : start + _BATCH]
        examples = encode_examples(model, processor, list(batch_rows), recipe, system_prompt)
        batch = collate(examples, pad_id)
        for key in ("labels", "wrong_labels", "wrong_shares"):
            batch.pop(key)
        with torch.no_grad():
            hidden = model.model(**batch).last_hidden_state
        for index, (row, example) in enumerate(zip(batch_rows, examples)):
            for position, choice in example["choices"]:
                # The hidden state before a token predicts it.
                probabilities = torch.softmax(model.lm_head(hidden[index, position - 1]).float(), dim=-1)
                measured.append(
                    {
                        "reward": choice.reward,
                        "chart_type": row["chart_type"],
                        "right": probabilities[choice.right].item(),
                        "wrong": probabilities[choice.wrong].item(),
                        "greedy_right": int(probabilities.argmax()) == choice.right,
                    }
                )
    return measured


def summarize_choices(measured: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per choice (named by its reward) and chart type: charts, share greedy-right, mean probability
    sampled right and wrong; ``all`` pools the chart types.

    Example:
        >>> measured = [{"reward": "format", "chart_type": t, "right": r, "wrong": 1 - r, "greedy_right": r > 0.5}
        ...             for t, r in [("bar", 0.2), ("bar", 0.6), ("pie", 0.3)]]
        >>> summary = summarize_choices(measured)["format"]
        >>> summary["bar"]
        {'charts': 2, 'greedy_right': 0.5, 'sampled_right': 0.4, 'sampled_wrong': 0.6}
        >>> summary["all"]["charts"], summary["all"]["greedy_right"]
        (3, 0.333)
    """
    groups: dict[str, dict[str, list]] = {}
    for item in measured:
        by_type = groups.setdefault(item["reward"], {"all": []})
        by_type["all"].append(item)
        by_type.setdefault(item["chart_type"], []).append(item)
    return {
        reward: {
            chart_type: {
                "charts": len(items),
                "greedy_right": round(sum(item["greedy_right"] for item in items) / len(items), 3),
                "sampled_right": round(sum(item["right"] for item in items) / len(items), 3),
                "sampled_wrong": round(sum(item["wrong"] for item in items) / len(items), 3),
            }
            for chart_type, items in by_type.items()
        }
        for reward, by_type in groups.items()
    }


def starting_point_problems(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """What a starting point lacks for GRPO to show learning, one sentence per choice and chart type;
    empty when greedy decoding takes each choice's wrong option and sampling finds the right one.

    Example:
        >>> ok = {"charts": 30, "greedy_right": 0.0, "sampled_right": 0.3, "sampled_wrong": 0.7}
        >>> starting_point_problems({"chart_type": {"all": ok, "bar": ok}})
        []
        >>> line = {"charts": 30, "greedy_right": 0.9, "sampled_right": 0.5, "sampled_wrong": 0.4}
        >>> pie = {"charts": 30, "greedy_right": 0.0, "sampled_right": 0.02, "sampled_wrong": 0.9}
        >>> for problem in starting_point_problems({"chart_type": {"line": line, "pie": pie}}):
        ...     print(problem)
        chart_type on line charts: greedy decoding is already right on 90% of 30 charts (at most 10%): no room to learn.
        chart_type on pie charts: sampling is right with probability 0.02 (at least 0.15): no signal to learn from.
    """
    problems = []
    for reward, by_type in summary.items():
        for chart_type, row in by_type.items():
            if chart_type == "all":
                continue
            where = f"{reward} on {chart_type} charts"
            if row["greedy_right"] > MAX_GREEDY_RIGHT:
                problems.append(
                    f"{where}: greedy decoding is already right on {row['greedy_right']:.0%} of {row['charts']} "
                    f"charts (at most {MAX_GREEDY_RIGHT:.0%}): no room to learn."
                )
            if row["sampled_right"] < MIN_SAMPLED_RIGHT:
                problems.append(
                    f"{where}: sampling is right with probability {row['sampled_right']:.2f} (at least "
                    f"{MIN_SAMPLED_RIGHT:.2f}): no signal to learn from."
                )
    return problems


def learnt_problems(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """What the first phase (the ideal answers) has not learnt: each choice's right side needs a mean
    probability of at least :data:`MIN_LEARNT_RIGHT` on each chart type's charts.

    Example:
        >>> told = {"charts": 30, "greedy_right": 1.0, "sampled_right": 0.98, "sampled_wrong": 0.01}
        >>> confused = {"charts": 30, "greedy_right": 0.97, "sampled_right": 0.86, "sampled_wrong": 0.03}
        >>> print(*learnt_problems({"chart_type": {"all": told, "bar": confused, "line": told}}))
        chart_type on bar charts: the right side has probability 0.86 after the ideal answers (at least 0.95).
    """
    return [
        f"{reward} on {chart_type} charts: the right side has probability {row['sampled_right']:.2f} after the "
        f"ideal answers (at least {MIN_LEARNT_RIGHT:.2f})."
        for reward, by_type in summary.items()
        for chart_type, row in by_type.items()
        if chart_type != "all" and row["sampled_right"] < MIN_LEARNT_RIGHT
    ]


def format_starting_point(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """One line per choice: greedy-right share and sampled-right probability, per chart type.

    Example:
        >>> row = {"charts": 30, "greedy_right": 0.0, "sampled_right": 0.312, "sampled_wrong": 0.65}
        >>> print(format_starting_point({"chart_type": {"all": row, "bar": row}}))
        chart_type: greedy right 0% (bar 0%), sampled right 0.31 (bar 0.31) on 30 charts
    """
    lines = []
    for reward, by_type in summary.items():
        types = [name for name in by_type if name != "all"]
        pooled = by_type.get("all") or by_type[types[0]]
        greedy = ", ".join(f"{name} {by_type[name]['greedy_right']:.0%}" for name in types)
        sampled = ", ".join(f"{name} {by_type[name]['sampled_right']:.2f}" for name in types)
        lines.append(
            f"{reward}: greedy right {pooled['greedy_right']:.0%} ({greedy}), sampled right "
            f"{pooled['sampled_right']:.2f} ({sampled}) on {pooled['charts']} charts"
        )
    return "\n".join(lines)


def validation_charts(recipe, max_pixels: int) -> list[dict]:
    """The charts a build checks its starting point on: :data:`VALIDATION_CHARTS` synthetic rows of
    the recipe's chart types, drawn at 320x240 px and fitted to ``max_pixels`` as evaluation fits them."""
    from .data import fit_to_pixel_budget, make_synthetic_rows

    rows = make_synthetic_rows(VALIDATION_CHARTS, seed=VALIDATION_SEED, chart_types=recipe.chart_types)
    for row in rows:
        row["image"] = fit_to_pixel_budget(row["image"], max_pixels)
    return rows


def teach_choices(model, processor, examples: list[dict], validation: list[dict], recipe, seed: int) -> dict:
    """The build's second phase: teach the recipe's choices their odds, checked on validation charts.

    First the ideal answers must have been learnt (:func:`learnt_problems`; up to
    :data:`EXTRA_ROUNDS` further rounds of them otherwise), then :data:`CHOICE_STEPS` steps teach
    the odds until the starting point has no problem (:func:`starting_point_problems`; again up to
    :data:`EXTRA_ROUNDS` further rounds).

    Args:
        model / processor: the tiny model after its first phase (:func:`chartrvr_nb.warm_start.warm_start`).
        examples: its warm-start examples (:func:`chartrvr_nb.warm_start.encode_examples`).
        validation: charts it never trained on (:func:`validation_charts`).
        recipe: its :class:`chartrvr_nb.warm_start.TinyRecipe`.
        seed: the batch-sampling seed (each round adds to it).

    Returns:
        ``{"validation_charts", "learnt", "starting_point", "rounds"}``: the measured summaries
        (:func:`summarize_choices`) after each phase, and each round's training figures.

    Raises:
        RuntimeError: a phase still falls short after its extra rounds; the message holds what was measured.
    """
    from .warm_start import WARM_START_STEPS, warm_start

    pad_id = processor.tokenizer.pad_token_id
    rounds: list[dict] = []
    for attempt in range(EXTRA_ROUNDS + 1):
        learnt = summarize_choices(measure_choices(model, processor, validation, recipe))
        problems = learnt_problems(learnt)
        if not problems:
            break
        if attempt == EXTRA_ROUNDS:
            raise RuntimeError(_failure("did not learn the ideal answers", problems, learnt, rounds))
        # Each round draws its own batches (its own seed).
        extra = warm_start(model, examples, pad_id, seed + 1 + len(rounds), WARM_START_STEPS // 2)
        rounds.append({"phase": "ideal", **extra})
    for _ in range(EXTRA_ROUNDS + 1):
        taught = warm_start(model, examples, pad_id, seed + 1 + len(rounds), CHOICE_STEPS, with_choices=True)
        rounds.append({"phase": "odds", **taught})
        start = summarize_choices(measure_choices(model, processor, validation, recipe))
        problems = starting_point_problems(start)
        if not problems:
            break
    else:
        raise RuntimeError(_failure("left GRPO nothing to learn", problems, start, rounds))
    return {"validation_charts": len(validation), "learnt": learnt, "starting_point": start, "rounds": rounds}


def _failure(what: str, problems: list[str], summary: Mapping[str, Any], rounds: list[dict]) -> str:
    """The build's error: what fell short, what was measured, on which stack, and what to do."""
    from importlib.metadata import version

    stack = ", ".join(f"{name} {version(name)}" for name in ("torch", "transformers", "matplotlib"))
    measured = format_starting_point(summary).replace("\n", "; ")
    return (
        f"The tiny-learn warm start {what} after {len(rounds)} training round(s) past the first phase, measured on "
        f"{VALIDATION_CHARTS} validation charts ({stack}): {' '.join(problems)} Measured: {measured}. The learn-check "
        "cannot test learning from this model; please report this message. A build on other library versions "
        "(the locked ones: scripts/setup.sh) may pass."
    )
