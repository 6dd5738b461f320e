"""The README stays true: every operator setting is documented."""

from __future__ import annotations

from pathlib import Path

from processcontrol.reconcile.settings import OperatorSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [name for name in OperatorSettings.model_fields if f"`PROCESSCONTROL_{name.upper()}`" not in README]
    assert missing == []


def test_the_two_commands_are_shown() -> None:
    assert "make demo" in README
    assert "make test" in README
