"""One writer per run folder: the run lock refuses a second run, heartbeats, and is taken over when stale.

The unit tests drive :class:`RunLock` directly with second-scale timeouts; the two end-to-end tests
run the real command line on the tiny model: a second run on a held folder (and on a held Drive
folder) is refused while the first keeps one curve, and a run killed with kill -9 leaves a lock
that the next run takes over once its heartbeat is stale.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chartrvr_nb.checkpoints import newest_complete_checkpoint
from chartrvr_nb.runfiles import load_metrics
from chartrvr_nb.runlock import (
    LOCK_FILE,
    LockHolder,
    RunLock,
    RunLockedError,
    RunLockLostError,
    holding,
    launched_as_rank_zero,
    read_lock,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
# 8 prompts x 2 generations / (batch 2 x grad_accum 2) = 4 optimizer steps, a checkpoint every 2.
QUICK_FLAGS = ["--preset", "smoke", "--subset-size", "8", "--save-steps", "2", "--max-completion-length", "48"]


def grpo(*flags):
    return [sys.executable, "-m", "chartrvr_nb", "grpo", *QUICK_FLAGS, *flags]


def write_foreign_lock(folder: Path, heartbeat_age_s: float, host="vanished-colab-vm") -> LockHolder:
    """A lock as another machine's run leaves it (a host and process we cannot check from here)."""
    now = time.time()
    holder = LockHolder(
        host=host,
        pid=4242,
        started=now - 3600,
        heartbeat=now - heartbeat_age_s,
        token="theirs",
        boot_id="another-boot",
        command="python -m chartrvr_nb grpo --preset paper",
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(holder.to_json())
    return holder


def test_a_second_run_is_refused_with_the_holder_named_and_the_way_out(tmp_path):
    first = RunLock([tmp_path]).acquire()
    try:
        with pytest.raises(RunLockedError) as refused:
            RunLock([tmp_path]).acquire()
        message = str(refused.value)
        assert f"{tmp_path} is locked by another run" in message
        assert f"process {os.getpid()}" in message and "last heartbeat" in message and "started" in message
        assert "--force-unlock" in message and "another --output-dir" in message and "wait" in message
        assert read_lock(tmp_path).token == first.token, "a refused run must leave the lock alone"
    finally:
        first.release()
    assert not (tmp_path / LOCK_FILE).exists()
    RunLock([tmp_path]).acquire().release()  # free again once released


def test_a_notebook_cell_shows_the_message_not_a_traceback(tmp_path, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    with RunLock([tmp_path]):
        result = shell.run_cell(f"from chartrvr_nb.runlock import RunLock\nRunLock([{str(tmp_path)!r}]).acquire()")
    assert isinstance(result.error_in_exec, RunLockedError)
    shown = capsys.readouterr().out
    assert shown.startswith(f"RunLockedError: The run folder {tmp_path} is locked by another run")
    assert "--force-unlock" in shown and "Traceback" not in shown and "File " not in shown


def test_any_user_error_and_a_stopped_run_show_as_their_message_in_a_notebook(tmp_path, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    (tmp_path / "notes.txt").write_text("a file")
    result = shell.run_cell(f"from chartrvr_nb import env\nenv.make_folder({str(tmp_path / 'notes.txt')!r}, 'run_dir')")
    assert type(result.error_in_exec).__name__ == "FolderError"
    assert capsys.readouterr().out == (
        f"FolderError: run_dir {tmp_path / 'notes.txt'} cannot be used: it is a file, not a folder. "
        "Pass a folder you can write to as run_dir.\n"
    )
    shell.run_cell("from chartrvr_nb.train import TrainingStopped\nraise TrainingStopped('Stopped at step 11; ...')")
    assert capsys.readouterr().out == "TrainingStopped: Stopped at step 11; ...\n"


def test_a_held_drive_folder_refuses_a_run_with_another_local_folder(tmp_path):
    drive = tmp_path / "drive" / "run"
    with RunLock([tmp_path / "local-a", drive]):
        with pytest.raises(RunLockedError, match="drive/run is locked"):
            RunLock([tmp_path / "local-b", drive]).acquire()
        assert not (tmp_path / "local-b" / LOCK_FILE).exists(), "a refused run releases what it had taken"


def test_a_drive_folder_equal_to_the_run_folder_is_held_once(tmp_path):
    with RunLock([tmp_path, tmp_path / "."]) as lock:
        assert lock.folders == [tmp_path] and read_lock(tmp_path).token == lock.token


def test_the_heartbeat_is_refreshed_on_a_clock_not_by_training(tmp_path):
    with RunLock([tmp_path], heartbeat_seconds=0.2) as lock:
        first = read_lock(tmp_path).heartbeat
        deadline = time.monotonic() + 10
        while read_lock(tmp_path).heartbeat == first:
            assert time.monotonic() < deadline, "the heartbeat was never refreshed"
            time.sleep(0.05)
        assert read_lock(tmp_path).token == lock.token
        assert read_lock(tmp_path).started == lock.started
    assert not list(tmp_path.iterdir()), "no lock file or temporary is left behind"


@pytest.mark.parametrize("age_minutes, taken_over", [(11, True), (5, False)])
def test_another_machines_lock_is_taken_over_only_once_its_heartbeat_is_stale(
    tmp_path, capsys, age_minutes, taken_over
):
    holder = write_foreign_lock(tmp_path, heartbeat_age_s=age_minutes * 60)
    lock = RunLock([tmp_path], stale_after_minutes=10)
    if not taken_over:
        with pytest.raises(RunLockedError, match="host vanished-colab-vm, process 4242"):
            lock.acquire()
        assert read_lock(tmp_path) == holder
        return
    with lock:
        assert read_lock(tmp_path).token == lock.token
    out = capsys.readouterr().out
    assert "Took over the stale lock (its last heartbeat is 11 min ago, older than the 10 min lock timeout)" in out
    assert "host vanished-colab-vm, process 4242" in out


def hold_in_another_process(folder):
    """A process on this machine that takes ``folder``'s lock and keeps it (and never heartbeats)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom chartrvr_nb.runlock import RunLock\n"
            "RunLock([sys.argv[1]]).acquire()\nprint('held', flush=True)\ntime.sleep(600)",
            str(folder),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_left_by_a_process_killed_on_this_machine_is_taken_over_at_once(tmp_path, capsys):
    holder = hold_in_another_process(tmp_path)
    with pytest.raises(RunLockedError):
        RunLock([tmp_path]).acquire()  # alive: refused
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert read_lock(tmp_path).pid == holder.pid, "kill -9 leaves the lock behind"
    with RunLock([tmp_path]):  # the default 10 min timeout: no waiting, the process is gone
        pass
    assert f"its process {holder.pid} on this machine has ended" in capsys.readouterr().out


def test_a_lock_left_by_a_killed_process_not_yet_reaped_is_taken_over_at_once(tmp_path, capsys):
    """torchrun's ranks killed with their launcher become zombies when nothing reaps them (a container's init):
    the process id still answers os.kill, but the run it belonged to has ended."""
    holder = hold_in_another_process(tmp_path)
    holder.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed holder never became a zombie"
        time.sleep(0.05)
    os.kill(holder.pid, 0)  # not reaped (no wait() yet): the process id is still there
    with RunLock([tmp_path]):
        pass
    assert f"its process {holder.pid} on this machine has ended" in capsys.readouterr().out
    holder.wait()


def test_force_unlock_takes_over_and_the_old_holder_stops_at_its_next_step(tmp_path, capsys):
    old = RunLock([tmp_path], heartbeat_seconds=0.1).acquire()
    new = RunLock([tmp_path], force=True).acquire()
    try:
        assert "Force-unlocked: took over the lock" in capsys.readouterr().out
        deadline = time.monotonic() + 10
        while not old.lost:
            assert time.monotonic() < deadline, "the old holder never noticed"
            time.sleep(0.05)
        with pytest.raises(RunLockLostError, match="another run took over the lock"):
            old.check()
        # In training, the callback raises it at the end of the step, before that step is logged or saved.
        from transformers import TrainerCallback

        from chartrvr_nb.callbacks import LockWatchCallback

        watch = LockWatchCallback(old)
        assert isinstance(watch, TrainerCallback)
        with pytest.raises(RunLockLostError):
            watch.on_step_end(args=None, state=None, control=None)
        LockWatchCallback(new).on_step_end(args=None, state=None, control=None)  # the holder trains on
        old.release()
        assert read_lock(tmp_path).token == new.token, "the old holder must not remove the new holder's lock"
        new.check()
    finally:
        new.release()


def test_a_forced_takeover_stops_the_holder_at_its_next_step_not_its_next_heartbeat(tmp_path):
    from chartrvr_nb.callbacks import LockWatchCallback

    old = RunLock([tmp_path], heartbeat_seconds=3600).acquire()  # no heartbeat during this test
    watch = LockWatchCallback(old)
    watch.on_step_begin(args=None, state=None, control=None)  # still its own lock: trains on
    new = RunLock([tmp_path], force=True).acquire()
    try:
        with pytest.raises(RunLockLostError, match="another run took over the lock"):
            watch.on_step_begin(args=None, state=None, control=None)  # before it generates and samples
        with pytest.raises(RunLockLostError):
            watch.on_step_end(args=None, state=None, control=None)  # before it logs or saves
        old.release()
        assert read_lock(tmp_path).token == new.token
    finally:
        new.release()


def test_an_unreadable_lock_counts_as_held_until_it_is_stale(tmp_path):
    (tmp_path / LOCK_FILE).write_text('{"host": "half-wri')
    with pytest.raises(RunLockedError, match="host unknown"):
        RunLock([tmp_path]).acquire()
    old = time.time() - 3600
    os.utime(tmp_path / LOCK_FILE, (old, old))
    RunLock([tmp_path]).acquire().release()


def test_only_rank_zero_takes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert not launched_as_rank_zero()
    with holding([tmp_path], main_process=launched_as_rank_zero()) as lock:
        assert lock is None and not (tmp_path / LOCK_FILE).exists()
    monkeypatch.setenv("RANK", "0")
    with holding([tmp_path], main_process=launched_as_rank_zero()) as lock:
        assert read_lock(tmp_path).token == lock.token


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with holding([tmp_path, tmp_path / "drive"]):
            raise ZeroDivisionError("the run failed")
    assert not (tmp_path / LOCK_FILE).exists() and not (tmp_path / "drive" / LOCK_FILE).exists()


def _wait_for(condition, process, what, timeout=600):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, f"the first run ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_second_run_on_a_held_folder_is_refused_and_the_first_keeps_one_curve(tmp_path, tiny_model_dir):
    out, drive = tmp_path / "X", tmp_path / "drive"
    first = subprocess.Popen(
        grpo("--output-dir", str(out), "--drive-dir", str(drive)),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: (out / LOCK_FILE).is_file() and (drive / LOCK_FILE).is_file(), first, "the lock was taken")
        same_folder = subprocess.run(
            grpo("--output-dir", str(out)), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
        )
        same_drive = subprocess.run(
            grpo("--output-dir", str(tmp_path / "Y"), "--drive-dir", str(drive)),
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        first_output, _ = first.communicate(timeout=900)
    finally:
        first.kill()
    assert first.returncode == 0, first_output[-3000:]
    for refused, folder in ((same_folder, out), (same_drive, drive)):
        assert refused.returncode == 2
        assert f"error: The run folder {folder} is locked by another run: host" in refused.stderr
        assert f"process {first.pid}" in refused.stderr and "Traceback" not in refused.stderr
        assert "Loading weights" not in refused.stderr + refused.stdout, "refused before loading any model"
    assert not (tmp_path / "Y" / LOCK_FILE).exists()
    rewards = [
        json.loads(line)["step"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if "reward" in json.loads(line)
    ]
    assert rewards == [1, 2, 3, 4], "each step logged once: one writer"
    assert not (out / LOCK_FILE).exists() and not (drive / LOCK_FILE).exists(), "released at the end"


def test_a_run_killed_with_kill_9_leaves_a_stale_lock_the_next_run_takes_over(tmp_path, tiny_model_dir):
    out = tmp_path / "X"
    first = subprocess.Popen(
        grpo("--output-dir", str(out)), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for(lambda: newest_complete_checkpoint(out) is not None, first, "the first checkpoint")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # As a Colab runtime that vanished leaves it: the holder was on another machine, so only the
    # age of its heartbeat can tell that it is gone.
    lock = json.loads((out / LOCK_FILE).read_text())
    assert lock["pid"] == first.pid
    (out / LOCK_FILE).write_text(json.dumps({**lock, "host": "vanished-colab-vm", "boot_id": "gone"}))
    age = time.time() - lock["heartbeat"]
    timeout_minutes = max(age, 1.0) / 60 / 2  # already stale by the time the next run looks

    finished = subprocess.run(
        grpo("--output-dir", str(out), "--lock-timeout", f"{timeout_minutes:.4f}"),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Took over the stale lock (its last heartbeat is" in finished.stdout
    assert f"host vanished-colab-vm, process {first.pid}" in finished.stdout
    assert "Finished 4 optimizer steps." in finished.stdout
    assert [record["step"] for record in load_metrics(out) if "reward" in record] == [1, 2, 3, 4]
    assert not (out / LOCK_FILE).exists()
