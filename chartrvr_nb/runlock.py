"""One writer per run folder: a lock file with a heartbeat, stale takeover, and a forced unlock.

A training run holds its run folder, and its Drive mirror folder, for its whole life. The lock is a
small JSON file, ``run.lock``, in each folder: who holds it (host, process id, the command), when
the run started, and a heartbeat that a background thread rewrites on a clock (every minute by
default; a paper-preset step takes about a minute and checkpoints come hours apart, so neither
would do). Every rewrite is atomic (:func:`chartrvr_nb.drive.write_atomic`), so a reader, on
Google Drive too, sees the old lock or the new one, never half of one. Drive offers no file
locking and syncs with a delay, which is why the lock is plain data plus a heartbeat, not ``flock``.

A second run on a held folder fails at once, before any model is loaded, with a
:class:`RunLockedError` that names the holder and the way out. A lock is free again when:

- its heartbeat is older than ``stale_after_minutes`` (10 by default: longer than Drive's sync
  delay), as after a kill -9 or a Colab runtime that vanished; the next run takes it over and
  says so;
- its holder ran on this machine and its process has ended (no need to wait for the timeout);
- the user passes ``force_unlock`` (``--force-unlock``) because the holder is certainly gone.

A holder whose lock was taken over anyway (a runtime paused longer than the timeout, then back, or
``--force-unlock``) notices at its next training step, where ``callbacks.LockWatchCallback`` reads the
lock files (:meth:`RunLock.check`), or at its next heartbeat; it then stops before its next log line,
sample or checkpoint, with a :class:`RunLockLostError`. Under torchrun or ``accelerate launch`` only
the main process holds the lock.

The errors here are :class:`RunFolderError`, a :class:`chartrvr_nb.UserError`: ``python -m chartrvr_nb``
prints their message without a traceback, and a notebook shows the message alone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import UserError
from .drive import write_atomic
from .estimate import format_duration

logger = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
STALE_AFTER_MINUTES = 10.0
HEARTBEAT_SECONDS = 60.0
# After taking over a lock, look again this long later: of two runs taking over at once, the
# one whose write landed last holds the lock and the other stops.
_TAKEOVER_SETTLE_SECONDS = 1.0


class RunFolderError(UserError, RuntimeError):
    """A run folder problem the user must act on; the message says what happened and what to do."""


class RunLockedError(RunFolderError):
    """The run folder is held by another run."""


class RunLockLostError(RunFolderError):
    """Another run took this run's lock over; this run stopped so that one writer remains."""


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


@functools.cache
def _boot_id() -> str:
    """This machine's boot id (Linux); with the host name it tells whether a holder ran here."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return True  # cannot tell: assume it runs (the heartbeat timeout still frees the lock)
    # A zombie has exited and only waits to be reaped (a killed run's ranks whose parent died, under an
    # init that does not reap): os.kill still finds it, but it writes nothing any more.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


@dataclass(frozen=True)
class LockHolder:
    """What ``run.lock`` says about the run holding a folder.

    Example:
        >>> holder = LockHolder(host="vm-1", pid=42, started=0.0, heartbeat=60.0, token="t")
        >>> print(holder.describe(now=90.0))
        host vm-1, process 42, started 1970-01-01 00:00:00 UTC, last heartbeat 1970-01-01 00:01:00 UTC (30 s ago)
    """

    host: str
    pid: int
    started: float
    heartbeat: float
    token: str
    boot_id: str = ""
    command: str = ""

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return (
            f"host {self.host}, process {self.pid}, started {_utc(self.started)}, "
            f"last heartbeat {_utc(self.heartbeat)} ({format_duration(now - self.heartbeat, 'ago')})"
        )

    def on_this_machine(self) -> bool:
        return self.host == socket.gethostname() and self.boot_id == _boot_id()

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "host": self.host,
                    "pid": self.pid,
                    "boot_id": self.boot_id,
                    "command": self.command,
                    "started": self.started,
                    "started_utc": _utc(self.started),
                    "heartbeat": self.heartbeat,
                    "heartbeat_utc": _utc(self.heartbeat),
                    "token": self.token,
                },
                indent=1,
            )
            + "\n"
        )


def read_lock(folder: str | os.PathLike) -> LockHolder | None:
    """The holder recorded in ``folder/run.lock``, or None when the folder is not locked.

    A lock file that does not parse (being created this instant, or mangled by a sync) still
    counts as held: its holder is unknown and its heartbeat is the file's modification time.
    """
    path = Path(folder) / LOCK_FILE
    try:
        text = path.read_text(encoding="utf-8")
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return LockHolder(
            host=str(data["host"]),
            pid=int(data["pid"]),
            started=float(data["started"]),
            heartbeat=float(data["heartbeat"]),
            token=str(data["token"]),
            boot_id=str(data.get("boot_id", "")),
            command=str(data.get("command", "")),
        )
    except (ValueError, KeyError, TypeError):
        return LockHolder(host="unknown", pid=-1, started=mtime, heartbeat=mtime, token="")


class RunLock:
    """Holds run folders for one training run: acquire, heartbeat on a clock, release.

    Args:
        folders: the run folder and, with Drive, its Drive folder (None entries are ignored).
        stale_after_minutes: a lock whose heartbeat is older than this is free to take over.
        force: take the lock over even from a holder that looks alive (``--force-unlock``).
        heartbeat_seconds: how often the holder refreshes its heartbeat (default: every minute,
            or a fifth of the timeout when that is shorter).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with RunLock([folder]) as lock:
        ...     read_lock(folder).pid == os.getpid()
        True
        >>> read_lock(folder) is None
        True
    """

    def __init__(
        self,
        folders: Iterable[str | os.PathLike | None],
        stale_after_minutes: float = STALE_AFTER_MINUTES,
        force: bool = False,
        heartbeat_seconds: float | None = None,
    ):
        if not stale_after_minutes > 0:
            raise ValueError(f"The lock timeout must be a positive number of minutes, got {stale_after_minutes!r}.")
        # The same folder twice (--drive-dir equal to --output-dir) is held once.
        self.folders = list(dict.fromkeys(Path(folder).absolute() for folder in folders if folder is not None))
        self.stale_after = stale_after_minutes * 60
        self.force = force
        self.heartbeat_seconds = heartbeat_seconds or min(HEARTBEAT_SECONDS, self.stale_after / 5)
        self.started = time.time()
        self.token = uuid.uuid4().hex
        self.lost: str | None = None  # why the lock was lost, once it was
        self._held: list[Path] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[Path] = set()

    def _record(self) -> LockHolder:
        return LockHolder(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=self.started,
            heartbeat=time.time(),
            token=self.token,
            boot_id=_boot_id(),
            command=" ".join(sys.argv)[:300],
        )

    def _free_because(self, holder: LockHolder, now: float) -> str | None:
        """Why ``holder`` no longer holds its lock, or None while it does."""
        if holder.token and holder.on_this_machine() and not _process_running(holder.pid):
            return f"its process {holder.pid} on this machine has ended"
        if now - holder.heartbeat > self.stale_after:
            return (
                f"its last heartbeat is {format_duration(now - holder.heartbeat, 'ago')}, older than the "
                f"{self.stale_after / 60:g} min lock timeout"
            )
        return None

    def _locked_message(self, folder: Path, holder: LockHolder) -> str:
        stale_at = _utc(holder.heartbeat + self.stale_after)
        doing = f"\n  Its command: {holder.command}" if holder.command else ""
        return (
            f"The run folder {folder} is locked by another run: {holder.describe()}.{doing}\n"
            "Two runs writing one folder would log every step twice and overwrite each other's checkpoints, "
            "so this run stopped before loading the model. Either:\n"
            f"  - wait for that run to finish; if it died, its lock goes stale at {stale_at} "
            f"({self.stale_after / 60:g} min after its last heartbeat) and the next start takes it over by itself;\n"
            "  - use another --output-dir (and --drive-dir) to start a separate run; or\n"
            "  - pass --force-unlock (in a notebook: force_unlock = True in the Parameters cell) if that run "
            "is certainly gone (its runtime was deleted or its process killed)."
        )

    def _claim(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_FILE
        holder = read_lock(folder)
        if holder is None:
            try:  # O_EXCL: of two runs creating the lock at once, exactly one succeeds (local disks)
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock(folder)
            else:
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.write(self._record().to_json())
                    handle.flush()
                    os.fsync(handle.fileno())
                return
        if holder is None:  # removed again between the two looks: try once more from the start
            return self._claim(folder)
        now = time.time()
        reason = self._free_because(holder, now)
        if reason is None and not self.force:
            raise RunLockedError(self._locked_message(folder, holder))
        write_atomic(path, self._record().to_json())
        time.sleep(_TAKEOVER_SETTLE_SECONDS)
        current = read_lock(folder)
        if current is None or current.token != self.token:
            raise RunLockedError(self._locked_message(folder, current or holder))
        how = f"Took over the stale lock ({reason})" if reason else "Force-unlocked: took over the lock"
        logger.info(f"{how} on {folder} from {holder.describe(now)}.")

    def acquire(self) -> RunLock:
        """Take every folder's lock (or none: on failure those taken are released) and start the heartbeat.

        Raises:
            RunLockedError: a folder is held by a live run.
        """
        try:
            for folder in self.folders:
                self._claim(folder)
                self._held.append(folder)
        except BaseException:
            self.release()
            raise
        self._thread = threading.Thread(target=self._beat, name="chartrvr-run-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self.refresh()
            if self.lost:
                return

    def _notice_takeover(self) -> None:
        """Set :attr:`lost` when another run's token is in a held folder's lock file (unreadable: not a takeover)."""
        for folder in self._held:
            holder = read_lock(folder)
            if holder is not None and holder.token and holder.token != self.token:
                self.lost = f"another run took over the lock on {folder}: {holder.describe()}"
                return

    def refresh(self) -> None:
        """Rewrite the heartbeat in each held folder; notice when another run took a lock over."""
        self._notice_takeover()
        if self.lost:
            return
        for folder in self._held:
            try:
                write_atomic(folder / LOCK_FILE, self._record().to_json())
            except OSError as error:
                if folder not in self._warned:  # e.g. Drive unmounted: keep training, keep trying
                    self._warned.add(folder)
                    warnings.warn(
                        f"Could not refresh the run lock in {folder} ({error}); retrying every "
                        f"{self.heartbeat_seconds:g} s.",
                        stacklevel=2,
                    )

    def check(self) -> None:
        """Raise :class:`RunLockLostError` once another run has taken this run's lock over, as the lock files
        say now (a read of each: cheap beside a training step), not only as the last heartbeat saw them."""
        if not self.lost:
            self._notice_takeover()
        if self.lost:
            raise RunLockLostError(
                f"This run stopped: {self.lost}. Its lock had not been refreshed for longer than the "
                f"{self.stale_after / 60:g} min lock timeout (a paused or disconnected runtime), or that run "
                "was started with --force-unlock. Only one of the two may write the folder; that run carries "
                "on from the newest checkpoint. To continue here instead, stop that run first, then re-run "
                "this command."
            )

    def release(self) -> None:
        """Stop the heartbeat and remove the lock files this run still holds (never another run's)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        for folder in self._held:
            holder = read_lock(folder)
            if holder is not None and holder.token == self.token:
                with contextlib.suppress(FileNotFoundError):
                    (folder / LOCK_FILE).unlink()
        self._held = []

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def launched_as_rank_zero() -> bool:
    """Whether this process is rank 0 of torchrun / ``accelerate launch`` / deepspeed, or runs alone.

    Read from the ``RANK`` variable those launchers set, so it is known before torch is imported.
    """
    return os.environ.get("RANK", "0").strip() in ("", "0")


@contextlib.contextmanager
def holding(
    folders: Iterable[str | os.PathLike | None], main_process: bool = True, **options
) -> Iterator[RunLock | None]:
    """Hold ``folders`` for the block (yielding the :class:`RunLock`), or nothing off the main process.

    Args:
        folders: the run folder and the Drive folder (None when there is none).
        main_process: False on the other ranks of a torchrun / accelerate launch: only rank 0 locks.
        **options: :class:`RunLock`'s ``stale_after_minutes``, ``force``, ``heartbeat_seconds``.
    """
    if not main_process:
        yield None
        return
    with RunLock(folders, **options) as lock:
        yield lock
