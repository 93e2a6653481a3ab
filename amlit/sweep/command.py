"""Render a sweep's command for one trial exactly as the wandb agent does (``wandb_agent.py``).

Values are formatted with Python ``str()``: ``${args}`` -> ``--key=value``, ``${args_no_equals}`` -> ``--key value``,
``${args_no_boolean_flags}`` drops ``False`` and writes ``True`` as a bare ``--key``. Items that are exactly a macro
are replaced (an unknown one by nothing); ``${envvar:NAME}`` is substituted inside an item (the name itself when
the variable is unset).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from amlit.sweep.schema import DEFAULT_COMMAND, ENVVAR_MACRO


def macro_values(parameters: Mapping[str, Any]) -> dict[str, list[str]]:
    """The argument macros of the agent (``create_sweep_command_args``) for one trial's parameters."""
    flags = [f"--{name}={value}" for name, value in parameters.items()]
    no_booleans = [
        f"--{name}" if value is True else f"--{name}={value}"
        for name, value in parameters.items()
        if value is not False
    ]
    return {
        "args": flags,
        "args_no_equals": [part for name, value in parameters.items() for part in (f"--{name}", str(value))],
        "args_no_hyphens": [f"{name}={value}" for name, value in parameters.items()],
        "args_no_boolean_flags": no_booleans,
        "args_json": [json.dumps(dict(parameters))],
        "args_append_hydra": [f"+{name}={value}" for name, value in parameters.items()],
        "args_override_hydra": [f"++{name}={value}" for name, value in parameters.items()],
    }


def render_command(
    command: Sequence[Any] | None,
    parameters: Mapping[str, Any],
    program: str | None = None,
    args_json_file: Path | None = None,
    interpreter: str = "python",
) -> list[str]:
    """The argv the agent runs for ``parameters``; ``interpreter`` replaces ``${interpreter}`` (the agent: python).

    When the command holds ``${args_json_file}``, the parameters are written as JSON to ``args_json_file``.
    """
    values = macro_values(parameters)
    values["interpreter"] = [interpreter]
    values["program"] = [program] if program is not None else []
    values["env"] = ["/usr/bin/env"] if platform.system() != "Windows" else []
    if args_json_file is not None:
        values["args_json_file"] = [str(args_json_file)]
    items = [str(item) for item in (command or DEFAULT_COMMAND)]
    if "${args_json_file}" in items:
        if args_json_file is None:
            raise ValueError("the command uses ${args_json_file}: pass args_json_file, where the JSON is written")
        args_json_file.write_text(values["args_json"][0], encoding="utf-8")
    argv: list[str] = []
    for item in items:
        item = ENVVAR_MACRO.sub(lambda match: os.environ.get(match.group(1), match.group(1)), item)
        if item.startswith("${") and item.endswith("}"):
            argv += values.get(item[2:-1]) or []
        else:
            argv.append(item)
    return argv
