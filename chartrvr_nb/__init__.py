"""chartrvr-nb: Chart-RVR GRPO training, reward debugging and evaluation for Colab and Jupyter.

Importing the package is cheap: torch, transformers and sentence-transformers load only inside
the functions that need them, so notebooks and the CLI start fast.

What the library reports as it works (resuming from a checkpoint, a damaged checkpoint passed over,
where files went) goes through the ``chartrvr_nb`` logger, each module's ``logging.getLogger(__name__)``,
as plain lines on standard output at level INFO, so a notebook cell or a terminal shows them as they
happen. Quieter: ``logging.getLogger("chartrvr_nb").setLevel(logging.WARNING)``. The command line and
the notebook helpers print their own results.

One more effect on the process, on purpose: the log messages in :data:`KNOWN_LIBRARY_MESSAGES` are
dropped (a ``logging.Filter`` on the two loggers that write them; nothing else from those loggers,
and nothing from any other logger, is touched).
"""

import logging
import sys

__version__ = "0.1.0"


class UserError(Exception):
    """A mistake a user can fix (a wrong path, a setting that does not fit the run): its message says what went
    wrong and what to do next, so the command line prints it as one line and a notebook cell shows it without a
    traceback (IPython calls :meth:`_render_traceback_` for the lines it shows).

    Example:
        >>> UserError("runs/nope does not exist; pass a run folder.")._render_traceback_()
        ['UserError: runs/nope does not exist; pass a run folder.']
    """

    def _render_traceback_(self) -> list[str]:
        return f"{type(self).__name__}: {self}".splitlines()


class _CurrentStdout(logging.StreamHandler):
    """A handler writing to whatever ``sys.stdout`` is when a record arrives: a notebook cell's output,
    pytest's capture, a redirected terminal (a plain StreamHandler keeps the stream it was made with)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass  # always the current sys.stdout


_package_logger = logging.getLogger(__name__)
if not any(isinstance(handler, _CurrentStdout) for handler in _package_logger.handlers):
    _handler = _CurrentStdout()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    _package_logger.addHandler(_handler)
    _package_logger.setLevel(logging.INFO)
    _package_logger.propagate = False  # as transformers' own logger: a root handler would print it twice

# Logger -> starts of the messages it writes that nobody using this project can act on. peft imports
# bitsandbytes, so every run, evaluation and process reward does; bitsandbytes then looks on the Hugging
# Face Hub for optional CPU kernels, through the `kernels` package (a transformers dependency since
# 5.25), and each says so once per process: offline, that it cannot check or fetch them; online,
# that fetching them needs trust_remote_code, which users must not be invited to turn on. Nothing in
# this project uses those kernels (4-bit on CPU runs on bitsandbytes' own code path).
KNOWN_LIBRARY_MESSAGES: dict[str, tuple[str, ...]] = {
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
    "kernels._internals.hf_hub": ("Skipping publisher trust check for 'kernels-community/",),
}


class _DropKnownMessages(logging.Filter):
    """Drops a logger's records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


# Installed before any of our code can import bitsandbytes (every chartrvr_nb import runs this first).
for _name, _prefixes in KNOWN_LIBRARY_MESSAGES.items():
    _logger = logging.getLogger(_name)
    if not any(isinstance(existing, _DropKnownMessages) for existing in _logger.filters):
        _logger.addFilter(_DropKnownMessages(_prefixes))
