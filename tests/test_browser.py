"""01_reward_inspection in a real browser: JupyterLab, ipywidgets and Debian's headless Chromium.

A tiny GRPO run (one step) gives the run root a ``runs/smoke`` with sample completions; a Jupyter
server started on 127.0.0.1 with that run root opens 01_reward_inspection (smoke preset, its
defaults) and runs every cell. Then, as a person would: edit the completion in the reward
inspector (a wrong answer, then no ``</answer>``) and watch accuracy, format and count change;
open a completion from the samples browser and find the rewards training gave it. Screenshots
go to ``runs/browser_test`` under the repository's run root (CI keeps them as artifacts).

Playwright drives ``/usr/bin/chromium`` (``scripts/setup.sh`` installs both; Playwright's own
browser download is not used). When the browser cannot start, the test fails: it never skips.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from chartrvr_nb import env
from chartrvr_nb.presets import get_preset
from chartrvr_nb.runfiles import load_samples
from chartrvr_nb.train import train

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = env.run_root() / "runs" / "browser_test"
NOTEBOOK = "01_reward_inspection.ipynb"
# A reward table's cells, by reward name, for the inspector holding ``textarea``.
READ_SCORES = """(textarea) => {
    const scores = {};
    for (const row of textarea.closest('.widget-vbox').querySelectorAll('table tbody tr')) {
        const cells = row.querySelectorAll('td');
        if (cells.length >= 2) scores[cells[0].innerText.trim()] = parseFloat(cells[1].innerText);
    }
    return scores;
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def jupyter(tmp_path, tiny_model_dir):
    """A run root with a one-step smoke run, and a JupyterLab server on it: (url, token, run folder)."""
    run_root = tmp_path / "root"
    preset = get_preset("smoke", subset_size=2, max_completion_length=32, sample_every=1)
    run = train(preset, output_dir=run_root / "runs" / "smoke", max_steps=1).output_dir
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, served / NOTEBOOK)
    settings = tmp_path / "settings"
    for plugin, values in {
        "notebook-extension/tracker": {"windowingMode": "none"},  # every cell in the page, scrolled or not
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), "chartrvr-browser-test"
    environment = {
        **os.environ,
        env.RUN_ROOT_ENV: str(run_root),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    environment.pop("CHARTRVR_NB_HEADLESS", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={served}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "jupyter.log", "w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "jupyter.log").read_text()[-3000:]
                time.sleep(0.5)
        else:
            raise AssertionError("the Jupyter server did not answer within 60 s")
        yield url, token, run
    finally:
        server.terminate()
        server.wait(timeout=30)


def scores_of(textarea) -> dict:
    return textarea.evaluate(READ_SCORES)


def wait_for_scores(textarea, expected: dict, timeout: float = 20) -> dict:
    """Poll the inspector's table until every reward in ``expected`` shows its value."""
    deadline = time.monotonic() + timeout
    while True:
        scores = scores_of(textarea)
        if all(scores.get(name) == value for name, value in expected.items()) or time.monotonic() > deadline:
            return scores
        time.sleep(0.25)


def test_reward_inspector_and_samples_browser_in_jupyterlab(jupyter):
    from playwright.sync_api import sync_playwright

    url, token, run = jupyter
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # A fresh profile each time; fails (not skips) when Chromium is missing or cannot start.
        browser = playwright.chromium.launch_persistent_context(
            str(run.parent / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = browser.new_page()
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                timeout=60_000,
            )
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            inspect = page.locator("button.widget-button", has_text="Inspect").first
            inspect.wait_for(timeout=150_000)  # the last cell's samples browser: every cell above ran

            # Section 4: the reward inspector starts from the correct completion.
            editor = page.locator(".widget-textarea textarea").first
            assert wait_for_scores(editor, {"format": 2.0, "count": 2.0, "accuracy": 1.0})["accuracy"] == 1.0
            # Nothing but the table under the text area: no "Loading weights" bar, no library log line.
            leftover = editor.evaluate(
                "t => t.closest('.widget-vbox').querySelectorAll("
                "'[data-mime-type=\"application/vnd.jupyter.stderr\"]').length"
            )
            assert leftover == 0 and "Loading weights" not in editor.evaluate(
                "t => t.closest('.widget-vbox').innerText"
            )
            editor.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]").screenshot(
                path=str(SCREENSHOTS / "reward_inspector_start.png")
            )
            correct = editor.input_value()
            wrong = re.sub(r"<answer>.*?</answer>", "<answer>certainly not the label</answer>", correct, flags=re.S)
            editor.fill(wrong)
            editor.blur()  # the rewards update when the text area loses focus
            scores = wait_for_scores(editor, {"accuracy": 0.0})
            assert scores["accuracy"] == 0.0 and scores["format"] == 2.0 and scores["count"] == 2.0
            editor.fill(wrong.replace("</answer>", ""))
            editor.blur()
            scores = wait_for_scores(editor, {"format": 0.0, "count": 0.0})
            assert scores["format"] == 0.0 and scores["count"] == 0.0
            editor.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]").screenshot(
                path=str(SCREENSHOTS / "reward_inspector_edited.png")
            )

            # Section 8: open the first sample of the run in its own reward inspector.
            inspect.click()
            try:
                page.get_by_text("Reward inspector: sample 0").wait_for(timeout=20_000)
            except Exception:
                page.screenshot(path=str(SCREENSHOTS / "failed.png"))
                raise
            sample_editor = page.locator(".widget-textarea textarea").last
            logged = load_samples(run)[0]
            assert sample_editor.input_value() == logged["completion"]
            expected = {name.removesuffix("_reward"): value for name, value in logged["rewards"].items()}
            scores = wait_for_scores(sample_editor, {"format": expected["format"]})
            for name, value in expected.items():  # the inspector scores it as training did
                assert scores[name] == pytest.approx(value, abs=2e-3), name
            sample_editor.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "samples_browser_inspect.png"))
        finally:
            browser.close()


def _overflow_in_a_lab_output_area(fragments: list[str], width: int) -> list[tuple[int, int]]:
    """(content width, visible width) of each HTML fragment shown as the output of a notebook cell in a page
    ``width`` pixels wide: the page nbconvert's lab template makes of a notebook holding those outputs
    (JupyterLab's own stylesheet and markup: its fonts, its ``table-layout: fixed``, output areas that scroll
    what overflows)."""
    import nbformat
    from nbconvert import HTMLExporter
    from playwright.sync_api import sync_playwright

    cells = []
    for number, html in enumerate(fragments, start=1):
        cell = nbformat.v4.new_code_cell("table", execution_count=number)
        cell.outputs = [nbformat.v4.new_output("execute_result", {"text/html": html}, execution_count=number)]
        cells.append(cell)
    page_html, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.v4.new_notebook(cells=cells))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 800})
            page.set_content(page_html, wait_until="load")
            areas = page.locator(".jp-OutputArea-output")
            return [tuple(areas.nth(i).evaluate("a => [a.scrollWidth, a.clientWidth]")) for i in range(len(cells))]
        finally:
            browser.close()


def test_the_notebooks_tables_fit_the_output_area():
    """02's sample completions (eleven columns, a long completion) and 04's results table end inside the
    output area of a 1,000-pixel page (JupyterLab beside its file browser is about as wide); no column is
    cut off at the right, nor hidden behind a scroll bar at the bottom of a long table."""
    import pandas as pd

    from chartrvr_nb import widgets
    from chartrvr_nb.eval_results import results_table
    from chartrvr_nb.prompts import format_completion

    table = {"columns": ["Country", "Exports"], "rows": [["Egypt", "44"], ["India", "30"], ["France", "15"]]}
    completion = format_completion("treemap", table, ["Its Exports: Egypt = 44.", "The highest is 44."], "44")
    rewards = {"format": 2.0, "count": 2.0, "accuracy": 1.0, "length": 1.75, "chart_type": 1.0, "table_style": 1.25}
    recent = pd.DataFrame(
        [{"step": 12, "label": "158", "completion": completion, "total": 9.5, **rewards, "process": 0.5}] * 3
    )
    summary = {"benchmark": "synthetic", "n": 8, "accuracy": 12.5, "headline_value": 12.5,
               "rewards": dict(rewards, process=0.5), "reward_examples": 8, "total_reward": 9.5,
               "format_valid_rate": 100.0, "base": {"n": 8, "accuracy": 0.0, "headline_value": 0.0},
               "comparison": {"ci_low": 0.0, "ci_high": 37.5}}  # fmt: skip
    tables = [
        widgets.text_table(recent, "completion", decimals=2),
        widgets.text_table(results_table(summary), "metric"),
    ]
    for content, visible in _overflow_in_a_lab_output_area([table.to_html() for table in tables], 1000):
        assert content <= visible
