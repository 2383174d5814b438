"""`python -m bot scan FILE...`: check local files from a terminal, without Discord."""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import sys
from pathlib import Path
from typing import TextIO

import rich.markup
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from bot.errors import FileMissing, ScanInterrupted, SpoofwatchError
from bot.provenance import provenance_fields
from bot.resources import Runtime, open_runtime
from bot.scanning import (
    MediaSource,
    ScanLimits,
    ScanOutcome,
    ScanRequest,
    ScanStage,
    StageListener,
)
from bot.settings import Settings
from bot.storage import NewScan, ScanRecord, Trigger
from bot.verdict import Label, ProviderName, Segment


class ScanErrorBody(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    message: str


class ScanJsonVerdict(BaseModel):
    """One line of `scan --json` for a file that got a verdict (DESIGN.md shape)."""

    model_config = ConfigDict(frozen=True)

    file: str
    label: Label
    spoofed_probability: float | None
    transcript: str | None
    language: str | None
    speakers: int | None
    segments: list[Segment]
    provider: ProviderName
    provider_job_id: str
    duration_s: float | None


class ScanJsonError(BaseModel):
    """One line of `scan --json` for a file that failed."""

    model_config = ConfigDict(frozen=True)

    file: str
    error: ScanErrorBody


#: Exit statuses, documented in `--help`.
EXIT_OK, EXIT_FAILED, EXIT_SETTINGS, EXIT_INTERRUPTED = 0, 1, 2, 130

HELP_EPILOG = """\
environment (also read from .env in the current directory):
  SPOOFWATCH_PROVIDER        behavioral_signals (default) or resemble
  BEHAVIORALSIGNALS_CID      numeric project id   } for behavioral_signals
  BEHAVIORALSIGNALS_API_KEY  its API key          }
  RESEMBLE_API_KEY           for resemble
  SPOOFWATCH_DB              the audit log each scan is recorded in (default data/spoofwatch.db)
  SPOOFWATCH_DATABASE_URL    postgresql://... instead of SPOOFWATCH_DB
  .env.example lists every setting.

exit status:
  0    every file got a verdict
  1    at least one file got no verdict (see its line, or "error" with --json)
  2    the configuration is missing or invalid (the message names the variable)
  130  interrupted (Ctrl-C): unfinished files are recorded as interrupted

Progress (each file's stage) goes to standard error, with a live indicator when it is a
terminal; --json keeps standard error quiet and prints one JSON object per file.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="check local media files for deepfaked speech",
        description="Scan local files through the configured detection service.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument(
        "--provider",
        choices=[p.value for p in ProviderName],
        help="detection service (default: SPOOFWATCH_PROVIDER)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per file per line")


async def run(
    args: argparse.Namespace,
    settings: Settings,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Scan each file; exit status 0 only when every file got a verdict."""
    provider = settings.require_provider(ProviderName(args.provider) if args.provider else None)
    async with open_runtime(settings, providers=[provider]) as runtime:
        gate = asyncio.Semaphore(settings.workers)
        with StageReport(err, quiet=args.json) as report:

            async def one(path: Path) -> tuple[Path, ScanOutcome | SpoofwatchError]:
                async with gate:
                    report.begin(path)
                    result = await _scan_file(runtime, settings, provider, path, report)
                    report.end(path)
                    return path, result

            try:
                results = await asyncio.gather(*(one(p) for p in args.files))
            except asyncio.CancelledError:
                # Ctrl-C (asyncio.run cancels this task): a case left "submitted" would wait
                # for a resume that a terminal never runs.
                await _record_interrupted(runtime, report, err)
                return EXIT_INTERRUPTED

    failed = False
    for path, result in results:
        failed |= _failure(result) is not None
        line = _json_line(path, result) if args.json else _readable(path, result)
        print(line, file=out, flush=True)
    return EXIT_FAILED if failed else EXIT_OK


_STAGE_WORDS = {
    ScanStage.ACCEPTED: "case #{case}, reading the file",
    ScanStage.UPLOADING: "uploading to {provider}",
    ScanStage.SUBMITTED: "uploaded; {provider} job {detail}",
    ScanStage.WAITING: "waiting for the verdict",
    ScanStage.REUSED: "scanned before; reusing that verdict",
    ScanStage.DONE: "done",
}


class StageReport:
    """Each file's stages on standard error, as they happen.

    In a terminal a live line per file (spinner, stage, elapsed time) sits under the log of
    stages; elsewhere (a pipe, a file) only the stage lines are written. `quiet` (--json)
    writes nothing.
    """

    def __init__(self, stream: TextIO, *, quiet: bool) -> None:
        self._stream = stream
        self._quiet = quiet
        #: What is known of each file's scan: its case, and its job once submitted.
        self.cases: dict[Path, ScanRecord] = {}
        self.jobs: dict[Path, str] = {}
        self.stages: dict[Path, ScanStage] = {}
        self._live: Progress | None = None
        self._tasks: dict[Path, TaskID] = {}
        if not quiet and stream.isatty():
            console = Console(file=stream, highlight=False)
            self._live = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )

    def __enter__(self) -> StageReport:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def begin(self, path: Path) -> None:
        if self._live is not None:
            self._tasks[path] = self._live.add_task(_escape(f"{path}: starting"), total=None)

    def end(self, path: Path) -> None:
        task = self._tasks.pop(path, None)
        if self._live is not None and task is not None:
            self._live.remove_task(task)

    def listener(self, path: Path) -> StageListener:
        def heard(stage: ScanStage, record: ScanRecord, detail: str | None) -> None:
            self.cases[path] = record
            self.stages[path] = stage
            if stage is ScanStage.SUBMITTED and detail:
                self.jobs[path] = detail
            self.say(path, _STAGE_WORDS[stage].format(
                case=record.case_number, provider=record.provider.value, detail=detail or "?"
            ))  # fmt: skip

        return heard

    def say(self, path: Path, text: str) -> None:
        if self._quiet:
            return
        line = f"{path}: {text}"
        if self._live is not None:
            self._live.console.print(_escape(line))
            task = self._tasks.get(path)
            if task is not None:
                self._live.update(task, description=_escape(line))
        else:
            print(line, file=self._stream, flush=True)


def _escape(text: str) -> str:
    """`text` shown as is by rich (file names may hold [brackets])."""
    return rich.markup.escape(text)


async def _record_interrupted(runtime: Runtime, report: StageReport, err: TextIO) -> None:
    """Mark every accepted, unfinished scan as interrupted, and say which."""
    for path, record in report.cases.items():
        current = await runtime.audit.scans.get_scan(record.id)
        if current is None or current.status.finished:
            continue
        job = report.jobs.get(path) or current.provider_job_id
        if job:
            where = f" after the upload: {current.provider.value} job {job} may still finish there."
        elif report.stages.get(path) is ScanStage.UPLOADING:
            where = " during the upload: the provider may have received the file."
        else:
            where = " before the upload."
        message = "Interrupted from the terminal (Ctrl-C)" + where
        await runtime.audit.scans.mark_failed(record.id, ScanInterrupted.kind, message)
        print(
            f"{path}: interrupted; case #{record.case_number} recorded as interrupted"
            + (f" ({current.provider.value} job {job} may still finish there)" if job else ""),
            file=err,
            flush=True,
        )
    print("scan: interrupted", file=err, flush=True)


async def _scan_file(
    runtime: Runtime,
    settings: Settings,
    provider: ProviderName,
    path: Path,
    report: StageReport,
) -> ScanOutcome | SpoofwatchError:
    if not await asyncio.to_thread(path.is_file):
        return FileMissing(f"{path} does not exist or is not a file.")
    resolved = await asyncio.to_thread(path.resolve)
    content_type, _ = mimetypes.guess_type(path.name)
    new = NewScan(
        filename=path.name,
        content_type=content_type,
        trigger=Trigger.CLI,
        provider=provider,
        jump_url=resolved.as_uri(),
    )
    request = ScanRequest(
        new=new,
        source=MediaSource(path=resolved),
        limits=ScanLimits(
            max_file_bytes=settings.max_file_bytes, max_duration_s=settings.max_duration_s
        ),
        want_transcript=settings.resemble_intelligence,
        meta={"source": "cli"},
        on_stage=report.listener(path),
    )
    return await runtime.scans.scan(request)


def _failure(result: ScanOutcome | SpoofwatchError) -> SpoofwatchError | None:
    """The error of a file that got no verdict, else None."""
    if isinstance(result, SpoofwatchError):
        return result
    if result.verdict is None:
        return result.error or SpoofwatchError("The scan ended without a verdict.")
    return None


def _json_line(path: Path, result: ScanOutcome | SpoofwatchError) -> str:
    error = _failure(result)
    if error is not None or isinstance(result, SpoofwatchError) or result.verdict is None:
        assert error is not None
        return ScanJsonError(
            file=str(path), error=ScanErrorBody(kind=error.kind, message=str(error))
        ).model_dump_json()
    verdict = result.verdict
    return ScanJsonVerdict(
        file=str(path),
        label=verdict.label,
        spoofed_probability=verdict.spoofed_probability,
        transcript=verdict.transcript,
        language=verdict.language,
        speakers=verdict.speakers,
        segments=list(verdict.segments),
        provider=verdict.provider,
        provider_job_id=verdict.provider_job_id,
        duration_s=verdict.duration_s,
    ).model_dump_json()


_WORDS = {
    Label.SPOOFED: "LIKELY DEEPFAKE",
    Label.BONAFIDE: "no sign of a deepfake",
    Label.INCONCLUSIVE: "inconclusive",
}


def _readable(path: Path, result: ScanOutcome | SpoofwatchError) -> str:
    error = _failure(result)
    if error is not None or isinstance(result, SpoofwatchError) or result.verdict is None:
        assert error is not None
        hint = f"\n  {error.hint}" if error.hint else ""
        # str(): the whole story for the operator (an account error's message is only its
        # public part).
        return f"{path}: error ({error.kind}): {error}{hint}"
    v = result.verdict
    p = "n/a" if v.spoofed_probability is None else f"{v.spoofed_probability:.1%}"
    lines = [
        f"{path}: {_WORDS[v.label]} — spoofed probability {p}"
        + (f" (provider says {v.provider_label!r})" if v.provider_label else ""),
    ]
    details = [f"case #{result.record.case_number}", f"{v.provider.value} job {v.provider_job_id}"]
    if v.duration_s is not None:
        details.append(f"{v.duration_s:.1f} s")
    if v.language:
        details.append(f"language {v.language}")
    if v.speakers is not None:
        details.append(f"{v.speakers} speaker{'s' if v.speakers != 1 else ''}")
    if result.reused:
        details.append("reused earlier verdict")
    lines.append("  " + " · ".join(details))
    lines.extend(f"  {name}: {value}" for name, value in provenance_fields(v))
    if len(v.segments) > 1:
        for seg in v.segments[:20]:
            sp = "n/a" if seg.spoofed_probability is None else f"{seg.spoofed_probability:.0%}"
            lines.append(f"  {seg.start:7.2f}–{seg.end:7.2f} s  {seg.label.value:<12} {sp}")
        if len(v.segments) > 20:
            lines.append(f"  … {len(v.segments) - 20} more segments")
    if v.transcript:
        snippet = v.transcript if len(v.transcript) <= 300 else v.transcript[:299] + "…"
        lines.append(f'  transcript: "{snippet}"')
    return "\n".join(lines)
