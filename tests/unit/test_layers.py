"""Imports go one way: the operator's modules are layered, and nothing outside the operator reaches into it.

Read from the source with ast (imports inside functions and under TYPE_CHECKING count too: a lazy import is
how the last cycle hid), so a change that breaks the order fails here, not in a reader's head.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "processcontrol"
RECONCILE = "processcontrol.reconcile"

# Top first: a module may import the modules of the layers below its own, never above it, and never another one
# of its own layer.
RECONCILE_LAYERS: tuple[tuple[str, ...], ...] = (
    ("main",),
    ("handlers",),
    ("suspension",),
    ("dispatch", "preview"),
    ("worker",),
    ("holding", "giving_back"),
    ("restarts",),
    ("ledger_writer",),
    ("reporting",),
    ("runtime",),
    ("outcomes", "leader"),
    ("pods", "backoff"),
    ("plan",),
    ("stages", "conditions", "metrics", "readiness"),
)
# Outside the operator: what the command line, the bench, the harness and the build scripts are made of.
OUTSIDE = (PACKAGE, ROOT / "bench", ROOT / "hack", ROOT / "tests" / "harness")


def imported(path: Path) -> Iterator[str]:
    """Every module the file imports, `from a import b` as `a.b` too (b may be a module)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def layer_of(name: str) -> int:
    """The layer of the operator module a name is in (`processcontrol.reconcile.plan.Mode` is in plan's)."""
    short = name.removeprefix(f"{RECONCILE}.").split(".")[0]
    return next(i for i, layer in enumerate(RECONCILE_LAYERS) if short in layer)


def test_every_operator_module_has_a_layer() -> None:
    on_disk = {p.stem for p in (PACKAGE / "reconcile").glob("*.py")} - {"__init__"}
    listed = {name for layer in RECONCILE_LAYERS for name in layer}
    assert on_disk == listed


@pytest.mark.parametrize("short", [name for layer in RECONCILE_LAYERS for name in layer])
def test_an_operator_module_imports_only_below_its_layer(short: str) -> None:
    module = f"{RECONCILE}.{short}"
    upward = sorted(
        name
        for name in set(imported(PACKAGE / "reconcile" / f"{short}.py"))
        if within(name, RECONCILE) and name != RECONCILE and layer_of(name) <= layer_of(module)
    )
    assert upward == [], f"{module} imports its own layer or one above it"


def test_nothing_outside_the_operator_imports_it() -> None:
    reaching = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for top in OUTSIDE
        for path in top.rglob("*.py")
        if not path.is_relative_to(PACKAGE / "reconcile")
        for name in set(imported(path))
        if within(name, RECONCILE)
    )
    assert reaching == [], "what both sides share belongs below reconcile/ (processcontrol/*.py)"


def test_the_operator_does_not_import_the_command_line() -> None:
    reaching = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in (PACKAGE / "reconcile").glob("*.py")
        for name in set(imported(path))
        if within(name, "processcontrol.commands") or within(name, "processcontrol.cli")
    )
    assert reaching == []
