"""The clients people use today drive containerrun exactly as in the docs and the seed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import DEADLINE, Start

CLIENTS = {
    "openbsd-nc": "echo {command} | nc.openbsd -w 1 -uU {sock}",
    "ncat": "echo {command} | ncat -w 1 --unixsock --udp {sock}",
    "socat": "echo {command} | socat - UNIX-SENDTO:{sock}",
}

# The seed's loop, verbatim but for the base directory; `nc` is whichever nc is first on PATH.
SEED_LOOP = "for sock in $(find {base}/data -name '*_containerrun.sock'); do echo STOP | nc -w 1 -uU $sock; done"
SEED_LOOP_NCAT = (
    "for sock in $(find {base}/data -name '*_containerrun.sock'); do echo STOP | nc -w 1 --unixsock --udp $sock; done"
)


def sh(script: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(["sh", "-c", script], check=True, timeout=DEADLINE, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_stops_and_starts(start: Start, client: str) -> None:
    tool = CLIENTS[client].split("|")[1].split()[0]
    assert shutil.which(tool), f"{tool} is not installed (make deps installs it)"
    run = start(["sleep", "1000"])
    pid = run.wait_running()
    sh(CLIENTS[client].format(command="STOP", sock=run.sock))
    run.wait_stopped(pid)
    sh(CLIENTS[client].format(command="START", sock=run.sock))
    run.wait_running(other_than=pid)


@pytest.mark.parametrize(
    ("nc", "loop"), [("nc.openbsd", SEED_LOOP), ("ncat", SEED_LOOP_NCAT)], ids=["openbsd-nc", "ncat"]
)
def test_seed_loop_stops_every_process(start: Start, base_dir: Path, nc: str, loop: str) -> None:
    runs = [start(["sleep", "1000"], job=job, process=process) for job, process in [("a", "a1"), ("b", "b_2")]]
    pids = [run.wait_running() for run in runs]
    shims = base_dir / "bin"
    shims.mkdir()
    nc_path = shutil.which(nc)
    assert nc_path, f"{nc} is not installed"
    (shims / "nc").symlink_to(nc_path)
    sh(loop.format(base=base_dir), env={**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"})
    for run, pid in zip(runs, pids, strict=True):
        run.wait_stopped(pid)
