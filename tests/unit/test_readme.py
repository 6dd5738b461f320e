"""The README and the configuration reference stay true: every operator setting is documented."""

from __future__ import annotations

from pathlib import Path

from processcontrol.reconcile.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def test_every_setting_is_documented_in_the_configuration_reference() -> None:
    missing = [
        name for name in OperatorSettings.model_fields if f"`PROCESSCONTROL_{name.upper()}`" not in CONFIGURATION
    ]
    assert missing == []


def test_the_two_commands_are_shown() -> None:
    assert "make demo" in README
    assert "make test" in README
