"""The `processcontrol` command line: the in-pod commands import the standard library only; every handler exists."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from processcontrol.cli import build_parser, handler, main

# Run in a fresh interpreter: which modules did the command import, beyond what the interpreter had at start?
IMPORTS_OF = """
import json, sys
before = set(sys.modules)
from processcontrol.cli import main
code = main(sys.argv[1:])
new = sorted(set(sys.modules) - before)
print(json.dumps({"code": code, "modules": new}))
"""


def imported_by(argv: list[str]) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_OF, *argv], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(done.stdout.splitlines()[-1])
    return report["code"], report["modules"]


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "STOP", "--all"],
        ["send", "START", "--job", "j", "--process", "p"],
        ["status"],
        ["status", "-o", "json"],
    ],
)
def test_the_in_pod_commands_import_only_the_standard_library(argv: list[str], tmp_path: Path) -> None:
    """`processcontrol send` is the in-pod script's first sender, run on every suspension: no kopf, no kubernetes
    client, no pydantic, nothing but the standard library and the containerrun client."""
    (tmp_path / "data").mkdir()
    code, modules = imported_by([*argv, "--base-dir", str(tmp_path)])
    assert code in (0, 1)  # 1: `send` found no socket, which it reports
    ours = {name for name in modules if name.split(".")[0] == "processcontrol"}
    assert ours <= {
        "processcontrol",
        "processcontrol.cli",
        "processcontrol.containerrun",
        "processcontrol.containerrun.protocol",
        "processcontrol.containerrun.client",
    }
    others = {name.split(".")[0] for name in modules} - {"processcontrol"}
    assert others <= sys.stdlib_module_names, sorted(others - sys.stdlib_module_names)


def test_an_operator_side_command_imports_its_dependencies_only_when_it_runs(tmp_path: Path) -> None:
    """The check above is not vacuous: the same probe sees pydantic and yaml come in for `processcontrol crd`."""
    code, modules = imported_by(["crd"])
    assert code == 0
    assert {"pydantic", "yaml", "processcontrol.api.models"} <= set(modules)
    assert "kopf" not in modules


def test_every_subcommand_names_a_handler_that_exists() -> None:
    parser = build_parser()
    (subcommands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subcommands.choices) == {"crd", "send", "status", "operator", "suspend", "resume", "get", "describe"}
    for name, subparser in subcommands.choices.items():
        args = argparse.Namespace(handler=subparser.get_default("handler"))
        assert callable(handler(args)), name


@pytest.mark.parametrize(
    ("env", "argv", "named"),
    [
        ({}, ["--namespace", "kubecf", "--namespace", "kube-system"], "kube-system"),
        ({"PROCESSCONTROL_EXCLUDED_NAMESPACES": "kube-system,cf-db"}, ["-n", "cf-db"], "cf-db"),
    ],
)
def test_the_operator_refuses_to_watch_an_excluded_namespace(
    env: dict[str, str],
    argv: list[str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Before kopf starts: a suspension there would otherwise wait for a status that never comes.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["operator", *argv]) == 2
    error = capsys.readouterr().err
    assert f"--namespace {named}: excluded by PROCESSCONTROL_EXCLUDED_NAMESPACES" in error
