"""Find a swept parameter that a later argument of the trial's command overrides.

LightningCLI applies its arguments in order, so in ``fit ${args} --config extra.yaml`` a ``model.head.margin`` in
``extra.yaml`` wins over the swept ``--model.head.margin=0.25``: every trial would train the same margin while
trials.csv and the report rank them as different ones. The same holds for an ``--extra_args`` that sets a swept key,
or a later ``--model.head=...`` (a new head class starts from its own defaults). Read from the argv alone, so every
trial is checked before any runs, whatever its values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

CONFIG_FLAGS = ("--config", "-c")
SKIPPED = ("init_args", "dict_kwargs")  # jsonargparse's nesting of a class's arguments: not part of the setting's name


def setting(name: str) -> tuple[str, ...]:
    """A setting's name without jsonargparse's ``init_args``/``class_path`` parts: ``model.head.init_args.margin``
    and ``model.head.margin`` are the same setting, ``model.head.class_path`` is ``model.head``."""
    parts = tuple(part for part in name.split(".") if part not in SKIPPED)
    return parts[:-1] if parts and parts[-1] == "class_path" else parts


def _config_settings(document: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every setting a YAML mapping sets, as ``setting`` names; a ``class_path`` sets its parent: a head given by
    class replaces the whole ``model.head``."""
    if not isinstance(document, Mapping):
        yield prefix
        return
    for key, value in document.items():
        yield from _config_settings(value, setting(".".join([*prefix, str(key)])))


def config_settings(value: str) -> set[tuple[str, ...]]:
    """The settings a ``--config`` value sets: a YAML file, or YAML given inline (as sweeps/table1.yaml does).
    Nothing for a file that cannot be read: the CLI check that runs next reports it."""
    try:
        path = Path(value)
        text = path.read_text(encoding="utf-8") if path.is_file() else value
        document = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError):
        return set()
    return set(_config_settings(document)) if isinstance(document, Mapping) else set()


def _arguments(cli_args: Sequence[str]) -> Iterator[tuple[int, str, str | None]]:
    """``(position, name, value)`` of each ``--name=value``, ``--name value``, ``-c value`` or bare ``--flag``."""
    position = 0
    while position < len(cli_args):
        item = cli_args[position]
        if item.startswith("--") and "=" in item:
            name, value = item[2:].split("=", 1)
            yield position, name, value
        elif item.startswith("-") and item not in ("-", "--"):
            following = cli_args[position + 1] if position + 1 < len(cli_args) else None
            name = "config" if item == "-c" else item.lstrip("-")
            if following is not None and not following.startswith("-"):
                yield position, name, following
                position += 1
            else:
                yield position, name, None
        position += 1


def _settings_of(name: str, value: str | None) -> set[tuple[str, ...]]:
    return config_settings(value) if name == "config" and value is not None else {setting(name)}


def _overrides(swept: set[tuple[str, ...]], later: set[tuple[str, ...]]) -> bool:
    """Whether a later argument replaces a swept setting: the same setting, or one that holds it."""
    return any(late == own[: len(late)] for own in swept for late in later)


def overridden_parameters(cli_args: Sequence[str], parameters: Mapping[str, Any]) -> list[str]:
    """For one trial's amlit CLI arguments, one line per swept parameter that a later argument overrides, naming
    both; empty when none is. ``parameters`` are the trial's (the names ``${args}`` wrote as ``--name=value``)."""
    arguments = list(_arguments(cli_args))
    problems = []
    for name, swept_value in parameters.items():
        # the swept argument is the last --name with the trial's value (the command may set it earlier too)
        placed = [
            (position, value)
            for position, argument, value in arguments
            if argument == name and (value == str(swept_value) or (value is None and swept_value is True))
        ]
        if not placed:
            continue  # not passed as --name (e.g. ${args_json_file}): nothing to compare
        position, value = placed[-1]
        swept = _settings_of(name, value)
        for later_position, later_name, later_value in arguments:
            if later_position > position and _overrides(swept, _settings_of(later_name, later_value)):
                spelled = f"--{later_name}" + (f"={later_value}" if later_value is not None else "")
                problems.append(f"{name} (set by --{name}={value}) is overridden by the later {spelled}")
                break
    return problems
