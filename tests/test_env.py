"""Environment checks: Colab detection, Drive, GPU requirements and out-of-memory advice."""

import re
import sys
import types
from pathlib import Path

import pytest

from chartrvr_nb import env
from chartrvr_nb.presets import PRESETS, get_preset


def test_in_colab_follows_the_colab_runtime_marker(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert env.in_colab() is False
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20250101")
    assert env.in_colab() is True


def test_mount_drive_outside_colab_says_to_use_a_local_drive_dir(monkeypatch):
    monkeypatch.setattr(env, "in_colab", lambda: False)
    with pytest.raises(RuntimeError, match="pass any local directory as --drive-dir"):
        env.mount_drive()


def test_mount_drive_in_colab_mounts_and_returns_the_run_folder(monkeypatch, tmp_path):
    mounted = []

    def fake_mount(mount_point):
        mounted.append(mount_point)
        (tmp_path / "drive" / "MyDrive").mkdir(parents=True)

    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=fake_mount)
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(env, "in_colab", lambda: True)

    folder = env.mount_drive(str(tmp_path / "drive"), subdir="chartrvr-nb")

    assert mounted == [str(tmp_path / "drive")]
    assert folder == tmp_path / "drive" / "MyDrive" / "chartrvr-nb" and folder.is_dir()


def test_drive_dir_on_unmounted_drive_is_an_error_naming_the_mount_cell(tmp_path):
    mount_point = tmp_path / "content" / "drive"
    with pytest.raises(RuntimeError, match=r"Drive not mounted.*mount_drive\(\)"):
        env.resolve_drive_dir(mount_point / "MyDrive" / "runs", mount_point=str(mount_point))
    assert not (mount_point / "MyDrive").exists(), "nothing may be created on the VM disk in Drive's place"

    (mount_point / "MyDrive").mkdir(parents=True)
    folder = env.resolve_drive_dir(mount_point / "MyDrive" / "runs", mount_point=str(mount_point))
    assert folder.is_dir()


def test_default_mount_point_is_checked_outside_colab():
    assert not env.Path("/content/drive/MyDrive").exists()
    with pytest.raises(RuntimeError, match="Drive not mounted"):
        env.resolve_drive_dir("/content/drive/MyDrive/chartrvr-nb")


def test_any_local_folder_works_as_drive_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(env.RUN_ROOT_ENV, str(tmp_path / "root"))
    monkeypatch.chdir(tmp_path)  # a relative folder is under the run root, not the working directory
    folder = env.resolve_drive_dir("mirror/run")
    assert folder == tmp_path / "root" / "mirror" / "run" and folder.is_dir()
    assert env.resolve_drive_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_run_root_is_the_checkout_locally_and_the_clone_in_colab(monkeypatch, tmp_path):
    monkeypatch.delenv(env.RUN_ROOT_ENV, raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.chdir(tmp_path)  # a notebook kernel starts in notebooks/, a shell anywhere: same root
    checkout = Path(__file__).resolve().parents[1]
    assert env.run_root() == checkout and env.run_path("runs/smoke") == checkout / "runs" / "smoke"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab")
    assert env.run_path("runs/smoke") == Path("/content/chartrvr-nb/runs/smoke")


def test_gpu_preset_without_cuda_suggests_smoke(monkeypatch):
    monkeypatch.setattr(env, "gpu_info", lambda: None)
    with pytest.raises(RuntimeError, match=r"'paper'.*needs a CUDA GPU.*--preset smoke"):
        env.require_gpu("paper")
    env.require_gpu("smoke")  # the CPU preset runs anywhere
    monkeypatch.setattr(env, "gpu_info", lambda: env.GPUInfo("NVIDIA L4", 22.0, True, (8, 9)))
    env.require_gpu(get_preset("fast"))


def test_gpu_info_matches_torch():
    import torch

    info = env.gpu_info()
    if torch.cuda.is_available():
        assert info.memory_gb > 0 and info.name
    else:
        assert info is None


def test_system_report_lists_versions_hardware_and_disk(tmp_path):
    report = env.system_report(tmp_path)
    assert list(report)[:2] == ["python", "platform"]
    assert {"torch", "transformers", "trl", "peft", "gpu", "ram", "disk"} <= set(report)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", report["transformers"])
    assert "GiB free" in report["disk"]
    text = env.format_system_report(report)
    assert text.count("\n") == len(report) - 1 and "transformers" in text


@pytest.mark.parametrize(
    "name, first_tip, preset_tip",
    [
        ("paper", "--batch-size 1 --grad-accum 4", "--preset safe"),
        ("safe", "--batch-size 1", "--preset moderate"),
        ("moderate", "--batch-size 1", "--preset fast"),
        ("fast", "--batch-size 1", "--preset ultra-fast"),
        ("fast-nockpt", "re-enable gradient checkpointing", "--preset fast"),
        ("ultra-fast", "--batch-size 1", "--preset colab-t4"),
        ("colab-t4", "--batch-size 1", "--max-completion-length 512"),
    ],
)
def test_oom_advice_names_the_next_smaller_step(name, first_tip, preset_tip):
    advice = env.oom_advice(name)
    tips = [line.removeprefix("  - ") for line in advice.splitlines()[1:]]
    assert advice.startswith(f"Out of GPU memory with preset {name!r}")
    assert tips[0].startswith(first_tip)
    assert preset_tip in advice


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_suggested_flag_combination_is_a_valid_preset(name):
    advice = env.oom_advice(name)
    for batch, accum in re.findall(r"--batch-size (\d+) --grad-accum (\d+)", advice):
        get_preset(name, batch_size=int(batch), grad_accum=int(accum))
    for suggested in re.findall(r"--preset ([\w-]+)", advice):
        assert suggested in PRESETS


def test_explain_oom_turns_cuda_oom_into_advice():
    import torch

    original = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(RuntimeError, match=r"Out of GPU memory with preset 'fast'") as caught:
        with env.explain_oom("fast"):
            raise original
    assert caught.value.__cause__ is original
    assert "--preset ultra-fast" in str(caught.value)


def test_explain_oom_recognises_the_older_runtime_error_and_works_as_decorator():
    @env.explain_oom(get_preset("paper"))
    def step():
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(RuntimeError, match="--preset safe") as caught:
        step()
    assert isinstance(caught.value.__cause__, RuntimeError)


@pytest.mark.parametrize("error", [ValueError("bad column"), RuntimeError("expected a tensor on cuda:0")])
def test_explain_oom_leaves_other_errors_alone(error):
    with pytest.raises(type(error)) as caught:
        with env.explain_oom("fast"):
            raise error
    assert caught.value is error


def test_a_folder_that_cannot_be_made_or_written_says_why_and_which_option(tmp_path, monkeypatch):
    from chartrvr_nb import UserError

    notes = tmp_path / "notes.txt"
    notes.write_text("a file, not a folder")
    with pytest.raises(UserError, match=f"--drive-dir {notes} cannot be used: it is a file, not a folder"):
        env.resolve_drive_dir(notes)
    with pytest.raises(UserError, match=f"--output-dir {notes}/run cannot be used: {notes} is a file"):
        env.make_folder(notes / "run", "--output-dir")
    monkeypatch.setattr(env.os, "access", lambda path, mode: False)  # as a read-only disk answers, even root
    monkeypatch.setattr(env, "_read_only", lambda folder: True)
    with pytest.raises(UserError, match="cannot be used: it is on a read-only disk. Pass a folder you can write"):
        env.make_folder(tmp_path / "run", "--output-dir")
