"""`kubectl processcontrol`: the same commands with kubectl's flags before or after them, and shell completion
(the completer against the real parsers; the bash script run by a real bash)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from processcontrol import cli
from processcontrol.commands import completion, run

BIN = Path(sys.executable).parent


def parsed(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> argparse.Namespace:
    """The arguments the handler would get, without running it."""
    seen: list[argparse.Namespace] = []

    def keep(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(cli, "handler", lambda args: keep)
    assert cli.kubectl_main(argv) == 0
    return seen[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "kubecf", "--context", "prod", "--kubeconfig", "k", "describe", "db"],
        ["describe", "db", "-n", "kubecf", "--context", "prod", "--kubeconfig", "k"],
        ["-n", "kubecf", "describe", "db", "--context", "prod", "--kubeconfig", "k"],
    ],
)
def test_kubectls_flags_go_before_or_after_the_command(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    args = parsed(monkeypatch, argv)
    assert (args.namespace, args.context, args.kubeconfig, args.name) == ("kubecf", "prod", "k", "db")
    assert args.all_namespaces is False


def test_all_namespaces_before_or_after_get_and_nowhere_else(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert parsed(monkeypatch, ["-A", "get"]).all_namespaces is True
    assert parsed(monkeypatch, ["get", "-A"]).all_namespaces is True
    assert parsed(monkeypatch, ["get"]).namespace is None
    with pytest.raises(SystemExit) as exited:
        cli.kubectl_main(["-A", "describe", "db"])
    assert exited.value.code == 2
    assert "-A/--all-namespaces applies to get only, not to describe" in capsys.readouterr().err


def test_the_operators_own_all_namespaces_flag_is_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []

    def keep(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(cli, "handler", lambda args: keep)
    assert cli.main(["operator", "-A"]) == 0
    assert seen[0].all_namespaces is True and seen[0].namespace == []


def test_the_plugin_has_the_cluster_commands_only() -> None:
    assert set(completion._subcommands(cli.build_plugin_parser())) == {
        "suspend", "resume", "get", "describe", "completion"
    }  # fmt: skip


def test_describe_prints_the_object_as_json_or_yaml(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    obj = {"apiVersion": "processcontrol.dev/v1alpha1", "kind": "ProcessSuspension", "metadata": {"name": "db"}}

    class Client:
        async def get_suspension(self, namespace: str, name: str) -> dict[str, Any]:
            return obj

        def close(self) -> None:
            pass

    monkeypatch.setattr(run, "connect", lambda args: Client())
    assert cli.kubectl_main(["describe", "db", "-n", "kubecf", "-o", "json"]) == 0
    assert '"kind": "ProcessSuspension"' in capsys.readouterr().out
    assert cli.kubectl_main(["describe", "db", "-n", "kubecf", "-o", "yaml"]) == 0
    assert "kind: ProcessSuspension\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([""], ["completion", "describe", "get", "resume", "suspend"]),
        (["de"], ["describe"]),
        (["get", "-o", ""], ["wide", "yaml", "json"]),
        (["suspend", "db", "--probes", "S"], ["Skip"]),
        (["-n", "kubecf", "get", "--all"], ["--all-namespaces"]),
        (["completion", ""], ["bash", "zsh", "fish"]),
        (["describe", "db", ""], []),  # one NAME only
    ],
)
def test_completion_follows_the_parser(words: list[str], expected: list[str]) -> None:
    assert completion.candidates(cli.build_plugin_parser(), words) == expected


def test_completion_of_names_asks_the_cluster_the_words_name(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, list[str]]] = []

    def lookup(what: str, before: list[str]) -> list[str]:
        asked.append((what, list(before)))
        return {"suspensions": ["restore-db", "api-freeze"], "namespaces": ["kubecf", "default"]}.get(what, [])

    monkeypatch.setattr(completion, "_lookup", lookup)
    parser = cli.build_plugin_parser()
    assert completion.candidates(parser, ["describe", "-n", "kubecf", "re"]) == ["restore-db"]
    assert asked[-1] == ("suspensions", ["describe", "-n", "kubecf"])
    assert completion.candidates(parser, ["get", "-n", "k"]) == ["kubecf"]
    assert completion.candidates(parser, ["suspend", ""]) == []
    assert asked[-1][0] == "instance-groups"


def test_an_unreachable_cluster_completes_nothing(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    assert completion.candidates(cli.build_plugin_parser(), ["--kubeconfig", str(kubeconfig), "describe", ""]) == []


def bash_complete(program: str, line: str) -> list[str]:
    """COMPREPLY for `line` (completing its last word) after sourcing `program completion bash`."""
    words = line.split(" ")
    script = (
        f"source <({program} completion bash); COMP_WORDS=({' '.join(repr(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; _{program.replace('-', '_')}; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", KUBECONFIG="/nonexistent")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=True)
    return [w for w in done.stdout.splitlines() if w]


def test_bash_completes_commands_and_flags() -> None:
    assert bash_complete("processcontrol", "processcontrol su") == ["suspend"]
    assert bash_complete("kubectl-processcontrol", "kubectl-processcontrol get -o j") == ["json"]


def test_kubectls_plugin_completion_speaks_cobras_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.kubectl_complete(["get", "-o", "y"]) == 0
    assert capsys.readouterr().out == "yaml\n:4\n"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shells_script_asks_the_completer(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", shell]) == 0
    assert "processcontrol __complete " in capsys.readouterr().out
