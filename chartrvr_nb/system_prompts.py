"""The system prompt a run trains and evaluates with: the Chart-RVR authors' templates, fetched and verified, or ours.

The authors' repository (sanchit97/chartrl) has no license, so their prompt text is never part of this
project. The ``chart-rvr`` choice reads ``SYSTEM_PROMPT_TEMPLATES`` from their ``prompts.py`` at the
pinned commit: downloaded from GitHub on first use (or read from a local copy the user passes),
extracted by parsing the file with :mod:`ast` (never executing it), each template used checked
against its pinned SHA-256, and the file cached under ``data.cache_root()`` for the next run. Template
4 is their chain-of-thought prompt, the one they trained with (``main.py`` 490, 509-510); template 1
their direct prompt, for evaluation. The ``project`` choice is this project's own wording
(:mod:`chartrvr_nb.prompts`). A missing or altered text is a :class:`PromptUnavailableError` that says
where the text comes from and how to provide it, raised before any model is loaded.
"""

from __future__ import annotations

import ast
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .prompts import PROMPT_STYLES

SYSTEM_PROMPT_CHOICES = ("chart-rvr", "project")
CHAIN_OF_THOUGHT_TEMPLATE = 4
DIRECT_TEMPLATE = 1
# The authors' template for each prompt style: their GRPO trains and their --cot evaluation runs with
# template 4, their direct evaluation with template 1 (main.py 171 at 83c4406).
AUTHORS_TEMPLATE_FOR_STYLE = {
    "rvr": CHAIN_OF_THOUGHT_TEMPLATE,
    "cot": CHAIN_OF_THOUGHT_TEMPLATE,
    "direct": DIRECT_TEMPLATE,
}
_DOWNLOAD_TIMEOUT_SECONDS = 30


class PromptUnavailableError(RuntimeError):
    """The authors' prompt text could not be fetched, read or verified; the message says how to provide it."""


@dataclass(frozen=True)
class PromptSource:
    """Where the authors' templates live, and the SHA-256 each template used must have.

    Attributes:
        repository: ``owner/name`` on GitHub.
        commit: the pinned commit (40 hex digits).
        path: the file in the repository.
        variable: the module-level dict literal that maps template numbers to their text.
        sha256: template number -> SHA-256 of its text (UTF-8); only these templates are ever used.
        url: where to download the file from; default the raw file at the commit on GitHub.
    """

    repository: str
    commit: str
    path: str
    variable: str
    sha256: Mapping[int, str]
    url: str | None = None

    @property
    def download_url(self) -> str:
        return self.url or f"https://raw.githubusercontent.com/{self.repository}/{self.commit}/{self.path}"

    def names(self, template: int) -> str:
        """``sanchit97/chartrl@83c4406 prompts.py SYSTEM_PROMPT_TEMPLATES[4]``."""
        return f"{self.repository}@{self.commit[:7]} {self.path} {self.variable}[{template}]"


CHART_RVR_PROMPTS = PromptSource(
    repository="sanchit97/chartrl",
    commit="83c44068a920b7101b7c3c7d6edcb96fdf9a321d",
    path="prompts.py",
    variable="SYSTEM_PROMPT_TEMPLATES",
    sha256={
        CHAIN_OF_THOUGHT_TEMPLATE: "f25a391ec4e13d1f3db1160c562fbf7747bf2b1939f13dd4545df335a48a49a1",  # 1,748 chars
        DIRECT_TEMPLATE: "9907cacd5f7f7b6c28195065c2e0bb825d700bb21ce563e020b2d6266fc481f4",  # 182 chars
    },
)


@dataclass(frozen=True)
class SystemPrompt:
    """A system prompt's text and where it came from.

    Attributes:
        text: the system message's content.
        choice: ``"chart-rvr"`` or ``"project"``.
        origin: where the text was read, in words (the authors' file at its commit, and whether it was
            downloaded, cached or a local copy; or this project's module).
    """

    text: str
    choice: str
    origin: str

    @property
    def sha256(self) -> str:
        """SHA-256 of the text (UTF-8): what a run records and what evaluation checks."""
        return sha256_text(self.text)


def sha256_text(text: str) -> str:
    """The SHA-256 of a string's UTF-8 bytes, as hex.

    Example:
        >>> sha256_text("abc")[:16]
        'ba7816bf8f01cfea'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def extract_templates(source: str, variable: str) -> dict[int, str]:
    """The ``{number: text}`` dict literal assigned to ``variable`` at a Python file's top level.

    The file is parsed, never executed: only a plain dict of integer keys and string values is accepted.

    Raises:
        ValueError: the file does not parse, or has no such literal.

    Example:
        >>> extract_templates("import os\\nTEMPLATES = {1: 'short', 4: 'long'}\\n", "TEMPLATES")
        {1: 'short', 4: 'long'}
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise ValueError(f"it is not a Python file ({error.msg}, line {error.lineno})") from error
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == variable for target in node.targets
        ):
            try:
                templates = ast.literal_eval(node.value)
            except ValueError as error:
                raise ValueError(f"{variable} is not a plain literal") from error
            if isinstance(templates, dict) and all(
                isinstance(key, int) and isinstance(value, str) for key, value in templates.items()
            ):
                return templates
            raise ValueError(f"{variable} is not a dict of numbered strings")
    raise ValueError(f"it assigns no {variable}")


def _how_to_provide(source: PromptSource) -> str:
    return (
        f"The system prompt 'chart-rvr' is {source.variable} of {source.path} in {source.repository} at commit "
        f"{source.commit[:7]} (template 4; 1 for direct prompting); the authors' repository has no license, so "
        "this project fetches that text instead of shipping it. "
        f"On a machine without internet, download {source.download_url} elsewhere (or run `git show "
        f"{source.commit}:{source.path}` in a clone of {source.repository}) and pass the file with "
        "--system-prompt-file PATH (system_prompt_file=PATH); or use --system-prompt project, this project's "
        "own wording."
    )


def _verified(file_text: str, template: int, source: PromptSource, where: str) -> str:
    """Template ``template`` of a prompts.py's text, checked against its pinned hash."""
    try:
        templates = extract_templates(file_text, source.variable)
    except ValueError as error:
        raise PromptUnavailableError(
            f"{where} is not the authors' {source.path}: {error}. {_how_to_provide(source)}"
        ) from None
    if template not in templates:
        raise PromptUnavailableError(
            f"{where} has no template {template} in {source.variable}. {_how_to_provide(source)}"
        )
    found, expected = sha256_text(templates[template]), source.sha256[template]
    if found != expected:
        raise PromptUnavailableError(
            f"{where} does not hold the authors' text of {source.names(template)}: its SHA-256 is {found}, "
            f"expected {expected}. Use the file at that commit unchanged. {_how_to_provide(source)}"
        )
    return templates[template]


def _download(source: PromptSource) -> str:
    try:
        with urllib.request.urlopen(source.download_url, timeout=_DOWNLOAD_TIMEOUT_SECONDS) as response:
            return response.read().decode("utf-8")
    except (OSError, urllib.error.URLError, UnicodeDecodeError) as error:
        raise PromptUnavailableError(
            f"Could not download {source.download_url} ({type(error).__name__}: {error}). " + _how_to_provide(source)
        ) from None


def cached_prompts_file(source: PromptSource, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the downloaded ``prompts.py`` is kept: ``<cache root>/chart-rvr-prompts/<commit>/prompts.py``."""
    from .data import cache_root

    return Path(cache_dir or cache_root()) / "chart-rvr-prompts" / source.commit / source.path


def authors_template(
    template: int,
    prompts_file: str | os.PathLike | None = None,
    *,
    source: PromptSource | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> SystemPrompt:
    """The authors' template ``template`` (4: chain of thought, 1: direct), verified by its pinned SHA-256.

    Args:
        template: a template number pinned in ``source.sha256``.
        prompts_file: a local copy of the authors' ``prompts.py`` (cached once verified, so later runs
            and evaluations need neither it nor the network); when None, the cached copy, else a
            download from the pinned commit (then cached).
        source: where the templates live and their hashes (default :data:`CHART_RVR_PROMPTS`).
        cache_dir: the cache root (default ``data.cache_root()``).

    Returns:
        A :class:`SystemPrompt` whose ``origin`` names the file it was read from.

    Raises:
        PromptUnavailableError: no copy and no download, or a text whose hash does not match.
    """
    source = source or CHART_RVR_PROMPTS
    if template not in source.sha256:
        raise ValueError(f"Template {template} has no pinned SHA-256; choose one of {sorted(source.sha256)}.")
    name = source.names(template)
    if prompts_file is not None:
        path = Path(prompts_file).expanduser()
        if not path.is_file():
            raise PromptUnavailableError(f"--system-prompt-file {path} does not exist. {_how_to_provide(source)}")
        file_text = path.read_text(encoding="utf-8")
        text = _verified(file_text, template, source, str(path))
        if not cached_prompts_file(source, cache_dir).is_file():
            _cache(file_text, source, cache_dir)
        return SystemPrompt(text, "chart-rvr", f"{name}, read from {path}")
    cached = cached_prompts_file(source, cache_dir)
    if cached.is_file():
        try:
            text = _verified(cached.read_text(encoding="utf-8"), template, source, str(cached))
            return SystemPrompt(text, "chart-rvr", f"{name}, cached at {cached}")
        except PromptUnavailableError:
            cached.unlink()  # a damaged cache is fetched again below
    file_text = _download(source)
    text = _verified(file_text, template, source, source.download_url)
    _cache(file_text, source, cache_dir)
    return SystemPrompt(text, "chart-rvr", f"{name}, downloaded from {source.download_url}")


def _cache(file_text: str, source: PromptSource, cache_dir: str | os.PathLike | None) -> None:
    """Keep a verified ``prompts.py`` in the cache, atomically: a cut-short write never passes for it."""
    cached = cached_prompts_file(source, cache_dir)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}.part")
    partial.write_text(file_text, encoding="utf-8")
    partial.replace(cached)


def resolve_system_prompt(
    choice: str,
    style: str = "rvr",
    prompts_file: str | os.PathLike | None = None,
    *,
    source: PromptSource | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> SystemPrompt:
    """The system prompt for a choice (``chart-rvr`` / ``project``) and a prompt style (``rvr``, ``cot``, ``direct``).

    ``chart-rvr`` is the authors' template 4 for ``rvr`` and ``cot`` and template 1 for ``direct``
    (:func:`authors_template`); ``project`` is :data:`chartrvr_nb.prompts.PROMPT_STYLES`' text.

    Example:
        >>> prompt = resolve_system_prompt("project", "direct")
        >>> prompt.text
        'Answer the question with a single word or number.'
        >>> prompt.origin
        "this project's own wording (chartrvr_nb.prompts, direct)"
    """
    if choice not in SYSTEM_PROMPT_CHOICES:
        raise ValueError(f"Unknown system prompt {choice!r}; choose one of {', '.join(SYSTEM_PROMPT_CHOICES)}.")
    if style not in PROMPT_STYLES:
        raise ValueError(f"Unknown prompt style {style!r}; choose one of {', '.join(PROMPT_STYLES)}.")
    if choice == "project":
        return SystemPrompt(
            PROMPT_STYLES[style], "project", f"this project's own wording (chartrvr_nb.prompts, {style})"
        )
    return authors_template(AUTHORS_TEMPLATE_FOR_STYLE[style], prompts_file, source=source, cache_dir=cache_dir)
