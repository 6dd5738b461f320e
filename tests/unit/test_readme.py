"""The README and the configuration reference stay true: every operator setting is documented, the README is a
short read whose links to docs/ resolve, and it shows the two commands."""

from __future__ import annotations

import re
from pathlib import Path

from processcontrol.settings import ProcessControlSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
# A five-minute read; the rest lives in docs/.
README_MAX_BYTES = 10_240


def test_every_setting_is_documented_in_the_configuration_reference() -> None:
    missing = [
        name for name in ProcessControlSettings.model_fields if f"`PROCESSCONTROL_{name.upper()}`" not in CONFIGURATION
    ]
    assert missing == []


def test_the_configuration_reference_documents_no_setting_that_does_not_exist() -> None:
    documented = set(re.findall(r"^\| `PROCESSCONTROL_([A-Z0-9_]+)` \|", CONFIGURATION, re.MULTILINE))
    assert documented == {name.upper() for name in ProcessControlSettings.model_fields}


def test_the_two_commands_are_shown() -> None:
    assert "make demo" in README
    assert "make test" in README


def test_the_readme_is_a_short_read() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size < README_MAX_BYTES, f"README.md is {size} bytes: move detail to docs/"


def test_every_docs_link_in_the_readme_exists() -> None:
    links = re.findall(r"\]\((docs/[^)#\s]+\.md)(?:#[^)]*)?\)", README)
    assert links, "the README links to docs/"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert missing == []
