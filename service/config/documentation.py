"""The documentation generated from the options: the README's table and the example configuration file.

Kept apart from the options themselves (`options.py`) and from loading: it only reads the option tree, and
tests check the README and `deploy/invite-ledger.example.toml` against it.
"""

from __future__ import annotations

import json
from typing import Any

from service.config.option_tree import iter_options


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return repr(value)


def options_markdown() -> str:
    """The README's table of options."""
    lines = ["| option | type | default | environment | meaning |", "| --- | --- | --- | --- | --- |"]
    for info in iter_options():
        default = "unset" if info.default is None else f"`{_toml_value(info.default)}`"
        env = ", ".join(f"`{n}`" for n in (*info.env, *info.fallback_env))
        lines.append(f"| `{info.key}` | {info.type_name} | {default} | {env} | {info.doc} |")
    return "\n".join(lines) + "\n"


def render_example() -> str:
    """The example file: every option with its documentation, defaults set, the rest commented out."""
    out = [
        "# invite-ledger configuration: every option, with its default. Check a file with",
        "#   invite-ledger config check FILE",
        "# Environment variables override the file (DISCORD_TOKEN, INVITE_LEDGER_<SECTION>_<KEY>).",
    ]
    section = None
    for info in iter_options():
        table = info.key.rpartition(".")[0]
        if table != section:
            section = table
            out += ["", f"[{table}]"]
        out.append(f"# {info.doc}")
        if info.default is None:
            out.append(f"# {info.key.rpartition('.')[2]} = {info.example}")
        else:
            out.append(f"{info.key.rpartition('.')[2]} = {_toml_value(info.default)}")
    return "\n".join(out) + "\n"


def missing_from_example(text: str) -> list[str]:
    """Options (dotted keys) that an example file does not show, set or commented out, with their doc line
    right above them in the right table."""
    shown: set[str] = set()
    table, previous = "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            table = line.strip("[]").strip()
        else:
            body = line.removeprefix("#").strip()
            if "=" in body and previous.startswith("#"):
                shown.add(f"{table}.{body.split('=', 1)[0].strip()}|{previous.removeprefix('#').strip()}")
        previous = line
    return [info.key for info in iter_options() if f"{info.key}|{info.doc}" not in shown]
