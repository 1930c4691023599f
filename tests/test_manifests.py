"""Verified checkpoints on the tiny model: manifests written last, damaged checkpoints skipped, a full disk.

One short run (4 optimizer steps, a checkpoint every 2, mirrored to a Drive folder) is copied for
each test; the damage tests then resume it for real and check that the run ends at the same step.
"""

import errno
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from chartrvr_nb.checkpoints import MANIFEST_NAME, checkpoint_problem
from chartrvr_nb.disk_full import DiskFullError, is_disk_full
from chartrvr_nb.presets import get_preset
from chartrvr_nb.resume import prepare_resume
from chartrvr_nb.runfiles import load_metrics
from chartrvr_nb.runlock import LOCK_FILE
from chartrvr_nb.train import train

# 8 prompts x 2 generations / (batch 2 x grad_accum 2) = 4 optimizer steps.
QUICK = dict(subset_size=8, save_steps=2, sample_every=2, max_completion_length=48)
WEIGHTS = "adapter_model.safetensors"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("manifests")
    result = train(get_preset("smoke", **QUICK), output_dir=root / "run", drive_dir=root / "drive")
    assert result.global_step == 4
    return root / "run", root / "drive"


@pytest.fixture
def run_copy(finished_run, tmp_path):
    local, drive = finished_run
    shutil.copytree(local, tmp_path / "run")
    shutil.copytree(drive, tmp_path / "drive")
    return tmp_path / "run", tmp_path / "drive"


def test_each_checkpoint_has_a_manifest_written_last_locally_and_on_drive(finished_run):
    local, drive = finished_run
    for folder in (local, drive):
        for name in ("checkpoint-2", "checkpoint-4"):
            checkpoint = folder / name
            manifest = json.loads((checkpoint / MANIFEST_NAME).read_text())
            files = sorted(p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file())
            assert sorted(manifest["files"]) == [f for f in files if f != MANIFEST_NAME]
            for relative, entry in manifest["files"].items():
                assert entry == {
                    "size": (checkpoint / relative).stat().st_size,
                    "sha256": sha256(checkpoint / relative),
                }
            assert checkpoint_problem(checkpoint) is None
    newest_first = sorted((local / "checkpoint-4").iterdir(), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    assert newest_first[0].name == MANIFEST_NAME, "the manifest is written after every file it lists"
    assert not (local / LOCK_FILE).exists() and not (drive / LOCK_FILE).exists()


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # inside the tensor data: the header still parses, the size is unchanged
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": (truncate, r"adapter_model.safetensors has [\d,]+ bytes, the manifest records [\d,]+"),
    "bit-flipped": (flip_a_bit, r"adapter_model.safetensors does not match its sha256 in the manifest"),
    "missing": (Path.unlink, r"adapter_model.safetensors is missing \(the manifest lists it\)"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_resumes_from_the_previous_one(run_copy, damage, capsys):
    local, _ = run_copy
    spoil, reason = DAMAGE[damage]
    spoil(local / "checkpoint-4" / WEIGHTS)
    damaged_files = {p.name: p.read_bytes() for p in (local / "checkpoint-4").iterdir()}

    result = train(get_preset("smoke", **QUICK), output_dir=local)

    out = capsys.readouterr().out
    assert result.resumed_from == local / "checkpoint-2"
    assert result.global_step == 4
    assert re.search(rf"Skipping damaged checkpoint-4: {reason}[^\n]*\. Moved it aside to damaged-checkpoint-4", out)
    kept = local / "damaged-checkpoint-4"
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == damaged_files, "kept as it was, not deleted"
    assert checkpoint_problem(local / "checkpoint-4") is None, "the step was saved again, whole"
    assert [r["step"] for r in load_metrics(local) if "reward" in r] == [1, 2, 3, 4]


def test_a_damaged_drive_copy_is_not_restored(run_copy, tmp_path, capsys):
    _, drive = run_copy
    flip_a_bit(drive / "checkpoint-4" / WEIGHTS)
    fresh = tmp_path / "fresh-runtime"

    chosen = prepare_resume(fresh, drive)

    out = capsys.readouterr().out
    assert chosen == fresh / "checkpoint-2" and checkpoint_problem(chosen) is None
    assert not (fresh / "checkpoint-4").exists() and not (fresh / "damaged-checkpoint-4").exists()
    assert (
        f"Not restoring checkpoint-4 from Drive {drive}: it is damaged, adapter_model.safetensors does not match" in out
    )
    assert "Resuming from checkpoint-2, restored from Drive" in out
    assert (drive / "checkpoint-4" / WEIGHTS).is_file(), "the Drive copy is left as it is"


def test_a_checkpoint_from_before_manifests_is_accepted_and_still_checked_for_truncation(run_copy, capsys):
    local, _ = run_copy
    for name in ("checkpoint-2", "checkpoint-4"):
        (local / name / MANIFEST_NAME).unlink()
    assert prepare_resume(local) == local / "checkpoint-4"
    truncate(local / "checkpoint-4" / "optimizer.pt")
    assert prepare_resume(local) == local / "checkpoint-2"
    assert "Skipping damaged checkpoint-4: optimizer.pt is not a whole torch file" in capsys.readouterr().out


def test_a_full_disk_during_a_save_keeps_the_earlier_checkpoints_and_the_next_run_resumes(run_copy, monkeypatch):
    import torch

    local, _ = run_copy
    shutil.rmtree(local / "checkpoint-4")  # as if the run had stopped after checkpoint-2
    (local / "metrics.jsonl").write_text(
        "".join(
            line + "\n" for line in (local / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] <= 2
        )
    )
    real_save = torch.save

    def save_on_a_full_disk(obj, f, *args, **kwargs):
        if "checkpoint-4" in str(f):  # half of the optimizer state fits, then the disk is full
            real_save(obj, f, *args, **kwargs)
            truncate(Path(f))
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    with pytest.raises(DiskFullError) as full:
        train(get_preset("smoke", **QUICK), output_dir=local)
    message = str(full.value)
    assert f"The disk of {local} is full" in message
    assert re.search(r"Removed the unfinished checkpoint-4; now [\d.]+ [MG]iB free of [\d.]+ [MG]iB\.", message)
    assert "checkpoint-2 is intact (verified) and the next run resumes from it" in message
    assert isinstance(full.value.__cause__, OSError)
    assert not (local / "checkpoint-4").exists() and checkpoint_problem(local / "checkpoint-2") is None
    assert not (local / LOCK_FILE).exists(), "the lock is released when the run fails"

    monkeypatch.setattr(torch, "save", real_save)  # space freed
    resumed = train(get_preset("smoke", **QUICK), output_dir=local)
    assert resumed.resumed_from == local / "checkpoint-2" and resumed.global_step == 4
    assert checkpoint_problem(local / "checkpoint-4") is None


def test_disk_full_is_recognised_in_the_forms_the_savers_raise(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    # What each writer raised on a full 200 KiB tmpfs here (torch 2.14, safetensors, Python's open).
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert is_disk_full(
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"), tmp_path
    )
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert not is_disk_full(torch_error, tmp_path), "torch's bare write error with free space is not a full disk"
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=4096))
    assert is_disk_full(torch_error, tmp_path)
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert is_disk_full(wrapped, tmp_path)
    assert not is_disk_full(ValueError("unknown preset"), tmp_path)


def test_the_verification_bench_prints_its_figures(capsys):
    from bench import checkpoint_verify

    assert checkpoint_verify.main(["--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^checkpoint: [\d.]+ MB \(adapter_model.safetensors [\d.]+ MB, optimizer.pt [\d.]+ MB", out, re.M)
    assert re.search(r"^RATIO checkpoints/s: verify [\d.]+ vs load [\d.]+ = [\d.]+x$", out, re.M)


def test_evaluation_passes_over_a_damaged_newest_checkpoint(run_copy, capsys):
    from chartrvr_nb.eval_inputs import resolve_adapter

    local, _ = run_copy
    shutil.rmtree(local / "adapter")  # a run stopped before its final save: eval takes a checkpoint
    assert resolve_adapter(local) == str(local / "checkpoint-4")
    weights = local / "checkpoint-4" / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])

    assert resolve_adapter(local) == str(local / "checkpoint-2")
    assert "Passing over damaged checkpoint-4: adapter_model.safetensors has 1,000 bytes" in capsys.readouterr().out
    assert weights.stat().st_size == 1000, "a reader leaves the damaged checkpoint where it is"
