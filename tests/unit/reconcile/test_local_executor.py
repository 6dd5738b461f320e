"""The unit tests' executor itself: what it leaves in the "pod" when an exec is cancelled."""

from __future__ import annotations

import asyncio
import os

from harness.base import pids_with_env
from harness.testing import TEST_MARKER
from processcontrol.podexec.script import READY, build_command
from processcontrol.podexec.transport import Dialogue

from .conftest import NAMESPACE, FakePod, LocalExecutor


async def test_a_cancelled_exec_leaves_no_process_of_its_script(pods: dict[str, FakePod]) -> None:
    """The script's watchdog (a subshell sleeping for the window) outlived a killed shell: a test that ended while
    an exec waited for its go-ahead failed the leak check, when the window was longer than the check's grace, and the
    cancel itself waited for the window (asyncio waits for the pipes, which the watchdog held)."""
    executor = LocalExecutor(pods)
    asked = asyncio.Event()

    async def never(_stdout: str) -> str | None:
        asked.set()
        await asyncio.Event().wait()
        return None

    marker = f"{TEST_MARKER}={os.environ[TEST_MARKER]}"
    pods_own = pids_with_env(marker)  # the pods' containerruns and their processes
    command = build_command([], [], window_s=60)
    run = asyncio.create_task(executor.run(NAMESPACE, "db-0", "c", command, Dialogue(READY, never)))
    await asyncio.wait_for(asked.wait(), 10)
    assert pids_with_env(marker) - pods_own, "the script should be waiting for its go-ahead"
    run.cancel()
    # The old executor's cancel hung here for the whole window: the shell's pipes stayed open in the watchdog.
    await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), 5)
    assert not pids_with_env(marker) - pods_own
