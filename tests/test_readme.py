"""The README against the code, so it cannot drift: every `invite-ledger ...` line parses with the real
command line, the documented subcommands answer --help, the example configuration passes `config check`,
the configuration table is `options_markdown()`, and every slash command and option the README shows exists
in `commands/definitions.py` (and takes the example's values), and the other way round.

Nothing here runs the bot or the demo (tests/test_demo.py does); the whole file takes a few seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service import cli, metrics
from service.config import iter_options, options_markdown
from service.projection.export import COLUMNS
from service.records import AttributionKind, JoinFlag

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")

CONFIG_START = "<!-- config-table:start -->"
CONFIG_END = "<!-- config-table:end -->"
SHELL_LANGUAGES = {"sh", "bash", "console", "shell"}

# --- reading the README -------------------------------------------------------------------------------

_FENCE = re.compile(r"^([ \t]*)```([\w-]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
_INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def code_blocks() -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [(m.group(2).lower(), textwrap.dedent(m.group(3))) for m in _FENCE.finditer(TEXT)]


def prose() -> str:
    """The README without its fenced blocks (where inline code spans live)."""
    return _FENCE.sub("", TEXT)


def logical_lines(body: str) -> Iterator[str]:
    """Lines of a shell block with backslash continuations joined."""
    pending = ""
    for raw in body.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        yield pending + raw
        pending = ""
    if pending:
        yield pending


def _strip_prefixes(tokens: list[str]) -> list[str]:
    """Drop a prompt, `sudo [-u USER]`, `VAR=value` assignments, `docker [compose] exec [flags] NAME`, and
    `docker run ... invite-ledger` (the image, whose entry point is the program)."""
    while tokens:
        if tokens[0] == "$" or re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):
            tokens = tokens[1:]
        elif tokens[0] == "sudo":
            tokens = tokens[3:] if tokens[1:2] == ["-u"] else tokens[1:]
        elif tokens[:2] == ["docker", "run"]:
            # The image is named invite-ledger and its entry point is the program, so what follows the
            # image name is the program's arguments (none: the image's default command).
            if "invite-ledger" not in tokens:
                return []
            image = len(tokens) - 1 - tokens[::-1].index("invite-ledger")
            return tokens[image:] if tokens[image + 1 :] else []
        elif tokens[:2] in (["docker", "exec"], ["docker", "compose"]):
            rest = tokens[3:] if tokens[1] == "compose" else tokens[2:]
            if tokens[1] == "compose" and tokens[2:3] != ["exec"]:
                return []
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            tokens = rest[1:]  # the container or service name
        else:
            break
    return tokens


def _is_program(token: str) -> bool:
    """`invite-ledger` or a path to the installed script (not a directory that happens to share the name)."""
    return token == "invite-ledger" or token.endswith("bin/invite-ledger")


def _command_tokens(line: str) -> list[str] | None:
    """The arguments after `invite-ledger` if `line` runs it, else None."""
    line = line.strip()
    if "invite-ledger" not in line:
        return None
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return None
    tokens = _strip_prefixes(tokens)
    if tokens and _is_program(tokens[0]):
        # A pipeline or a list after the command belongs to the shell, not to it.
        for index, token in enumerate(tokens):
            if token in ("|", "||", "&&", ";", ">", "2>", ">>", "2>&1"):
                return tokens[1:index]
        return tokens[1:]
    return None


def documented_command_lines() -> list[tuple[str, list[str]]]:
    """(line, args) of every invite-ledger command in a shell block or an inline code span."""
    found = []
    for language, body in code_blocks():
        if language in SHELL_LANGUAGES:
            for line in logical_lines(body):
                args = _command_tokens(line)
                if args is not None:
                    found.append((line.strip(), args))
    for span in _INLINE_CODE.findall(prose()):
        args = _command_tokens(span)
        if args:  # a bare `invite-ledger` in prose names the program, it does not run it
            found.append((span, args))
    return found


COMMAND_LINES = documented_command_lines()

# --- the real command line ----------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _walk(args: list[str]) -> tuple[tuple[str, ...], argparse.ArgumentParser]:
    parser, path = cli.build_parser(), []
    for token in args:
        choices = _subcommands(parser)
        if token not in choices:
            break
        path.append(token)
        parser = choices[token]
    return tuple(path), parser


def command_path(args: list[str]) -> tuple[str, ...]:
    """The subcommand words that `args` selects, e.g. ("wal", "dump")."""
    return _walk(args)[0]


def selected_parser(args: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser that reads the options of `args`."""
    return _walk(args)[1]


def all_command_paths() -> list[tuple[str, ...]]:
    """Every subcommand of the real parser, nested ones included."""
    out: list[tuple[str, ...]] = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for name, sub in _subcommands(parser).items():
            out.append((*path, name))
            walk(sub, (*path, name))

    walk(cli.build_parser(), ())
    return out


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """`invite-ledger ARGV` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # --help and usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


# --- commands ------------------------------------------------------------------------------------------


def test_the_readme_shows_make_run_and_make_test_first() -> None:
    first_block = code_blocks()[0][1]
    lines = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert lines[:2] == ["make run", "make test"]


def test_the_readme_documents_invite_ledger_commands() -> None:
    assert len(COMMAND_LINES) >= 10, COMMAND_LINES


@pytest.mark.parametrize(("line", "args"), COMMAND_LINES, ids=[line for line, _ in COMMAND_LINES])
def test_every_command_line_parses(line: str, args: list[str]) -> None:
    parser = cli.build_parser()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            namespace = parser.parse_args(args)
        except SystemExit as exc:
            assert exc.code == 0 and "--help" in args, f"`{line}` does not parse: {err.getvalue().strip()}"
            return
    assert getattr(namespace, "handler", None) is not None or not args, f"`{line}` names no command"
    # argparse also takes an unambiguous prefix of an option (`--no-backup`): the README spells them whole.
    options = selected_parser(args)._option_string_actions
    for token in args:
        if token.startswith("--"):
            assert token.split("=")[0] in options, f"`{line}`: write {token} out in full"


def test_invite_ledger_help_runs() -> None:
    # The installed console script, once: it is what the README tells people to type.
    script = Path(sys.executable).with_name("invite-ledger")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    for name in _subcommands(cli.build_parser()):
        assert name in done.stdout


def test_each_documented_subcommand_answers_help() -> None:
    paths = sorted({command_path(args) for _line, args in COMMAND_LINES} - {()})
    assert paths
    for path in paths:
        code, out, err = run_main([*path, "--help"])
        assert code == 0, f"invite-ledger {' '.join(path)} --help: {err}"
        parent = " ".join(("invite-ledger", *path[:-1]))  # an alias's usage shows the command's own name
        assert out.startswith(f"usage: {parent} "), out


def test_every_subcommand_is_documented() -> None:
    documented = {command_path(args) for _line, args in COMMAND_LINES}
    shown = {path[:n] for path in documented for n in range(1, len(path) + 1)}
    missing = [" ".join(path) for path in all_command_paths() if path not in shown]
    assert not missing, f"document these in README.md: {', '.join('invite-ledger ' + m for m in missing)}"


def test_example_configuration_passes_config_check(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INVITE_LEDGER_") or name.startswith("AWS_") or name == "DISCORD_TOKEN":
            monkeypatch.delenv(name)
    monkeypatch.chdir(ROOT)
    line = "invite-ledger config check deploy/invite-ledger.example.toml"
    assert any(shown == line for shown, _ in COMMAND_LINES), f"the README should show `{line}`"
    code, out, err = run_main(shlex.split(line)[1:])
    assert code == 0, err
    assert "deploy/invite-ledger.example.toml: ok" in out


# --- configuration -------------------------------------------------------------------------------------


def test_configuration_table_is_generated() -> None:
    assert TEXT.count(CONFIG_START) == 1 and TEXT.count(CONFIG_END) == 1
    table = TEXT.split(CONFIG_START)[1].split(CONFIG_END)[0].strip("\n") + "\n"
    assert table == options_markdown(), (
        "the configuration table is out of date: replace it with the output of `invite-ledger config options`"
    )


def test_environment_variables_named_in_the_readme_exist() -> None:
    known = {name for info in iter_options() for name in (*info.env, *info.fallback_env)}
    known.add("INVITE_LEDGER_CONFIG")
    named = set(re.findall(r"\bINVITE_LEDGER_[A-Z0-9_]*[A-Z0-9]\b", TEXT))
    named.discard("INVITE_LEDGER_SECTION_KEY")  # the pattern, spelled out
    assert named <= known, f"not options: {sorted(named - known)}"


# --- slash commands ------------------------------------------------------------------------------------


def _definitions() -> dict[str, dict[str, Any]]:
    """'/name' or '/name sub' -> {option name: option} from commands/definitions.py."""
    from commands import definitions

    class Handlers:
        def __getattr__(self, _name: str) -> Callable[[Any], Any]:
            async def handler(_ctx: Any) -> None:
                return None

            return handler

    found: dict[str, dict[str, Any]] = {}
    for command in definitions.build(Handlers()):  # type: ignore[arg-type]
        sub = getattr(command, "sub_cmd_name", None)
        if not hasattr(command, "options") or str(command.name).startswith("ComponentCallback"):
            continue
        name = f"/{command.name}" + (f" {sub}" if sub else "")
        found[name] = {str(option.name): option for option in command.options or []}
    return found


# Paths in code that look like slash commands: the HTTP endpoints and the container's data directory.
NOT_COMMANDS = {"healthz", "metrics", "data"}
_SLASH = re.compile(r"^/([a-z][a-z0-9_]*)(?:\s+(.*))?$")


def documented_slash_commands() -> list[tuple[str, str, str]]:
    """(text, command name, rest) of each slash command invocation shown in code (blocks and spans)."""
    texts = [span.strip() for span in _INLINE_CODE.findall(prose())]
    for language, body in code_blocks():
        if language not in SHELL_LANGUAGES:
            texts += [line.split("  #")[0].strip() for line in body.splitlines()]
    found = []
    for text in texts:
        match = _SLASH.match(text)
        if match is None or match.group(1) in NOT_COMMANDS:
            continue
        found.append((text, match.group(1), match.group(2) or ""))
    return found


SLASH = documented_slash_commands()


def _resolve(name: str, rest: str, defined: dict[str, dict[str, Any]]) -> tuple[str, list[str]]:
    """The definitions key a usage names ("/staff_ib set") and the words after it."""
    words = rest.split()
    if words and f"/{name} {words[0]}" in defined:
        return f"/{name} {words[0]}", words[1:]
    return f"/{name}", words


def test_slash_commands_in_the_readme_exist() -> None:
    from interactions import OptionType

    defined = _definitions()
    validators = _validators()
    assert SLASH
    for text, name, rest in SLASH:
        key, words = _resolve(name, rest, defined)
        subs = sorted(k.split()[1] for k in defined if k.startswith(f"/{name} "))
        assert key in defined or subs, f"`{text}`: no slash command /{name} in commands/definitions.py"
        assert key in defined, f"`{text}`: /{name} needs one of its subcommands: {', '.join(subs)}"
        declared = defined[key]
        # A text option's value may have spaces (`reason:showed the link`): the words after it are its.
        joined: list[str] = []
        for w in words:
            option = w.split(":", 1)[0] if re.match(r"\w+:", w) else None
            after_text = (
                joined
                and declared.get(joined[-1].split(":", 1)[0]) is not None
                and (declared[joined[-1].split(":", 1)[0]].type == OptionType.STRING)
            )
            if option is None and after_text and not w.startswith("@"):
                joined[-1] += f" {w}"
            else:
                joined.append(w)
        words = joined
        given = dict(w.split(":", 1) for w in words if re.match(r"\w+:", w))
        for option, value in given.items():
            assert option in declared, f"`{text}`: {key} has no option {option} (only {', '.join(declared)})"
            if declared[option].type == OptionType.USER:
                assert value.startswith("@"), f"`{text}`: {option} takes a member, written @name"
            elif option in validators:
                validators[option](value)  # BadInput says why staff typing this example would be refused
        if given:  # an example invocation, not a mention in prose: it must be complete
            required = {option for option, opt in declared.items() if opt.required}
            assert required <= set(given), f"`{text}`: {key} also needs {sorted(required - set(given))}"
        others = [w for w in words if not re.match(r"\w+:", w)]
        # The brief's shorthand `/lookup_user_invite @JohnDoe` fills the one required member option.
        assert all(w.startswith("@") for w in others), f"`{text}`: {others} are not options of {key}"


def _validators() -> dict[str, Callable[[str], Any]]:
    from commands import options

    return {
        "user_id": options.snowflake,
        "invite_code": options.invite_code,
        "since": options.when,
        "until": options.when,
        "ib_link": options.ib_link,
        "ib_code": options.ib_code,
        "format": options.export_format,
    }


def test_every_slash_command_is_documented() -> None:
    shown = set()
    for _text, name, rest in SLASH:
        shown.add(f"/{name}")
        if rest.split():
            shown.add(f"/{name} {rest.split()[0]}")
    missing = sorted(name for name in _definitions() if name not in shown)
    assert not missing, f"document these slash commands in README.md: {missing}"


# --- formats -------------------------------------------------------------------------------------------


def test_csv_columns_are_the_exports() -> None:
    match = re.search(r"<!-- csv-columns -->\s*\n```text\n(.*?)\n```", TEXT, re.S)
    assert match, "the README should list the CSV columns after <!-- csv-columns -->"
    assert tuple(match.group(1).split(",")) == COLUMNS


def test_attribution_kinds_and_flags_are_all_named() -> None:
    for value in [*AttributionKind, *JoinFlag]:
        assert f"`{value.value}`" in TEXT, f"the README does not explain `{value.value}`"


def test_metric_names_exist() -> None:
    known = {value for name, value in vars(metrics).items() if name.isupper() and isinstance(value, str)}
    named = set(re.findall(r"\binvite_ledger_[a-z_]+\b", TEXT))
    assert named, "the README should name the metrics"
    assert named <= known, f"not metrics: {sorted(named - known)}"


def test_relative_links_point_at_files() -> None:
    for target in re.findall(r"\]\((?!https?://|#|mailto:)([^)#\s]+)", TEXT):
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not - or _), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_anchor_links_point_at_headings() -> None:
    anchors = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", prose(), re.M)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", TEXT):
        assert anchor in anchors, f"README.md links to #{anchor}, which is no heading"


def test_the_permissions_table_sums_to_the_invite_url_and_names_each_bit() -> None:
    from interactions import Permissions

    section = TEXT.split("## Creating the Discord application", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\s*\| ([^|*]+?) \| 1 << (\d+) \| (\d+) \| (.+?) \|$", section, re.M)
    assert [int(value) for _, _, value, _ in rows] == [1 << int(bit) for _, bit, _, _ in rows]
    total = sum(int(value) for _, _, value, _ in rows)
    assert f"permissions={total}\n" in section and f"**{total}**" in section
    names = {name.split(" (")[0].upper().replace(" ", "_"): 1 << int(bit) for name, bit, _, _ in rows}
    for name, bit in names.items():  # each row's bit is the permission Discord (and the library) names so
        assert Permissions[name] == bit, name
    # The audit log's invite deletions (final use counts) reach only bots with View Audit Log.
    assert names["VIEW_AUDIT_LOG"] == Permissions.VIEW_AUDIT_LOG
    assert "final use count" in section
