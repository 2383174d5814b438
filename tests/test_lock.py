"""The dependency locks and the set-up scripts: what a fresh clone installs, and where."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _pins(lock: Path) -> dict[str, str]:
    """Package → pinned version, for every `name==version` entry of a lock file."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def _declared(*extras: str) -> list[Requirement]:
    """pyproject.toml's runtime requirements plus those of `extras` (self-references left out)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    requirements = [Requirement(text) for text in texts]
    return [r for r in requirements if canonicalize_name(r.name) != "spoofwatch"]


@pytest.mark.parametrize(
    ("lock", "extras"),
    [(RUNTIME_LOCK, ()), (DEV_LOCK, ("test", "dev"))],
    ids=["runtime", "dev"],
)
def test_lock_pins_every_declared_dependency(lock: Path, extras: tuple[str, ...]) -> None:
    """Fails when pyproject.toml names a dependency the lock does not pin, or pins outside the
    declared range: scripts/lock was not re-run after a dependency changed."""
    pins = _pins(lock)
    stale = [
        str(req)
        for req in _declared(*extras)
        if pins.get(canonicalize_name(req.name)) is None
        or not req.specifier.contains(pins[canonicalize_name(req.name)], prereleases=True)
    ]
    assert not stale, f"{lock.name} is stale for {stale}; run scripts/lock"


def test_dev_lock_installs_the_runtime_lock_versions() -> None:
    """Fails when the dev lock pins a runtime package at another version than the runtime lock,
    so tests would run on versions the image does not ship."""
    dev = _pins(DEV_LOCK)
    runtime = _pins(RUNTIME_LOCK)
    assert {name: dev.get(name) for name in runtime} == runtime


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_every_pin_carries_a_hash(lock: Path) -> None:
    """Fails when an entry has no sha256, which `pip install --require-hashes` refuses."""
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    unhashed = [e.split()[0] for e in entries if _PIN.match(e) and "--hash=sha256:" not in e]
    assert not unhashed


def _path_without(tmp_path: Path, *hidden: str) -> str:
    """A PATH holding every command of this one except `hidden` (as if not installed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not Path(directory).is_dir():
            continue
        for tool in Path(directory).iterdir():
            target = bin_dir / tool.name
            if tool.name not in hidden and not target.exists() and os.access(tool, os.X_OK):
                target.symlink_to(tool)
    return str(bin_dir)


def _system_packages(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("bash") or "bash", str(ROOT / "scripts" / "system-packages"), *args],
        env={"PATH": path, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_system_packages_without_apt_get_names_what_to_install(tmp_path: Path) -> None:
    """Fails when, on a system without apt-get, the development set-up does not stop with a
    message naming the missing package (it would fail later, obscurely, or try to run
    apt-get)."""
    done = _system_packages(_path_without(tmp_path, "apt-get", "ffmpeg", "ffprobe"), "--dev")
    assert done.returncode == 1
    assert "ffmpeg and ffprobe: make the test media" in done.stderr
    assert "installing" not in done.stderr


def test_the_bot_needs_no_system_package(tmp_path: Path) -> None:
    """Fails when setting up the bot alone (no --dev) asks for a system package: on a machine
    without ffmpeg or apt-get, bootstrap must still succeed."""
    done = _system_packages(_path_without(tmp_path, "apt-get", "ffmpeg", "ffprobe"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
