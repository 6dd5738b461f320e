"""Shell completion: the scripts for bash, zsh and fish, and the candidates they ask for.

Every shell's script only hands the words typed so far to `PROGRAM __complete WORD... CURRENT` and offers what it
prints, one candidate a line; kubectl's completion of the plugin does the same through `kubectl_complete-
processcontrol`. So there is one completer, here, walking the very parser that parses the command, and the
scripts cannot drift from the flags. Namespaces, contexts, suspension and instance-group names come from the
cluster; a cluster that cannot be reached within a few seconds offers none (completion never prints an error).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processcontrol.k8s import KubeClient

# Flags whose value is a name from the cluster or the kubeconfig.
_NAMESPACE, _CONTEXT = ("-n", "--namespace"), ("--context",)
LOOKUP_TIMEOUT_S = 3.0

BASH = """# bash completion for {program} (source <({program} completion bash))
_{function}() {{
    local IFS=$'\\n'
    COMPREPLY=($(compgen -W "$({program} __complete "${{COMP_WORDS[@]:1:COMP_CWORD}}" 2>/dev/null)" \\
        -- "${{COMP_WORDS[COMP_CWORD]}}"))
}}
complete -o default -F _{function} {program}
"""

ZSH = """#compdef {program}
# zsh completion for {program} (source <({program} completion zsh), or save as _{program} in $fpath)
_{function}() {{
    local -a candidates
    candidates=("${{(@f)$({program} __complete "${{(@)words[2,CURRENT]}}" 2>/dev/null)}}")
    compadd -a candidates
}}
if [ "$funcstack[1]" = "_{function}" ]; then
    _{function} "$@"
else
    compdef _{function} {program}
fi
"""

FISH = """# fish completion for {program} ({program} completion fish | source)
complete -c {program} -f -a '({program} __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
"""


def script(shell: str, program: str) -> str:
    """The completion script of a shell for a program name."""
    template = {"bash": BASH, "zsh": ZSH, "fish": FISH}[shell]
    return template.format(program=program, function=program.replace("-", "_"))


def print_script(args: argparse.Namespace) -> int:
    """`processcontrol completion SHELL`."""
    sys.stdout.write(script(args.shell, args.program))
    return 0


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _flag_value(words: Sequence[str], flags: Sequence[str]) -> str | None:
    """The value given to one of these flags among the words (`-n x`, `--namespace=x`), the last one."""
    found = None
    for i, word in enumerate(words):
        if word in flags and i + 1 < len(words):
            found = words[i + 1]
        for flag in flags:
            if flag.startswith("--") and word.startswith(flag + "="):
                found = word.split("=", 1)[1]
    return found


def candidates(parser: argparse.ArgumentParser, words: Sequence[str]) -> list[str]:
    """What may come at the last word (the one being typed, maybe empty), given the words before it."""
    *before, current = list(words) or [""]
    commands = _subcommands(parser)
    options = _options(parser)
    command: argparse.ArgumentParser | None = None
    command_name = ""
    positionals: list[str] = []
    skip = False
    for word in before:
        if skip:
            skip = False
            continue
        if word.startswith("-"):
            action = (_options(command) if command else options).get(word.split("=", 1)[0])
            skip = action is not None and _takes_value(action) and "=" not in word
            continue
        if command is None and word in commands:
            command, command_name = commands[word], word
            continue
        positionals.append(word)
    scope = {**options, **(_options(command) if command else {})}
    if skip:  # the word being typed is a flag's value
        return _values(scope[before[-1]], before, current)
    if current.startswith("-"):
        return sorted(flag for flag in scope if flag.startswith(current) and flag not in ("-h", "--help"))
    if command is None:
        return sorted(name for name in commands if name.startswith(current) and not name.startswith("_"))
    return _positional(command_name, command, positionals, before, current)


def _values(action: argparse.Action, before: Sequence[str], current: str) -> list[str]:
    if action.choices is not None:
        return [str(c) for c in action.choices if str(c).startswith(current)]
    flags = set(action.option_strings)
    if flags & set(_NAMESPACE):
        return _matching(_lookup("namespaces", before), current)
    if flags & set(_CONTEXT):
        return _matching(_contexts(before), current)
    return []


def _positional(
    name: str, command: argparse.ArgumentParser, positionals: Sequence[str], before: Sequence[str], current: str
) -> list[str]:
    wanted = [a for a in command._actions if not a.option_strings and a.dest != "help"]
    if len(positionals) >= len(wanted):
        return []
    if name in ("describe", "resume", "get"):
        return _matching(_lookup("suspensions", before), current)
    if name == "suspend":
        return _matching(_lookup("instance-groups", before), current)
    return _values(wanted[len(positionals)], before, current) if wanted[len(positionals)].choices else []


def _matching(names: Sequence[str], current: str) -> list[str]:
    return sorted({n for n in names if n.startswith(current)})


def _contexts(before: Sequence[str]) -> list[str]:
    from processcontrol import k8s

    try:
        return k8s.context_names(_flag_value(before, ("--kubeconfig",)))
    except Exception:
        return []


def _lookup(what: str, before: Sequence[str]) -> list[str]:
    """Names from the cluster the words name (--kubeconfig, --context, -n); none when it cannot be reached soon."""
    # Imported and connected before the clock starts: the time limit is for the cluster's answer, not for
    # importing the client on a busy machine (that took more than the whole limit under load).
    from processcontrol import k8s

    try:
        client = k8s.connect(_flag_value(before, ("--kubeconfig",)), _flag_value(before, _CONTEXT))
    except Exception:
        return []
    try:
        return asyncio.run(_ask_in_time(client, what, before))
    except Exception:
        return []
    finally:
        client.close()


async def _ask_in_time(client: KubeClient, what: str, before: Sequence[str]) -> list[str]:
    async with asyncio.timeout(LOOKUP_TIMEOUT_S):
        return await _ask(client, what, before)


async def _ask(client: KubeClient, what: str, before: Sequence[str]) -> list[str]:
    from processcontrol import k8s
    from processcontrol.api import INSTANCE_GROUP_LABEL

    if what == "namespaces":
        return await client.list_namespaces()
    kubeconfig, context = _flag_value(before, ("--kubeconfig",)), _flag_value(before, _CONTEXT)
    namespace = _flag_value(before, _NAMESPACE) or k8s.context_namespace(kubeconfig, context) or "default"
    if what == "suspensions":
        return [str(o["metadata"]["name"]) for o in await client.list_suspensions(namespace)]
    labels = [(p.get("metadata") or {}).get("labels") or {} for p in await client.list_pods(namespace)]
    return [str(label[INSTANCE_GROUP_LABEL]) for label in labels if INSTANCE_GROUP_LABEL in label]
