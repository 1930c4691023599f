"""Settings as dataclass fields that carry their help text and how people set them (the open-r1 / TRL idiom).

A settings class (``presets.Preset``, ``eval_config.EvalConfig``) declares each field with :func:`setting`;
:func:`options` reads them back as :class:`Option` objects, from which the command line generates its
flags and the 02_train form its fields, and :func:`option_overrides` turns what a person set (argparse's
namespace, a form's values) into field values; :func:`positive_int_errors` is the check of counts they all make.
Nothing here knows a particular setting.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    choices: Sequence | None = None,
    form: bool = False,
    cli: bool = True,
) -> Any:
    """A dataclass field that carries its help text and how people set it (in the field's metadata).

    Args:
        default: the field's default.
        help: what the setting does, for ``--help`` and readers of the class.
        flag: the command-line flag when it is not ``--<field-name>`` (the seed guide's names:
            ``--vlm-name`` sets ``model``). A boolean's flag is a switch that sets the opposite of
            the default: ``--<field-name>`` when the default is False, ``--no-<field-name>`` (or
            the flag given, e.g. ``--disable-gradient-checkpointing``) when it is True.
        choices: the values allowed (argparse's choices; a dropdown in the form).
        form: the 02_train form offers it too (see ``widgets.PresetForm``).
        cli: the command line offers it (False for what no flag may change, such as a preset's name).
    """
    metadata = {"help": help, "flag": flag, "choices": tuple(choices) if choices else None, "form": form, "cli": cli}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Option:
    """One field of a settings dataclass as people set it: a command-line flag and, maybe, a form field.

    Attributes:
        field: the dataclass field it sets.
        flag: the command-line flag.
        help: the field's help text.
        type: what a flag's value is parsed as (``int``, ``float``, ``str``; ``bool`` for a switch).
        default: the field's default (for a Preset, the ``paper`` preset's value).
        choices: the allowed values, or None.
        form: whether the 02_train form offers it.
    """

    field: str
    flag: str
    help: str
    type: type
    default: Any
    choices: tuple | None
    form: bool

    @property
    def dest(self) -> str:
        """The option's name in Python: argparse's ``dest``, the form's field (``--vlm-name`` -> ``vlm_name``)."""
        return self.flag.removeprefix("--").replace("-", "_")


def _value_type(hint: Any) -> type:
    """The plain type a flag parses for a field's annotation: ``int | None`` -> ``int``."""
    return next(kind for kind in typing.get_args(hint) or (hint,) if kind in (bool, int, float, str))


def options(settings_class: type) -> tuple[Option, ...]:
    """The fields of ``settings_class`` (:class:`Preset`, :class:`EvalConfig`) people set, in declaration order.

    Example:
        >>> from chartrvr_nb.eval_config import EvalConfig
        >>> from chartrvr_nb.presets import Preset
        >>> [(option.flag, option.field) for option in options(Preset)][:2]
        [('--vlm-name', 'model'), ('--train-data', 'train_data')]
        >>> [option.flag for option in options(EvalConfig) if option.type is bool]
        ['--load-in-4bit', '--compare-base', '--no-progress']
    """
    hints = typing.get_type_hints(settings_class)
    found = []
    for field in dataclasses.fields(settings_class):
        if not field.metadata.get("cli"):
            continue
        kind = _value_type(hints[field.name])
        flag = field.metadata["flag"] or (
            f"--no-{field.name}" if kind is bool and field.default else f"--{field.name}"
        ).replace("_", "-")
        found.append(
            Option(
                field.name,
                flag,
                field.metadata["help"],
                kind,
                field.default,
                field.metadata["choices"],
                field.metadata["form"],
            )
        )
    return tuple(found)


def option_overrides(settings_class: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Field values from option values keyed by :attr:`Option.dest` (argparse's namespace, a form's values).

    A value of None, or a switch left off, leaves its field alone; a switch that is on sets the
    opposite of the field's default.

    Example:
        >>> from chartrvr_nb.presets import Preset
        >>> option_overrides(Preset, {"vlm_name": "tiny", "seed": None, "disable_gradient_checkpointing": True})
        {'model': 'tiny', 'gradient_checkpointing': False}
    """
    found = {}
    for option in options(settings_class):
        value = values.get(option.dest)
        if option.type is bool:
            if value:
                found[option.field] = not option.default
        elif value is not None:
            found[option.field] = value
    return found


def is_positive_int(value: Any) -> bool:
    """Whether ``value`` is an integer above 0 (a bool is not).

    Example:
        >>> is_positive_int(3), is_positive_int(0), is_positive_int(True), is_positive_int(2.0)
        (True, False, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def positive_int_errors(settings: Any, names: Sequence[str], *, optional: bool = False) -> list[str]:
    """An error for each field among ``names`` of ``settings`` that is not a positive integer (or None, when
    ``optional``): the check every settings class makes of its counts.

    Example:
        >>> from types import SimpleNamespace
        >>> positive_int_errors(SimpleNamespace(batch_size=0, limit=None), ("batch_size", "limit"), optional=True)
        ['batch_size must be a positive integer or None, got 0']
    """
    errors = []
    for name in names:
        value = getattr(settings, name)
        if not (is_positive_int(value) or optional and value is None):
            errors.append(f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}")
    return errors
