"""`python -m bot scan FILE...`: check local files from a terminal, without Discord."""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import sys
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, ConfigDict

from bot.errors import FileMissing, SpoofwatchError
from bot.provenance import provenance_fields
from bot.runtime import Runtime, open_runtime
from bot.scanning import MediaSource, ScanLimits, ScanOutcome, ScanRequest
from bot.settings import Settings
from bot.storage import NewScan, Trigger
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


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="check local media files for deepfaked speech",
        description="Scan local files through the configured detection service.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument(
        "--provider",
        choices=[p.value for p in ProviderName],
        help="detection service (default: SPOOFWATCH_PROVIDER)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per file per line")


async def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    """Scan each file; exit status 0 only when every file got a verdict."""
    provider = settings.require_provider(ProviderName(args.provider) if args.provider else None)
    async with open_runtime(settings, providers=[provider]) as runtime:
        gate = asyncio.Semaphore(settings.workers)

        async def one(path: Path) -> tuple[Path, ScanOutcome | SpoofwatchError]:
            async with gate:
                return path, await _scan_file(runtime, settings, provider, path)

        results = await asyncio.gather(*(one(p) for p in args.files))

    failed = False
    for path, result in results:
        failed |= _failure(result) is not None
        line = _json_line(path, result) if args.json else _readable(path, result)
        print(line, file=out, flush=True)
    return 1 if failed else 0


async def _scan_file(
    runtime: Runtime, settings: Settings, provider: ProviderName, path: Path
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
            file=str(path), error=ScanErrorBody(kind=error.kind, message=error.message)
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
        return f"{path}: error ({error.kind}): {error.message}{hint}"
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
