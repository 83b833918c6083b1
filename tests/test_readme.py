"""The README against the code: the command-line table names every subcommand and flag of the CLI's
parser (:func:`scan_core.cli.build_parser`) under its subcommand and no flag the parser lacks; every
``python -m scan_core`` command shown parses; the settings table names every ``SCAN_EXPLORER_*``
environment variable the code reads (found by walking the sources' syntax trees for ``os.environ``
and ``os.getenv`` reads and the readers of :mod:`scan_core.settings`) and no other; every field of
:class:`~scan_core.config.RunConfig`, nested ones included, is in the config table; and the README
stays a manual of at most 300 lines."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from scan_core.cli import build_parser
from scan_core.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SOURCES = [ROOT / "app.py", *(path for folder in ("scan_core", "ui", "pages") for path in sorted((ROOT / folder).rglob("*.py")))]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ENV_PREFIX = "SCAN_EXPLORER_"
MAX_LINES = 300


def section(title: str) -> str:
    """The README's ``## title`` section, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text`` (``\\|`` inside a cell kept as ``|``),
    header rows (those above a rule) and rules left out."""
    lines = text.splitlines()
    rule = lambda line: re.fullmatch(r"\|[-| ]+\|", line) is not None
    rows = []
    for line, below in zip(lines, [*lines[1:], ""]):
        if line.startswith("|") and not rule(line) and not rule(below):
            rows.append([cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """The CLI's subcommands and their parsers."""
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return dict(actions[0].choices)


def parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    """The long options of ``parser``, ``--help`` left out."""
    return {option for action in parser._actions for option in action.option_strings
            if option.startswith("--") and not isinstance(action, argparse._HelpAction)}


def readme_cli_table() -> dict[str, set[str]]:
    """``{subcommand: the flags its rows of the README's command-line table name}``; a row with an
    empty first cell continues the subcommand above it."""
    named: dict[str, set[str]] = {}
    command = None
    for cells in table_rows(section("Command line")):
        if cells[0]:
            command = cells[0].strip("`")
            named.setdefault(command, set())
        assert command is not None, "the command-line table starts with a row without a command"
        named[command] |= set(FLAG.findall(cells[1]))
    return named


def test_the_cli_table_names_every_subcommand_and_flag_of_the_parser():
    documented = readme_cli_table()
    expected = {name: parser_flags(parser) for name, parser in subcommands().items()}
    assert set(documented) == set(expected), "subcommands in the README's table differ from the parser's"
    for name, flags in expected.items():
        assert documented[name] == flags, (f"{name}: missing from the README {sorted(flags - documented[name])}, "
                                           f"not in the parser {sorted(documented[name] - flags)}")


def scan_core_commands() -> list[list[str]]:
    """The arguments after ``scan_core`` of every command in the README's code blocks and inline
    code that runs ``python -m scan_core``, ``-m scan_core`` under torchrun, or ``scan-explorer``."""
    blocks = re.findall(r"```(?:bash)?\n(.*?)```", README, flags=re.S) + re.findall(r"(?<!`)`([^`\n]+)`(?!`)", README)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0]
            found = re.search(r"(?:-m scan_core|(?<![\w/-])scan-explorer)((?:\s+\S+)*)", line)
            if found and found.group(1).strip() and not found.group(1).strip().startswith(("COMMAND", "…")):
                commands.append(shlex.split(found.group(1)))
    return commands


def test_every_scan_core_command_shown_parses():
    commands = scan_core_commands()
    assert len(commands) >= 5, commands
    parser = build_parser()
    for args in commands:
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"the README shows `python -m scan_core {' '.join(args)}`, which the parser refuses")


def test_every_flag_the_readme_gives_scan_core_is_the_parsers():
    """Flags in the command-line section and after ``scan_core`` anywhere exist in the parser (other
    tools' flags, such as torchrun's, stand before ``-m scan_core`` and are not counted)."""
    known = set().union(*map(parser_flags, subcommands().values()))
    named = {flag for args in scan_core_commands() for flag in FLAG.findall(" ".join(args))}
    named |= {flag for cells in table_rows(section("Command line")) for cell in cells for flag in FLAG.findall(cell)}
    named |= set(re.findall(r"`(--[a-z][a-z0-9-]*)", README))  # an inline span that starts with a flag
    assert named - known == set(), f"the README names flags the CLI does not have: {sorted(named - known)}"


def module_constants(tree: ast.Module) -> dict[str, str]:
    """The module-level ``NAME = "text"`` assignments of ``tree``."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def is_environ(node: ast.AST) -> bool:
    """Whether ``node`` is ``os.environ`` (or ``environ`` imported from os)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (isinstance(node, ast.Name) and node.id == "environ")


#: scan_core.settings' readers: each takes the variable's name first.
SETTINGS_READERS = ("env_int", "env_float", "env_list", "env_paths")


def reads_environment(func: ast.AST) -> bool:
    """Whether a call of ``func`` reads a variable: ``os.environ.get`` (``pop``, ``setdefault``),
    ``os.getenv`` or a reader of :mod:`scan_core.settings` (:data:`SETTINGS_READERS`)."""
    if isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault"):
        return is_environ(func.value)
    if (isinstance(func, ast.Name) and func.id in SETTINGS_READERS) or (isinstance(func, ast.Attribute) and
                                                                        func.attr in SETTINGS_READERS):
        return True
    return (isinstance(func, ast.Attribute) and func.attr == "getenv") or (isinstance(func, ast.Name) and func.id == "getenv")


def environment_reads() -> set[str]:
    """The variable names the sources read: ``os.environ.get(X)``, ``os.environ[X]``, ``X in
    os.environ``, ``os.getenv(X)``, where ``X`` is a string or a module-level string constant of any
    source (names are imported across modules)."""
    trees = [ast.parse(path.read_text(), str(path)) for path in SOURCES]
    constants: dict[str, str] = {}
    for tree in trees:
        constants.update(module_constants(tree))

    def value(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    read = set()
    for tree in trees:
        for node in ast.walk(tree):
            key = None
            if isinstance(node, ast.Call) and node.args and reads_environment(node.func):
                key = node.args[0]
            elif isinstance(node, ast.Subscript) and is_environ(node.value):
                key = node.slice
            elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
                key = node.left
            if key is not None and value(key) is not None:
                read.add(value(key))
    return read


def test_the_environment_reader_finds_every_named_variable():
    """Cross-check of :func:`environment_reads`: every string literal in the sources that is a whole
    ``SCAN_EXPLORER_*`` name is among the variables it finds read."""
    literals = {node.value for path in SOURCES for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and re.fullmatch(ENV_PREFIX + r"[A-Z_]+", node.value)}
    assert literals, "no SCAN_EXPLORER_ variable named in the sources"
    assert literals <= environment_reads(), sorted(literals - environment_reads())


def test_the_settings_table_names_every_environment_variable_the_code_reads():
    read = {name for name in environment_reads() if name.startswith(ENV_PREFIX)}
    table = {cells[0].strip("`") for cells in table_rows(section("Settings")) if cells[0].startswith(f"`{ENV_PREFIX}")}
    assert table == read, f"missing from the table {sorted(read - table)}, not read by the code {sorted(table - read)}"
    anywhere = set(re.findall(ENV_PREFIX + r"[A-Z_]+", README))
    assert anywhere <= read, f"the README names variables no code reads: {sorted(anywhere - read)}"


def config_keys(cls: type = RunConfig, prefix: str = "") -> set[str]:
    """Every field of ``cls``, a nested config's as ``section.field`` (the recorded ``hardware`` whole)."""
    keys = set()
    for f in dataclasses.fields(cls):
        nested = f.default_factory
        if nested is not dataclasses.MISSING and dataclasses.is_dataclass(nested) and f.name != "hardware":
            keys |= config_keys(nested, f"{f.name}.")
        else:
            keys.add(prefix + f.name)
    return keys


def test_the_config_table_names_every_run_setting():
    rows = [cells for cells in table_rows(section("Settings")) if not cells[0].startswith(f"`{ENV_PREFIX}")]
    named = set()
    for cells in rows:
        sections = re.findall(r"`([a-z0-9_]+)`", cells[0])
        named |= set(sections)
        for name in sections:  # a nested config's fields are listed in the default column
            named |= {f"{name}.{field}" for field in re.findall(r"`([a-z0-9_]+)`", cells[1])}
    missing = sorted(config_keys() - named)
    assert not missing, f"config.json keys missing from the README's settings table: {missing}"


def test_the_readme_is_a_manual_of_at_most_300_lines():
    assert len(README.splitlines()) <= MAX_LINES
