"""Every verb, enumerated from the parser (a new verb is covered without editing this file):
outside a workspace, and with a bad argument, it says so in one line with the README's exit code."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from chronicle.cli import COMMAND_MODULES, build_parser

from conftest import run_cli


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    return [leaf for name, child in subs[0].choices.items() for leaf in _leaves(child, (*path, name))]


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    """The fewest arguments that parse: a value for each required positional."""
    out = []
    for a in parser._actions:
        if a.option_strings or isinstance(a, argparse._SubParsersAction):
            continue
        if a.nargs in (None, "+", 1):
            out.append(str(next(iter(a.choices))) if a.choices else "x")
    for a in parser._actions:
        if a.option_strings and a.required:
            out += [a.option_strings[0], "1"]
    return out


VERBS = _leaves(build_parser())


def test_the_enumeration_finds_every_verb() -> None:
    names = {" ".join(path) for path, _ in VERBS}
    assert {"init", "show", "report", "ingest sessions", "export session", "prices import", "audit reparse",
            "cohort plan", "search", "watch", "serve"} <= names
    assert len(names) >= 30


def test_every_verb_is_declared_one_way_by_a_command_module() -> None:
    import pkgutil
    from importlib import import_module

    import chronicle.commands

    declaring = {m.name for m in pkgutil.iter_modules(chronicle.commands.__path__)
                 if hasattr(import_module(f"chronicle.commands.{m.name}"), "register")}
    assert declaring == set(COMMAND_MODULES), "a module with register() that cli does not call, or the reverse"
    for path, parser in VERBS:
        assert callable(parser.get_default("func")), path
        assert parser.get_default("command") == " ".join(path)
        assert parser.get_default("needs_workspace") in (True, False)
    outside = {" ".join(p) for p, parser in VERBS if not parser.get_default("needs_workspace")}
    assert outside == {"init", "demo", "parse"}


def test_a_verb_under_an_undeclared_group_is_refused_by_name() -> None:
    from chronicle.commands.verbs import Verbs

    verbs = Verbs(argparse.ArgumentParser())
    with pytest.raises(KeyError, match="no group 'nope'"):
        verbs.add("x", lambda ws, args: 0, "help", "example", under="nope")
    verbs.group("g", "a group", "chronicle g x")
    verbs.group("g", "declared twice: once", "chronicle g x")
    verbs.add("x", lambda ws, args: 0, "help", "example", under="g")
    assert verbs.names == ["g"]


@pytest.mark.parametrize("path, parser", VERBS, ids=[" ".join(p) for p, _ in VERBS])
def test_outside_a_workspace_a_verb_says_what_to_run(tmp_path: Path, path: tuple[str, ...],
                                                    parser: argparse.ArgumentParser) -> None:
    if parser.get_default("needs_workspace") is False:
        pytest.skip(f"{' '.join(path)} works outside a workspace")
    nowhere = tmp_path / "not-a-workspace"
    nowhere.mkdir()
    proc = run_cli(*path, *_arguments(parser), "--root", str(nowhere), root=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 3, (proc.returncode, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "not a chronicle workspace" in err or "not a workspace" in err
    assert "init" in err
    assert not (nowhere / "data").exists(), "nothing was created there"


@pytest.mark.parametrize("path, parser", VERBS, ids=[" ".join(p) for p, _ in VERBS])
def test_a_bad_argument_gets_one_line_and_exit_2(tmp_path: Path, path: tuple[str, ...],
                                                 parser: argparse.ArgumentParser) -> None:
    proc = run_cli(*path, *_arguments(parser), "--no-such-option", root=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--no-such-option" in err


def test_a_typo_suggests_the_nearest_verb_and_root_works_after_the_verb(tmp_path: Path) -> None:
    proc = run_cli("tabels", root=tmp_path)
    assert proc.returncode == 2 and "did you mean `chronicle tables`" in proc.stderr.decode()
    ws = tmp_path / "ws"
    assert run_cli("--root", str(ws), "init", root=tmp_path).returncode == 0
    after = run_cli("tables", "--json", "--root", str(ws), root=tmp_path)
    before = run_cli("--root", str(ws), "tables", "--json", root=tmp_path)
    assert after.returncode == 0 and after.stdout == before.stdout and b'"table"' in after.stdout
    assert run_cli("search", "anything", f"--root={ws}", root=tmp_path).returncode in (0, 1)
