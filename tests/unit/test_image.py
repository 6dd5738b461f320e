"""The operator image's inputs: requirements.lock pins every dependency with hashes, and the Dockerfile installs
from it alone (pip --require-hashes), then the package without fetching anything."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def pins() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, its hashes), from the lock's `name==version \\ --hash=...` entries."""
    out: dict[str, tuple[Version, list[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", entry)
        if match:
            name = re.sub(r"[-_.]+", "-", match[1]).lower()
            out[name] = (Version(match[2]), re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return out


def test_every_dependency_and_the_build_backend_are_pinned_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [Requirement(r) for r in project["project"]["dependencies"] + project["build-system"]["requires"]]
    locked = pins()
    stale = [
        str(r) for r in wanted if (name := re.sub(r"[-_.]+", "-", r.name).lower()) not in locked
        or not r.specifier.contains(locked[name][0], prereleases=True)
    ]  # fmt: skip
    assert stale == [], "requirements.lock does not satisfy pyproject.toml: run `make lock`"
    unhashed = [name for name, (_, hashes) in locked.items() if not hashes]
    assert unhashed == []
    assert len(locked) > len(wanted), "the lock pins the dependencies of the dependencies too"


def test_the_dockerfile_installs_only_what_the_lock_pins() -> None:
    lock_install = re.search(r"pip install ([^\n]*) -r requirements\.lock", DOCKERFILE)
    assert lock_install is not None
    assert {"--require-hashes", "--no-deps"} <= set(lock_install[1].split())
    package = re.search(r"pip install ([^\n]*) \. ", DOCKERFILE)
    assert package is not None
    # The package alone: no dependency resolved and no build backend fetched outside the lock.
    assert {"--no-deps", "--no-build-isolation"} <= set(package[1].split())
    assert DOCKERFILE.index("-r requirements.lock") < DOCKERFILE.index("--no-build-isolation .")
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text().splitlines()
