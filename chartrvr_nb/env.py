"""Where we run: Colab or not, the run root, the GPU, Google Drive, and what to do after an out-of-memory error.

torch is imported only inside :func:`gpu_info`; versions are read from package metadata,
so :func:`system_report` works even where torch is broken.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from . import UserError

DRIVE_MOUNT_POINT = "/content/drive"
COLAB_CHECKOUT = "/content/chartrvr-nb"  # where the notebooks' install cell clones the project
RUN_ROOT_ENV = "CHARTRVR_NB_RUN_ROOT"  # overrides where relative run paths resolve

# The order to step down after an OOM: each preset needs less GPU memory or time than the last.
SMALLER_PRESET = {
    "paper": "safe",
    "safe": "moderate",
    "moderate": "fast",
    "fast": "ultra-fast",
    "fast-nockpt": "ultra-fast",  # after turning gradient checkpointing back on (= fast)
    "ultra-fast": "colab-t4",
}
SHORTER_COMPLETION_LENGTH = 512


def in_colab() -> bool:
    """Whether this Python runs inside a Google Colab runtime."""
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules


def run_root() -> Path:
    """The folder that relative run paths resolve against: the same for the CLI, the notebooks and
    ``python -m chartrvr_nb notebooks run``, whatever their working directory (a notebook kernel
    starts in ``notebooks/``), so a run trained by one is found by the others.

    ``$CHARTRVR_NB_RUN_ROOT`` when set; in Colab the checkout the install cell makes,
    ``/content/chartrvr-nb``; else the repository root of this checkout; else (a pip-installed
    package) the current directory.
    """
    if os.environ.get(RUN_ROOT_ENV):
        return Path(os.environ[RUN_ROOT_ENV]).expanduser().absolute()
    if in_colab():
        return Path(COLAB_CHECKOUT)
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "notebooks").is_dir():
        return checkout
    return Path.cwd()


def run_path(path: str | os.PathLike) -> Path:
    """``path`` itself when absolute, else the same path under :func:`run_root`.

    Example:
        >>> run_path("/tmp/runs/smoke")
        PosixPath('/tmp/runs/smoke')
        >>> run_path("runs/smoke") == run_root() / "runs" / "smoke"
        True
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else run_root() / path


class FolderError(UserError, OSError):
    """A folder the program must write into cannot be made or written: a file in its place or above it,
    a read-only disk, no permission. The message names the folder and the option to change."""


def make_folder(folder: str | os.PathLike, option: str) -> Path:
    """Create ``folder`` (and its parents) if needed and check that it can be written, or say why not.

    Args:
        folder: the folder (a run folder, a Drive folder, an evaluation's output folder).
        option: how the user names it, for the message (``"--output-dir"``).

    Returns:
        ``folder`` as a Path.

    Raises:
        FolderError: a file is in the way, the disk is read-only, or writing is not permitted.

    Example:
        >>> import tempfile
        >>> notes = Path(tempfile.mkdtemp()) / "notes.txt"
        >>> _ = notes.write_text("not a folder")
        >>> make_folder(notes / "run", "--output-dir")
        Traceback (most recent call last):
        ...
        chartrvr_nb.env.FolderError: --output-dir .../notes.txt/run cannot be used: .../notes.txt is a file. ...
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):  # a read-only disk fails this even for root
            raise OSError(errno.EROFS if _read_only(folder) else errno.EACCES, "cannot be written", str(folder))
    except OSError as error:
        file = next((path for path in (folder, *folder.parents) if path.is_file()), None)
        if file == folder:
            why = "it is a file, not a folder"
        elif file is not None:
            why = f"{file} is a file"
        elif error.errno == errno.EROFS:
            why = "it is on a read-only disk"
        elif error.errno in (errno.EACCES, errno.EPERM):
            why = "this user may not write there"
        else:
            why = error.strerror or str(error)
        raise FolderError(
            f"{option} {folder} cannot be used: {why}. Pass a folder you can write to as {option}."
        ) from (error)
    return folder


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@dataclass(frozen=True)
class GPUInfo:
    """The first CUDA device: its name, total memory in GiB, and native bfloat16 support."""

    name: str
    memory_gb: float
    bf16: bool
    compute_capability: tuple[int, int]


def gpu_info() -> GPUInfo | None:
    """The first CUDA GPU, or None when torch sees no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(0)
    capability = (properties.major, properties.minor)
    # Native bf16 arrives with Ampere (8.0); a T4 (7.5) only emulates it, slowly.
    return GPUInfo(properties.name, round(properties.total_memory / 2**30, 1), capability >= (8, 0), capability)


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _memory_gb() -> tuple[float, float] | None:
    """(total, available) RAM in GiB from /proc/meminfo, or None where it does not exist."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return tuple(int(fields[key].split()[0]) / 2**20 for key in ("MemTotal", "MemAvailable"))
    except (OSError, KeyError, ValueError):
        return None


def system_report(path: str | os.PathLike = ".") -> dict[str, str]:
    """Versions, GPU, RAM and free disk, for the setup notebook and bug reports.

    Args:
        path: where the free disk space is measured (the run directory's disk).

    Returns:
        An ordered mapping of item to human-readable value.
    """
    report = {
        "python": platform.python_version(),
        "platform": "Google Colab" if in_colab() else platform.platform(),
    }
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes"):
        report[package] = _package_version(package)
    try:
        gpu = gpu_info()
    except ImportError:
        gpu = None
    report["gpu"] = (
        f"{gpu.name}, {gpu.memory_gb:.1f} GiB, bf16 {'yes' if gpu.bf16 else 'no (fp16/fp32 only)'}"
        if gpu
        else "none (CPU only: use --preset smoke)"
    )
    memory = _memory_gb()
    report["ram"] = f"{memory[0]:.1f} GiB total, {memory[1]:.1f} GiB available" if memory else "unknown"
    disk = shutil.disk_usage(path)
    report["disk"] = f"{disk.free / 2**30:.1f} GiB free of {disk.total / 2**30:.1f} GiB at {Path(path).resolve()}"
    return report


def format_system_report(report: dict[str, str] | None = None) -> str:
    """:func:`system_report` as aligned ``name: value`` lines.

    Example:
        >>> print(format_system_report({"python": "3.11.9", "gpu": "none"}))
        python  3.11.9
        gpu     none
    """
    report = system_report() if report is None else report
    width = max(map(len, report))
    return "\n".join(f"{key:<{width}}  {value}" for key, value in report.items())


def mount_drive(mount_point: str = DRIVE_MOUNT_POINT, subdir: str = "chartrvr-nb") -> Path:
    """Mount Google Drive in Colab and return ``<mount_point>/MyDrive/<subdir>`` (created).

    Raises:
        RuntimeError: outside Colab, where there is no Drive to mount.
    """
    if not in_colab():
        raise RuntimeError(
            "Google Drive can only be mounted inside Colab. Outside Colab, pass any local directory "
            "as --drive-dir (e.g. --drive-dir ~/chartrvr-drive) to mirror checkpoints there instead."
        )
    from google.colab import drive

    drive.mount(mount_point)
    folder = Path(mount_point) / "MyDrive" / subdir
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def resolve_drive_dir(drive_dir: str | os.PathLike, mount_point: str = DRIVE_MOUNT_POINT) -> Path:
    """The absolute, existing folder to mirror checkpoints to.

    Args:
        drive_dir: a folder on Google Drive (under ``mount_point``) or any local folder (a
            relative one is under :func:`run_root`).
        mount_point: where Colab mounts Drive.

    Returns:
        The folder, created if needed.

    Raises:
        RuntimeError: ``drive_dir`` is on Drive but Drive is not mounted; without this check
            the folder would be created on the VM's disk and vanish with it.
        FolderError: the folder cannot be made or written (a file in the way, a read-only disk).
    """
    folder = run_path(drive_dir)
    mount = Path(mount_point)
    if folder.is_relative_to(mount) and not (mount / "MyDrive").is_dir():
        raise RuntimeError(
            f"Drive not mounted: {folder} is on Google Drive but {mount} has no MyDrive. "
            "Run the mount cell / chartrvr_nb.env.mount_drive() first."
        )
    return make_folder(folder, "--drive-dir")


def require_gpu(preset) -> None:
    """Fail early, with the fix, when a GPU preset is about to run on a machine without CUDA.

    Args:
        preset: a :class:`~chartrvr_nb.presets.Preset` or a preset name.

    Raises:
        RuntimeError: the preset needs a GPU and torch sees none.
    """
    from .presets import as_preset

    preset = as_preset(preset)
    if preset.requires_gpu and gpu_info() is None:
        where = (
            "In Colab: Runtime > Change runtime type > T4/L4/A100 GPU, then run the notebook again. "
            if in_colab()
            else ""
        )
        raise RuntimeError(
            f"Preset {preset.name!r} trains {preset.model} and needs a CUDA GPU, but none was found. "
            f"{where}To check the pipeline on CPU, use --preset smoke."
        )


def oom_advice(preset) -> str:
    """What to try after a CUDA out-of-memory error with ``preset``, most effective first.

    Memory per step depends on gradient checkpointing, 4-bit weights, the micro-batch and
    sequence lengths; the smaller presets mostly shorten the run, and the advice says so.

    Args:
        preset: a :class:`~chartrvr_nb.presets.Preset` or a preset name.

    Example:
        >>> print(oom_advice("paper"))
        Out of GPU memory with preset 'paper'. Try, in this order:
          - --batch-size 1 --grad-accum 4 (same completions per optimizer step, half the training micro-batch)
          - --max-completion-length 512 (shorter completions; 768 now)
          - the next smaller preset: --preset safe (a shorter run; same memory per step)
          - --preset colab-t4 (4-bit base weights, QLoRA: about 5 GB less)
    """
    from .presets import PRESETS, as_preset

    preset = as_preset(preset)
    tips = []
    if preset.finetune == "full":
        tips += [
            "more GPUs under DeepSpeed ZeRO-3, which share the weights, gradients and Adam states (accelerate "
            "launch --config_file deepspeed_zero3.yaml --num_processes N main.py --mode grpo ...; "
            "python -m chartrvr_nb estimate --num-processes N says how many fit)",
            "--preset paper (the fork's LoRA adapter at lr 1e-5 instead of every parameter: the seed guide's 12-13 GB)",
        ]
    if not preset.gradient_checkpointing:
        same_run = " (--preset fast)" if preset.name == "fast-nockpt" else ""
        tips.append(
            f"re-enable gradient checkpointing: drop --disable-gradient-checkpointing{same_run}: "
            "seed figures 12-13 GB instead of 15-18 GB"
        )
    if preset.batch_size > 1:
        completions_per_step = preset.batch_size * preset.grad_accum
        tips.append(
            f"--batch-size 1 --grad-accum {completions_per_step} "
            "(same completions per optimizer step, "
            f"{'half' if preset.batch_size == 2 else f'1/{preset.batch_size} of'} the training micro-batch)"
        )
    if preset.max_completion_length > SHORTER_COMPLETION_LENGTH:
        tips.append(
            f"--max-completion-length {SHORTER_COMPLETION_LENGTH} "
            f"(shorter completions; {preset.max_completion_length} now)"
        )
    smaller = SMALLER_PRESET.get(preset.name)
    if smaller:
        lighter = PRESETS[smaller].load_in_4bit and not preset.load_in_4bit
        tips.append(
            f"the next smaller preset: --preset {smaller} "
            + ("(4-bit base weights, QLoRA: about 5 GB less)" if lighter else "(a shorter run; same memory per step)")
        )
    if preset.requires_gpu and not preset.load_in_4bit and smaller != "colab-t4":
        tips.append("--preset colab-t4 (4-bit base weights, QLoRA: about 5 GB less)")
    if preset.requires_gpu and not smaller:
        tips.append("a GPU with more memory (Colab: Runtime > Change runtime type)")
    if not tips:
        tips.append("fewer --num-generations or a smaller --max-pixels")
    return f"Out of GPU memory with preset {preset.name!r}. Try, in this order:\n" + "\n".join(
        f"  - {tip}" for tip in tips
    )


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a CUDA out-of-memory error (torch's class or its older RuntimeError)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


@contextlib.contextmanager
def explain_oom(preset):
    """Turn a CUDA out-of-memory error into a RuntimeError that says what to change.

    The original error stays attached as ``__cause__``. Works as ``with explain_oom(preset):``
    or as a decorator ``@explain_oom(preset)``.

    Args:
        preset: a :class:`~chartrvr_nb.presets.Preset` or a preset name.
    """
    try:
        yield
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        raise RuntimeError(oom_advice(preset)) from error
