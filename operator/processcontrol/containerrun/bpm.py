"""The `bpm` command containerrun writes at start-up, as the Go container-run does (pkg/containerrun/bpm.go).

BOSH drain scripts and operators call `bpm stop JOB -p PROCESS` and friends; in a kubecf container there is no
real bpm, so container-run leaves a small script in its place. Ours is `bpm.sh` (POSIX sh, shipped as package
data) with the base directory containerrun ran with as its default.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
from importlib import resources
from pathlib import Path

BPM_PATH = Path("jobs", "bpm", "bin", "bpm")
TEMPLATE: str = resources.files("processcontrol.containerrun").joinpath("bpm.sh").read_text(encoding="utf-8")
BASE_DIR_MARK = "@BASE_DIR@"


def bpm_script(base_dir: Path) -> str:
    """The script, defaulting to `base_dir` (quoted: any path is data to the shell, never code)."""
    return TEMPLATE.replace(BASE_DIR_MARK, shlex.quote(os.fspath(base_dir)), 1)


def write_bpm(base_dir: Path) -> Path | None:
    """Write `<base>/jobs/bpm/bin/bpm` unless something is there already; return its path when written.

    The file appears whole or not at all (written aside, then hard-linked into place, which fails when another
    containerrun of the same pod was quicker), and an existing file, even a broken symlink, is never replaced.
    """
    path = base_dir / BPM_PATH
    if os.path.lexists(path):
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".bpm.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(bpm_script(base_dir))
        os.chmod(tmp, 0o755)  # noqa: S103 -- a command everyone in the container runs, as the Go original writes it
        try:
            os.link(tmp, path)
        except FileExistsError:
            return None
        return path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
