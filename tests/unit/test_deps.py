"""hack/deps.sh and the targets that run it: a missing Debian package is named at once, with the one command that
fixes it, before anything is built or started; as root it is installed, once.

dpkg-query, apt-get and id are stubs on PATH: the stubs' package database is a file the test writes, apt-get
records its calls (and "installs" into that file), id says which user we are. Nothing touches the machine's apt.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPS = ROOT / "hack" / "deps.sh"
# The targets that need packages, with the group they need (hack/deps.sh's groups).
TARGETS = {
    "test": ("local", "node"),
    "unit": ("local",),
    "e2e": ("local",),
    "e2e-node": ("node",),
    "demo-node": ("node",),
    "bench": ("local",),
    "bench-full": ("local",),
    "bench-node": ("node",),
}
# "At once": a dpkg-query and a message, not a build (the Go builds take minutes, a venv about 40 s).
AT_ONCE_S = 5.0

DPKG_QUERY = """#!/bin/sh
# dpkg-query -W -f FORMAT PKG...: FORMAT is hack/deps.sh's `${Package}=${db:Status-Status} `.
shift 2
status=0
for pkg in "$@"; do
  echo "$pkg" >> "$STUB/queried"
  if grep -qx "$pkg" "$STUB/installed"; then printf '%s=installed ' "$pkg"; else
    echo "dpkg-query: no packages found matching $pkg" >&2; status=1; fi
done
exit $status
"""
APT_GET = """#!/bin/sh
echo "$*" >> "$STUB/apt-get.calls"
[ -e "$STUB/apt-get.fails" ] && { echo "E: Unable to locate package $(cat "$STUB/apt-get.fails")"; exit 100; }
for arg in "$@"; do
  case "$arg" in -*|install|update|DPkg::*) ;; *) echo "$arg" >> "$STUB/installed" ;; esac
done
"""


@dataclass
class Machine:
    """The stubbed machine: who we are, what dpkg knows, what apt-get was asked."""

    stub: Path

    def env(self, uid: int) -> dict[str, str]:
        (self.stub / "bin" / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        (self.stub / "bin" / "id").chmod(0o755)
        path = f"{self.stub / 'bin'}:{os.environ['PATH']}"
        # TMPDIR: apt-get's log (kept when it fails) goes to the test's directory.
        return {**os.environ, "STUB": str(self.stub), "PATH": path, "TMPDIR": str(self.stub)}

    def install(self, *packages: str) -> None:
        with (self.stub / "installed").open("a") as db:
            db.writelines(f"{p}\n" for p in packages)

    def installed(self) -> list[str]:
        return (self.stub / "installed").read_text().split()

    def queried(self) -> list[str]:
        """The packages hack/deps.sh asked dpkg about, first run's order, once each."""
        path = self.stub / "queried"
        return list(dict.fromkeys(path.read_text().split())) if path.exists() else []

    def apt_calls(self) -> list[str]:
        path = self.stub / "apt-get.calls"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    (tmp_path / "bin").mkdir()
    for name, text in (("dpkg-query", DPKG_QUERY), ("apt-get", APT_GET)):
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    (tmp_path / "installed").touch()
    return Machine(tmp_path)


def deps(machine: Machine, *groups: str, uid: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEPS), *groups], env=machine.env(uid), capture_output=True, text=True, timeout=30, check=False
    )


def group_packages(machine: Machine, group: str) -> list[str]:
    """A group's packages, as hack/deps.sh asks dpkg about them (everything installed: it changes nothing)."""
    probe = Machine(machine.stub / f"probe-{group}")
    (probe.stub / "bin").mkdir(parents=True)
    for name in ("dpkg-query", "apt-get"):
        (probe.stub / "bin" / name).symlink_to(machine.stub / "bin" / name)
    (probe.stub / "installed").write_text("")
    deps(probe, group, uid=0)
    packages = probe.queried()
    assert packages, f"hack/deps.sh {group} asked dpkg about nothing"
    return packages


def test_the_groups_hold_what_the_tiers_use(machine: Machine) -> None:
    local, node = group_packages(machine, "local"), group_packages(machine, "node")
    # The sender tools the in-pod script tries, Debian's Lua for the Argo CD check; the node's runtime and images.
    assert {"netcat-openbsd", "ncat", "socat", "perl", "python3", "lua5.1"} <= set(local)
    assert {"docker.io", "containerd", "runc", "containernetworking-plugins", "iptables", "mmdebstrap"} <= set(node)


def test_not_root_names_every_missing_package_in_one_command(machine: Machine) -> None:
    wanted = group_packages(machine, "local")
    machine.install(wanted[0])
    done = deps(machine, "local", uid=1000)
    need = wanted[1:]
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"deps: missing Debian packages {' '.join(need)}; run: sudo apt-get install -y {' '.join(need)}"
    ]
    assert machine.apt_calls() == []


def test_not_root_the_real_node_says_root_first(machine: Machine) -> None:
    done = deps(machine, "local", "node", uid=1000)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("deps: the real node needs root")
    assert machine.apt_calls() == []


def test_as_root_installs_what_is_missing_once(machine: Machine) -> None:
    wanted = group_packages(machine, "local") + group_packages(machine, "node")
    machine.install(*wanted[::2])
    need = [p for p in wanted if p not in wanted[::2]]
    done = deps(machine, "local", "node", uid=0)
    assert done.returncode == 0, done.stderr
    assert machine.apt_calls()[1:] == [f"-o DPkg::Lock::Timeout=300 install -y -qq {' '.join(need)}"]
    assert machine.apt_calls()[0].endswith("update -qq")
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"deps: installing {' '.join(need)} (apt-get")
    assert lines[1].startswith("deps: installed in ")
    assert done.stdout == ""
    assert sorted(machine.installed()) == sorted(wanted)
    # Everything there: silent, and apt-get is not asked again.
    again = deps(machine, "local", "node", uid=0)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert len(machine.apt_calls()) == 2


def test_as_root_a_failed_install_shows_apt_gets_error(machine: Machine) -> None:
    (machine.stub / "apt-get.fails").write_text("lua5.1")
    done = deps(machine, "local", uid=0)
    assert done.returncode == 1
    assert "deps: apt-get failed" in done.stderr
    assert "E: Unable to locate package lua5.1" in done.stderr
    [log] = machine.stub.glob("processcontrol-deps.*.log")
    assert f"the last lines of {log}:" in done.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_stops_at_once_before_building(machine: Machine, tmp_path: Path, target: str) -> None:
    """`make TARGET` as a user, on a machine with none of the packages: the one line, nothing built (not even the
    virtualenv every target needs first)."""
    venv = tmp_path / "venv"
    began = time.monotonic()
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), target, f"VENV={venv}"],
        env=machine.env(1000),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - began
    assert done.returncode != 0
    [line] = [line for line in done.stderr.splitlines() if line.startswith("deps: ")]
    expected = "the real node needs root" if "node" in TARGETS[target] else "missing Debian packages"
    assert line.startswith(f"deps: {expected}")
    assert done.stdout == ""
    assert not venv.exists()
    assert took < AT_ONCE_S, f"make {target} took {took:.1f}s to say it"
