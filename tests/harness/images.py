#!/usr/bin/env python3
"""Container images built on this machine (no registry is reachable), cached as `docker save` archives.

    python -m harness.images build [--only NAME]...   build what is missing, print each image's archive
    python -m harness.images list                     the images, their references, keys and whether they are cached

Images, each keyed by a hash of its inputs (an input changes -> a new key -> a rebuild; else nothing runs):

- `base`: Debian 12 minbase with python3, venv, procps and tini, by mmdebstrap, plus this host's CA bundle and
  pip.conf so that pip inside a build reaches PyPI the way the host does.
- `pause`: the pod sandbox, the static binary from hack/build-node.sh.
- `operator`: the project's own Dockerfile with `--build-arg BASE_IMAGE=<base>` (the default stays the public
  python:3.11-slim for users).
- `workload`: hack/images/kubecf-like/Dockerfile on top of the operator image (containerrun under tini).

Archives live in ${PROCESSCONTROL_CACHE:-~/.cache/processcontrol}/images/. Building needs Debian's docker.io (and
mmdebstrap for the base; `make deps-node` installs both): a private dockerd (its own socket, data root in the
cache, no bridge, no iptables rules) runs only while building.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.base import ROOT, ProcessRecord, Progress, cache_dir, log_tail, spawn, state_dir, stop_group
from harness.realnode import unmount_under

SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "procps", "tini")
# Files of the host that make pip work inside a build (a TLS-intercepting proxy's CA, an index mirror).
HOST_PIP_FILES = (Path("/etc/ssl/certs/ca-certificates.crt"), Path("/etc/pip.conf"))


class ImageError(Exception):
    """An image could not be built; the message names the step and the cause."""


@dataclass(frozen=True)
class Image:
    """One image: its reference inside the archive and in containerd, and its cached archive."""

    name: str
    ref: str
    key: str

    @property
    def archive(self) -> Path:
        """The `docker save` archive of this exact input set."""
        return images_dir() / f"{self.name}-{self.key}.tar"

    def cached(self) -> bool:
        """The archive for this key exists."""
        return self.archive.is_file()


def images_dir() -> Path:
    """Where the archives are kept."""
    return cache_dir() / "images"


PROGRESS = Progress("images")
log = PROGRESS.log
step = PROGRESS.step


def _hash_paths(digest: hashlib._Hash, paths: list[Path]) -> None:
    for path in paths:
        if not path.exists():
            digest.update(f"missing {path}".encode() + b"\0")
            continue
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts:
                continue
            digest.update(str(file.relative_to(ROOT) if file.is_relative_to(ROOT) else file).encode())
            digest.update(b"\0")
            digest.update(file.read_bytes())
            digest.update(b"\0")


def _key(*parts: str, paths: list[Path] = []) -> str:  # noqa: B006 - read only
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    _hash_paths(digest, paths)
    return digest.hexdigest()[:12]


def pause_binary() -> Path:
    """The static pause binary from hack/build-node.sh."""
    return cache_dir() / "pause-current" / "pause"


def images() -> dict[str, Image]:
    """The four images with their current keys."""
    host_files = [p for p in HOST_PIP_FILES if p.exists()]
    base = Image("base", "", _key("base-v1", SUITE, *BASE_PACKAGES, paths=host_files))
    base = Image("base", f"docker.io/local/processcontrol-base:{base.key}", base.key)
    pause_key = _key("pause-v1", paths=[pause_binary(), ROOT / "hack/images/pause/Dockerfile"])
    pause = Image("pause", "docker.io/local/pause:dev", pause_key)
    operator_files = ("Dockerfile", ".dockerignore", "requirements.lock", "pyproject.toml", "README.md")
    operator_paths = [ROOT / p for p in operator_files]
    operator_key = _key("operator-v1", base.key, paths=[*operator_paths, ROOT / "operator/processcontrol"])
    operator = Image("operator", "docker.io/local/processcontrol:dev", operator_key)
    workload_key = _key("workload-v1", operator_key, paths=[ROOT / "hack/images/kubecf-like/Dockerfile"])
    workload = Image("workload", "docker.io/local/kubecf-like:dev", workload_key)
    return {i.name: i for i in (base, pause, operator, workload)}


def run(argv: list[str], what: str, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    """Run a build step; raise ImageError with the step and the last lines of its output."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ImageError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout


class Docker:
    """A private dockerd for the duration of the builds (own socket; no bridge or iptables rules on the host)."""

    def __init__(self) -> None:
        self.root = state_dir() / "dockerd"
        self.sock = self.root / "docker.sock"
        self.record: ProcessRecord | None = None

    def cli(self, *args: str, what: str, timeout: float = 900) -> str:
        """docker against this daemon; the legacy builder (it honours --network host without BuildKit's rules)."""
        env = dict(os.environ, DOCKER_BUILDKIT="0", DOCKER_HOST=f"unix://{self.sock}")
        return run(["docker", *args], what, timeout=timeout, env=env)

    def start(self) -> None:
        """Start dockerd and wait for it to answer."""
        self.stop_stale()
        unmount_under(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [
            "dockerd",
            f"--data-root={cache_dir() / 'docker'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--host=unix://{self.sock}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--storage-driver=overlay2",
        ]
        self.record = spawn(argv, self.root / "dockerd.log", self.root / "record.pid")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.record.alive():
                raise ImageError(f"dockerd exited at start:\n{log_tail(self.root / 'dockerd.log', 10)}")
            with contextlib.suppress(ImageError):
                self.cli("version", what="docker version", timeout=10)
                return
            time.sleep(0.3)
        raise ImageError(f"dockerd did not answer in 60s:\n{log_tail(self.root / 'dockerd.log', 10)}")

    def stop_stale(self) -> None:
        """A dockerd left by a killed build holds the data root: stop it."""
        record = ProcessRecord.read(self.root / "record.pid")
        if record is not None and record.alive():
            stop_group(record, timeout=20)

    def stop(self) -> None:
        """Stop dockerd (it stops its containerd and unmounts its layers)."""
        if self.record is not None:
            stop_group(self.record, timeout=30)
            self.record = None
        (self.root / "record.pid").unlink(missing_ok=True)
        # dockerd leaves its default network namespace mounted under its exec root.
        unmount_under(self.root)
        shutil.rmtree(self.root / "exec", ignore_errors=True)

    def load(self, image: Image) -> None:
        """Make a cached image known to this daemon (a FROM of the next build)."""
        self.cli("load", "-i", str(image.archive), what=f"docker load {image.name}")

    def save(self, image: Image) -> None:
        """Write the image's archive atomically; old archives of the same image are removed."""
        images_dir().mkdir(parents=True, exist_ok=True)
        tmp = image.archive.with_suffix(".tmp")
        self.cli("save", "-o", str(tmp), image.ref, what=f"docker save {image.name}")
        for old in images_dir().glob(f"{image.name}-*.tar"):
            old.unlink()
        tmp.replace(image.archive)


def build_base(docker: Docker, image: Image) -> None:
    """mmdebstrap a minbase Debian with Python and import it."""
    with tempfile.TemporaryDirectory(prefix="pc-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        argv = ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
        for host_file in HOST_PIP_FILES:
            if host_file.exists():
                argv += [
                    f'--customize-hook=mkdir -p "$1{host_file.parent}"',
                    f"--customize-hook=copy-in {host_file} {host_file.parent}",
                ]
        # No apt lists in the image: they are only needed to install, and we install nothing later.
        argv += ['--customize-hook=rm -rf "$1"/var/lib/apt/lists/*', SUITE, str(tarball)]
        run(argv, "mmdebstrap", timeout=900)
        docker.cli("import", "--change", 'CMD ["/bin/sh"]', str(tarball), image.ref, what="docker import base")


def build_pause(docker: Docker, image: Image) -> None:
    """FROM scratch + the static pause binary."""
    if not pause_binary().exists():
        raise ImageError(f"no {pause_binary()}: run hack/build-node.sh first")
    with tempfile.TemporaryDirectory(prefix="pc-pause-") as tmp:
        shutil.copy(ROOT / "hack/images/pause/Dockerfile", tmp)
        shutil.copy(pause_binary(), Path(tmp) / "pause")
        docker.cli("build", "-q", "-t", image.ref, tmp, what="docker build pause")


def build_operator(docker: Docker, image: Image, base: Image) -> None:
    """The project's Dockerfile, with the local base; pip needs the host network to reach PyPI."""
    docker.cli(
        "build",
        "-q",
        "--network=host",
        f"--build-arg=BASE_IMAGE={base.ref}",
        "-t",
        image.ref,
        str(ROOT),
        what="docker build operator (Dockerfile)",
    )


def build_workload(docker: Docker, image: Image, operator: Image) -> None:
    """The kubecf-like image on top of the operator image."""
    docker.cli(
        "build",
        "-q",
        "--network=host",
        f"--build-arg=OPERATOR_IMAGE={operator.ref}",
        "-t",
        image.ref,
        str(ROOT / "hack/images/kubecf-like"),
        what="docker build kubecf-like workload",
    )


def ensure(only: list[str] | None = None) -> dict[str, Image]:
    """Build every missing image (and what it depends on); return them all. Raises ImageError."""
    all_images = images()
    wanted = set(only or all_images)
    depends = {"operator": {"base"}, "workload": {"operator", "base"}}
    for name in list(wanted):
        wanted |= depends.get(name, set())
    missing = [n for n in ("base", "pause", "operator", "workload") if n in wanted and not all_images[n].cached()]
    if not missing:
        log("all cached: " + ", ".join(f"{n} {all_images[n].key}" for n in sorted(wanted)))
        return all_images
    # Every tool the builds need, checked before the first one starts.
    tools = {"docker": "docker.io", "dockerd": "docker.io"} | (
        {"mmdebstrap": "mmdebstrap"} if "base" in missing else {}
    )
    packages = sorted({package for tool, package in tools.items() if shutil.which(tool) is None})
    if packages:
        raise ImageError(
            f"building {', '.join(missing)} needs the Debian packages {' '.join(packages)}: make deps-node installs "
            f"them (apt-get install -y {' '.join(packages)})"
        )
    docker = Docker()
    builders: dict[str, Callable[[], None]] = {
        "base": lambda: build_base(docker, all_images["base"]),
        "pause": lambda: build_pause(docker, all_images["pause"]),
        "operator": lambda: build_operator(docker, all_images["operator"], all_images["base"]),
        "workload": lambda: build_workload(docker, all_images["workload"], all_images["operator"]),
    }
    with step("private dockerd"):
        docker.start()
    try:
        for name in missing:
            for dep in sorted(depends.get(name, set())):
                if dep not in missing and dep in ("base", "operator"):
                    docker.load(all_images[dep])
            with step(f"build {name} -> {all_images[name].ref} (key {all_images[name].key})"):
                builders[name]()
                docker.save(all_images[name])
        # The archives are the cache: what a rebuild left untagged in docker's data root is only disk space.
        docker.cli("image", "prune", "-f", what="docker image prune")
    finally:
        docker.stop()
    return all_images


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="images.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the images that are not cached")
    build.add_argument("--only", action="append", choices=["base", "pause", "operator", "workload"])
    sub.add_parser("list", help="list the images and whether they are cached")
    args = parser.parse_args(argv)
    if args.command == "list":
        for image in images().values():
            print(f"{image.name:<9} {image.ref:<44} {image.key} {'cached' if image.cached() else 'missing'}")
        return 0
    start = time.monotonic()
    try:
        built = ensure(args.only)
    except (ImageError, subprocess.TimeoutExpired) as exc:
        print(f"images: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    for image in built.values():
        if args.only is None or image.name in args.only:
            print(f"{image.ref} {image.archive}")
    log(f"done in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
