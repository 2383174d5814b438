"""`python -m bot scan` as an operator runs it: a subprocess against the stand-ins."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.cli import StageReport
from bot.scanning import ScanStage
from bot.storage import ScanStatus
from bot.storage.sqlite import SQLiteAuditLog
from testkit.media_factory import MediaFiles
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn
from testkit.standins import behavioral_signals as bs_module
from testkit.standins import resemble as resemble_module
from testkit.standins.behavioral_signals import utterance
from testkit.standins.resemble import metrics

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "DISCORD_TOKEN",
    "SPOOFWATCH_PROVIDER",
    "BEHAVIORALSIGNALS_CID",
    "BEHAVIORALSIGNALS_API_KEY",
    "BEHAVIORALSIGNALS_API_URL",
    "RESEMBLE_API_KEY",
    "RESEMBLE_API_URL",
}


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if k not in KEYS and not k.startswith("SPOOFWATCH")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env={**base, "PYTHONPATH": str(REPO), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def bs_env(standin: BehavioralSignalsStandIn, tmp_path: Path) -> dict[str, str]:
    return {
        "SPOOFWATCH_PROVIDER": "behavioral_signals",
        "BEHAVIORALSIGNALS_CID": standin.cid,
        "BEHAVIORALSIGNALS_API_KEY": bs_module.API_KEY,
        "BEHAVIORALSIGNALS_API_URL": standin.url,
        "SPOOFWATCH_DB": str(tmp_path / "cli.db"),
        "SPOOFWATCH_POLL_DEADLINE_S": "30",
    }


async def test_scan_json_prints_one_verdict_per_file(
    bs_standin: BehavioralSignalsStandIn, media: MediaFiles, tmp_path: Path
) -> None:
    """`scan --json` prints the DESIGN.md shape per file and exits 0 when all got verdicts."""
    bs_standin.script_result(
        media.speech_wav,
        [*utterance(0, 0.0, 1.5, spoofed="0.9997", text=" hello"), *utterance(1, 1.5, 3.0)],
    )
    code, out, err = await run_cli(
        "scan",
        str(media.speech_wav),
        str(media.voice_ogg),
        "--json",
        env=bs_env(bs_standin, tmp_path),
        cwd=tmp_path,
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["file"] for line in lines] == [str(media.speech_wav), str(media.voice_ogg)]
    first = lines[0]
    assert set(first) == {
        "file",
        "label",
        "spoofed_probability",
        "transcript",
        "language",
        "speakers",
        "segments",
        "provider",
        "provider_job_id",
        "duration_s",
    }
    assert first["label"] == "spoofed"
    assert first["spoofed_probability"] == pytest.approx(0.9997)
    assert first["transcript"].startswith("hello")
    assert first["provider"] == "behavioral_signals"
    assert [s["label"] for s in first["segments"]] == ["spoofed", "bonafide"]
    assert lines[1]["label"] == "bonafide"
    assert (tmp_path / "cli.db").exists()


async def test_scan_json_reports_each_failure_and_exits_non_zero(
    resemble_standin: ResembleStandIn, media: MediaFiles, tmp_path: Path
) -> None:
    """A bad file gets {"file", "error": {kind, message}} and the exit status is 1."""
    resemble_standin.script_result(media.voice_ogg, metrics=metrics([0.2, 0.1], label="real"))
    env = {
        "SPOOFWATCH_PROVIDER": "resemble",
        "RESEMBLE_API_KEY": resemble_module.API_KEY,
        "RESEMBLE_API_URL": resemble_standin.url,
        "SPOOFWATCH_DB": str(tmp_path / "cli.db"),
    }
    missing = tmp_path / "nope.ogg"
    code, out, _ = await run_cli(
        "scan",
        str(media.voice_ogg),
        str(media.random_ogg),
        str(missing),
        "--json",
        env=env,
        cwd=tmp_path,
    )
    assert code == 1
    good, bad, absent = (json.loads(line) for line in out.splitlines())
    assert good["label"] == "bonafide" and good["provider"] == "resemble"
    assert bad["error"]["kind"] == "not_media" and bad["error"]["message"]
    assert absent == {"file": str(missing), "error": absent["error"]}
    assert absent["error"]["kind"] == "not_found"


async def test_scan_without_provider_keys_names_the_missing_variables(tmp_path: Path) -> None:
    """With no keys set, scan stops with exit 2 naming the variables, not a traceback."""
    code, _, err = await run_cli(
        "scan", "x.ogg", env={"SPOOFWATCH_DB": str(tmp_path / "x.db")}, cwd=tmp_path
    )
    assert code == 2
    assert "BEHAVIORALSIGNALS_CID" in err and "BEHAVIORALSIGNALS_API_KEY" in err
    assert "Traceback" not in err


async def test_readable_output_names_the_verdict(
    bs_standin: BehavioralSignalsStandIn, media: MediaFiles, tmp_path: Path
) -> None:
    """Without --json, each file gets a line with its verdict and probability."""
    bs_standin.script_result(media.speech_wav, utterance(0, 0.0, 2.0, spoofed=0.91))
    code, out, err = await run_cli(
        "scan", str(media.speech_wav), env=bs_env(bs_standin, tmp_path), cwd=tmp_path
    )
    assert code == 0, err
    assert "LIKELY DEEPFAKE" in out and "91.0%" in out


# --- progress, interruption, help ---------------------------------------------------------


async def test_scan_reports_each_stage_on_stderr(
    bs_standin: BehavioralSignalsStandIn, media: MediaFiles, tmp_path: Path
) -> None:
    """Fails if the stages (accepted, uploading, uploaded with its job id, waiting, done)
    are not reported on stderr in order while the verdict goes to stdout."""
    code, out, err = await run_cli(
        "scan", str(media.speech_wav), env=bs_env(bs_standin, tmp_path), cwd=tmp_path
    )
    assert code == 0, err
    stages = [
        line.split(": ", 1)[1]
        for line in err.splitlines()
        if line.startswith(str(media.speech_wav))
    ]
    assert stages[0] == "case #1, reading the file"
    assert stages[1] == "uploading to behavioral_signals"
    assert stages[2].startswith("uploaded; behavioral_signals job ")
    assert stages[3:] == ["waiting for the verdict", "done"]
    assert "uploading" not in out


async def test_scan_json_keeps_stderr_quiet(
    bs_standin: BehavioralSignalsStandIn, media: MediaFiles, tmp_path: Path
) -> None:
    """Fails if --json writes progress (scripts read stdout and may log stderr)."""
    code, _, err = await run_cli(
        "scan", str(media.speech_wav), "--json", env=bs_env(bs_standin, tmp_path), cwd=tmp_path
    )
    assert code == 0, err
    assert "uploading" not in err and "waiting" not in err


async def test_ctrl_c_records_the_case_as_interrupted(
    bs_standin: BehavioralSignalsStandIn, media: MediaFiles, tmp_path: Path
) -> None:
    """Fails if Ctrl-C leaves the case "submitted" forever, exits silently, or loses the job
    id of the billed upload."""
    bs_standin.processing_polls = 10**6  # never finishes
    base = {k: v for k, v in os.environ.items() if k not in KEYS and not k.startswith("SPOOFWATCH")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "scan", str(media.speech_wav),
        cwd=tmp_path, env={**base, "PYTHONPATH": str(REPO), **bs_env(bs_standin, tmp_path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        # A shell runs background jobs with SIGINT ignored, and a child inherits that (POSIX);
        # Python then installs no Ctrl-C handler. A terminal's foreground job has the default.
        preexec_fn=_default_sigint,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        while not any("waiting for the verdict" in line for line in seen):
            line = await asyncio.wait_for(proc.stderr.readline(), timeout=60)
            assert line, "scan ended before waiting:\n" + "".join(seen)
            seen.append(line.decode())
        proc.send_signal(signal.SIGINT)
        _, rest = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = "".join(seen) + rest.decode()
    assert proc.returncode == 130, err
    assert "case #1 recorded as interrupted" in err and "Traceback" not in err
    log = await SQLiteAuditLog.open(tmp_path / "cli.db")
    try:
        [case] = await log.cases.recent(0, limit=5)
    finally:
        await log.close()
    assert case.status is ScanStatus.FAILED and case.error_kind == "interrupted"
    assert case.provider_job_id and case.provider_job_id in (case.error_message or "")


def test_terminal_progress_shows_the_stages() -> None:
    """Fails if a terminal gets no live progress lines (rich) for the stages."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    record = SimpleNamespace(case_number=7, provider=SimpleNamespace(value="resemble"))
    path = Path("clip [1].wav")
    with StageReport(stream, quiet=False) as report:
        report.begin(path)
        heard = report.listener(path)
        heard(ScanStage.ACCEPTED, record, None)  # type: ignore[arg-type]
        heard(ScanStage.SUBMITTED, record, "abc-123")  # type: ignore[arg-type]
        report.end(path)
    shown = stream.getvalue()
    assert "clip [1].wav: case #7, reading the file" in shown
    assert "clip [1].wav: uploaded; resemble job abc-123" in shown


@pytest.mark.parametrize("command", [("scan",), ("audit",), ()])
async def test_help_documents_environment_and_exit_codes(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Fails if --help leaves out the environment or the exit statuses."""
    code, out, _ = await run_cli(*command, "--help", env={}, cwd=tmp_path)
    assert code == 0
    assert "exit status" in out and "environment" in out


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
