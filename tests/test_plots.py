"""Reward curves from a realistic run log: a crash, a resume that re-logs steps, a summary line."""

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from chartrvr_nb.plots import plot_example, plot_reward_curves, plot_reward_histograms, reward_names
from chartrvr_nb.runfiles import load_metrics, load_samples

REWARDS = ("format", "count", "accuracy", "length", "chart_type", "table_style", "process")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _record(step: int, rng: random.Random, offset: float = 0.0) -> dict:
    """One logging event with the keys TRL 1.16's GRPOTrainer logs for our seven rewards."""
    record = {
        "step": step,
        "epoch": step / 40,
        "loss": rng.uniform(-0.1, 0.1),
        "grad_norm": rng.uniform(0, 2),
        "learning_rate": 1e-5,
    }
    total = 0.0
    for name in REWARDS:
        mean = min(2.0, step / 20) * rng.uniform(0.3, 1.0) + offset
        record[f"rewards/{name}_reward/mean"] = mean
        record[f"rewards/{name}_reward/std"] = rng.uniform(0, 0.5)
        total += mean
    record.update(
        {
            "reward": total,
            "reward_std": rng.uniform(0, 1),
            "frac_reward_zero_std": rng.uniform(0, 1),
            "completions/mean_length": rng.uniform(100, 300),
            "completions/min_length": 50.0,
            "completions/max_length": 768.0,
            "num_tokens": 1000.0 * step,
        }
    )
    return record


@pytest.fixture
def resumed_run(tmp_path):
    """Steps 1-30, a crash that cuts the last line, a resume from checkpoint-25 re-logging 26-40, a summary."""
    rng = random.Random(0)
    lines = [json.dumps(_record(step, rng)) for step in range(1, 31)]
    lines.append(json.dumps(_record(31, rng))[:57])  # the write the crash interrupted
    lines += [json.dumps(_record(step, rng, offset=0.5)) for step in range(26, 41)]
    lines.append(json.dumps({"step": 40, "epoch": 1.0, "train_runtime": 3600.0, "train_loss": 0.01}))
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")

    blocks = [
        (4, "first run"),
        (28, "first run"),
        (28, "first run"),
        (30, "first run"),
        (28, "resumed"),
        (32, "resumed"),
    ]
    samples = [
        {"step": step, "prompt": "Q?", "completion": completion, "label": "1", "rewards": {"format": 2.0}}
        for step, completion in blocks
    ]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return tmp_path


def test_load_metrics_keeps_one_record_per_step_the_latest(resumed_run):
    with pytest.warns(UserWarning, match="Skipped 1 unreadable line"):
        records = load_metrics(resumed_run)
    assert [r["step"] for r in records] == list(range(1, 41))
    first_run = {
        json.loads(line)["step"]: json.loads(line)
        for line in (resumed_run / "metrics.jsonl").read_text().splitlines()[:30]
    }
    assert records[27]["reward"] != first_run[28]["reward"]  # step 28 comes from the resumed run
    assert records[-1]["train_runtime"] == 3600.0 and "reward" in records[-1]  # summary merged, not replacing
    assert reward_names(records) == [f"{name}_reward" for name in REWARDS]


@pytest.mark.filterwarnings("ignore:Skipped 1 unreadable line")
def test_reward_curves_render_one_point_per_step(resumed_run, tmp_path):
    figure = plot_reward_curves(load_metrics(resumed_run), smooth=1, run_name=resumed_run.name)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    titles = [ax.get_title() for ax in visible]
    assert titles[0] == "Total reward"
    assert titles[1:8] == [
        "Format reward",
        "Count reward",
        "Accuracy reward",
        "Length reward",
        "Chart type reward",
        "Table style reward",
        "Process reward",
    ]
    assert titles[8:] == ["Completion length", "Groups with identical rewards"]
    for ax in visible:
        assert ax.get_xlabel() == "optimizer step" and ax.get_ylabel()
        (mean_line,) = ax.lines
        assert list(mean_line.get_xdata()) == list(range(1, 41))
    assert figure.get_suptitle() == f"GRPO training: {resumed_run.name} (to step 40)"

    png = tmp_path / "curves.png"
    figure.savefig(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


@pytest.mark.filterwarnings("ignore:Skipped 1 unreadable line")
def test_smoothing_keeps_the_raw_curve_and_the_std_band(resumed_run):
    figure = plot_reward_curves(
        load_metrics(resumed_run / "metrics.jsonl"), rewards=["format", "accuracy_reward"], smooth=5
    )
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles[:3] == ["Total reward", "Format reward", "Accuracy reward"]
    format_ax = figure.axes[1]
    raw, smoothed = format_ax.lines
    assert list(raw.get_xdata()) == list(smoothed.get_xdata()) == list(range(1, 41))
    assert not math.isclose(raw.get_ydata()[-1], smoothed.get_ydata()[-1])
    assert format_ax.collections, "the +-std band is drawn"


def test_std_bands_stay_within_the_scores_a_reward_can_give():
    """A 0/1 reward with mean 0.1 and std 0.3 has no score at -0.2; the cosine-similarity process reward
    can go down to -1, no further; the total can be as low as the sum of the lowest scores (-1)."""
    records = [
        {
            "step": step,
            "reward": 0.2,
            "reward_std": 1.5,
            "rewards/accuracy_reward/mean": 0.1,
            "rewards/accuracy_reward/std": 0.3,
            "rewards/format_reward/mean": 1.9,
            "rewards/format_reward/std": 0.5,
            "rewards/process_reward/mean": -0.5,
            "rewards/process_reward/std": 0.9,
        }
        for step in range(1, 6)
    ]
    figure = plot_reward_curves(records, smooth=1)
    bands = {}
    for ax in figure.axes[:4]:
        heights = ax.collections[0].get_paths()[0].vertices[:, 1]
        bands[ax.get_title()] = (round(float(heights.min()), 6), round(float(heights.max()), 6))
    assert bands == {
        "Total reward": (-1.0, 1.7),
        "Accuracy reward": (0.0, 0.4),
        "Format reward": (1.4, 2.0),
        "Process reward": (-1.0, 0.4),
    }


@pytest.mark.filterwarnings("ignore:Skipped 1 unreadable line")
def test_unknown_reward_names_the_logged_ones(resumed_run):
    with pytest.raises(ValueError, match="No reward named 'fluency'.*format_reward"):
        plot_reward_curves(load_metrics(resumed_run), rewards=["fluency"])


def test_a_log_without_rewards_or_a_missing_file_says_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="Pass the training run directory"):
        load_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.5}) + "\n")
    with pytest.raises(ValueError, match="No reward metrics"):
        plot_reward_curves(load_metrics(tmp_path))


def test_load_samples_keeps_the_latest_block_of_a_relogged_step(resumed_run):
    rows = load_samples(resumed_run)
    assert [(row["step"], row["completion"]) for row in rows] == [
        (4, "first run"),
        (28, "resumed"),
        (30, "first run"),
        (32, "resumed"),
    ]


def test_load_samples_uses_the_run_id_when_a_resume_relogs_the_last_step(tmp_path):
    rows = [
        {"step": 8, "run": "a", "completion": "old"},
        {"step": 8, "run": "a", "completion": "old"},
        {"step": 8, "run": "b", "completion": "new"},
    ]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [row["completion"] for row in load_samples(tmp_path)] == ["new"]


def test_plots_render_headless_without_pyplot(resumed_run, tmp_path):
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from chartrvr_nb.plots import plot_reward_curves\n"
        "from chartrvr_nb.runfiles import load_metrics\n"
        f"plot_reward_curves(load_metrics({str(resumed_run)!r})).savefig({str(tmp_path / 'headless.png')!r})\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    env = {"PATH": "", "HOME": str(tmp_path), "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert (tmp_path / "headless.png").stat().st_size > 0


def test_plot_example_labels_the_chart():
    from chartrvr_nb.data import make_synthetic_rows

    row = make_synthetic_rows(2, seed=0, max_pixels=112 * 112)[1]
    figure = plot_example(row)
    ax = figure.axes[0]
    assert row["query"][:20] in ax.get_title() and "label:" in ax.get_title()
    assert row["chart_type"] in ax.get_xlabel()


def test_reward_histograms_one_panel_per_reward_and_the_total():
    import pandas as pd

    rng = random.Random(0)
    scores = pd.DataFrame(
        [
            {"example": example, "variant": f"v{variant}", **{name: rng.uniform(0, 2) for name in (*REWARDS, "total")}}
            for example in range(2)
            for variant in range(7)
        ]
    )
    figure = plot_reward_histograms(scores)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 8 and figure.get_suptitle() == "Rewards over 14 completions"
    assert all(ax.get_title() and ax.get_xlabel() == "reward" and ax.get_ylabel() == "completions" for ax in visible)
    assert visible[0].get_title() == "format (max 2)" and visible[5].get_title() == "table_style"
    with pytest.raises(ValueError, match="No reward columns"):
        plot_reward_histograms(scores[["example", "variant"]])
