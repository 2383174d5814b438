"""`python -m bot audit …`: the operators' view of the audit log, without Discord.

Reads the database the bot writes (SPOOFWATCH_DB); needs no Discord token and no provider key.
Exit status: 0 on success, 2 when the database, the case or the configuration is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.errors import SettingsError
from bot.storage import NO_GUILD, AuditLog, AuditStats, ScanRecord, open_audit_log
from bot.storage.export import ExportFormat, write_export

EXIT_OK = 0
EXIT_MISSING = 2
_FILENAME_WIDTH = 28

HELP_EPILOG = """\
environment (also read from .env in the current directory):
  SPOOFWATCH_DB            the SQLite audit log (default data/spoofwatch.db)
  SPOOFWATCH_DATABASE_URL  postgresql://... instead (several bot processes share it)
  No Discord token and no provider key are needed.

exit status:
  0  the query ran (an empty answer included)
  2  no audit log there, an unknown guild or case, or an invalid configuration

Start with `audit guilds`: it lists the guild ids the log holds.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `audit` and its queries to the `python -m bot` command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--guild", type=int, required=True, metavar="ID", help="server id")
    common.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="the audit database (default: SPOOFWATCH_DB, else data/spoofwatch.db)",
    )
    audit = subparsers.add_parser(
        "audit",
        help="query the audit log without Discord",
        description="Query the audit log the bot writes. Needs no Discord token.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    queries = audit.add_subparsers(dest="audit_command", required=True, metavar="QUERY")

    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="the audit database (default: SPOOFWATCH_DB, else data/spoofwatch.db)",
    )
    queries.add_parser(
        "guilds", parents=[database], help="the guilds in the log, with their case counts"
    )

    recent = queries.add_parser("recent", parents=[common], help="the latest cases")
    recent.add_argument("--limit", type=_positive_int, default=20)

    user = queries.add_parser("user", parents=[common], help="a member's cases, newest first")
    user.add_argument("user_id", type=int, metavar="USER_ID")
    user.add_argument("--limit", type=_positive_int, default=20)

    case = queries.add_parser("case", parents=[common], help="one case in full")
    case.add_argument("number", type=_positive_int, metavar="NUMBER")

    flagged = queries.add_parser(
        "flagged", parents=[common], help="cases labelled spoofed or above the threshold"
    )
    flagged.add_argument("--days", type=_positive_int, default=7)
    flagged.add_argument(
        "--threshold",
        type=_probability,
        default=None,
        help="spoofed probability that flags a case (default: the server's alert threshold)",
    )
    flagged.add_argument("--limit", type=_positive_int, default=50)
    flagged.add_argument(
        "--generator", default=None, help="only cases the provider said this generator made"
    )
    flagged.add_argument(
        "--fraud", default=None, help="only cases Resemble classed as this fraud (e.g. vishing)"
    )

    stats = queries.add_parser("stats", parents=[common], help="counts over recent days")
    stats.add_argument("--days", type=_positive_int, default=30)

    export = queries.add_parser("export", parents=[common], help="cases as CSV or JSON")
    export.add_argument("--days", type=_positive_int, default=30)
    export.add_argument("--format", choices=[f.value for f in ExportFormat], default="csv")
    export.add_argument(
        "--output", type=Path, default=None, metavar="FILE", help="default: standard output"
    )


async def run(args: argparse.Namespace) -> int:
    """Run the `audit` query `args` describes; the process exit status."""
    try:
        db = args.db if args.db is not None else _default_db()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MISSING
    if isinstance(db, Path) and not db.is_file():
        # Opening would create an empty database and report "no cases" for a typo.
        print(
            f"error: no audit database at {db} (set SPOOFWATCH_DB or pass --db)",
            file=sys.stderr,
        )
        return EXIT_MISSING
    log = await open_audit_log(db)
    try:
        guild = getattr(args, "guild", None)
        if guild is not None and await log.cases.count_cases(guild) == 0:
            # "0 most recent of 0 cases" reads like an empty server; a typo is likelier.
            print(
                f"error: the audit log has no cases of guild {guild}; "
                "`python -m bot audit guilds` lists the guilds it holds",
                file=sys.stderr,
            )
            return EXIT_MISSING
        return await _QUERIES[args.audit_command](log, args)
    finally:
        await log.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: `python -m bot.audit_cli audit recent --guild ID`."""
    parser = argparse.ArgumentParser(prog="python -m bot")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return asyncio.run(run(parser.parse_args(argv)))


# --- queries -------------------------------------------------------------------------------


async def _guilds(log: AuditLog, args: argparse.Namespace) -> int:
    guilds = await log.cases.guilds()
    print(f"{len(guilds)} guild{'s' if len(guilds) != 1 else ''} in the audit log")
    if not guilds:
        return EXIT_OK
    header = ("guild", "cases", "last case (UTC)")
    table = [
        (
            "0 (terminal and DMs)" if g.guild_id == NO_GUILD else str(g.guild_id),
            str(g.cases),
            _when(g.last_case_at) if g.last_case_at else "-",
        )
        for g in guilds
    ]
    widths = [max(len(row[i]) for row in (header, *table)) for i in range(len(header))]
    for row in (header, *table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return EXIT_OK


async def _recent(log: AuditLog, args: argparse.Namespace) -> int:
    records = await log.cases.recent(args.guild, limit=args.limit)
    total = await log.cases.count_cases(args.guild)
    _print_cases(records, f"{len(records)} most recent of {total} cases in guild {args.guild}")
    return EXIT_OK


async def _user(log: AuditLog, args: argparse.Namespace) -> int:
    records = await log.cases.by_author(args.guild, args.user_id, limit=args.limit)
    total = await log.cases.count_cases(args.guild, author_id=args.user_id)
    _print_cases(records, f"{len(records)} of {total} cases of member {args.user_id}")
    return EXIT_OK


async def _case(log: AuditLog, args: argparse.Namespace) -> int:
    record = await log.cases.case(args.guild, args.number)
    if record is None:
        print(f"error: guild {args.guild} has no case {args.number}", file=sys.stderr)
        return EXIT_MISSING
    for name, value in record.model_dump().items():
        print(f"{name:<20} {_cell(value)}")
    events = await log.cases.case_events(args.guild, args.number)
    if events:
        print("\nevents")
        for event in events:
            print(
                f"  {_when(event.at)}  {_clean(event.action)} by {_clean(event.actor)}: "
                f"{_clean(event.reason)}"
            )
    return EXIT_OK


async def _flagged(log: AuditLog, args: argparse.Namespace) -> int:
    threshold = args.threshold
    if threshold is None:
        threshold = (await log.settings.guild_config(args.guild)).alert_threshold
    since = datetime.now(UTC) - timedelta(days=args.days)
    fraud = "_".join(args.fraud.lower().split()) if args.fraud else None
    records = await log.cases.flagged(
        args.guild,
        since=since,
        threshold=threshold,
        limit=args.limit,
        generator=args.generator,
        fraud_type=fraud,
    )
    total = await log.cases.count_flagged(
        args.guild, since=since, threshold=threshold, generator=args.generator, fraud_type=fraud
    )
    _print_cases(
        records,
        f"{len(records)} of {total} cases flagged in the last {args.days} days "
        f"(spoofed, or probability ≥ {threshold:.0%})",
    )
    return EXIT_OK


async def _stats(log: AuditLog, args: argparse.Namespace) -> int:
    stats = await log.cases.stats(args.guild, since=datetime.now(UTC) - timedelta(days=args.days))
    _print_stats(stats, args.days)
    return EXIT_OK


async def _export(log: AuditLog, args: argparse.Namespace) -> int:
    records = log.cases.export(args.guild, since=datetime.now(UTC) - timedelta(days=args.days))
    if args.output is None:
        count = await write_export(records, args.format, sys.stdout)
        where = "standard output"
    else:
        with args.output.open("w", encoding="utf-8", newline="") as out:
            count = await write_export(records, args.format, out)
        where = str(args.output)
    print(f"exported {count} cases to {where}", file=sys.stderr)
    return EXIT_OK


_QUERIES = {
    "guilds": _guilds,
    "recent": _recent,
    "user": _user,
    "case": _case,
    "flagged": _flagged,
    "stats": _stats,
    "export": _export,
}


# --- output ------------------------------------------------------------------------------------


def _print_cases(records: Sequence[ScanRecord], title: str) -> None:
    print(title)
    if not records:
        return
    header = ("case", "when (UTC)", "status", "label", "p(spoof)", "author", "file", "review")
    table = [
        (
            str(r.case_number),
            _when(r.created_at),
            r.status.value,
            r.label.value if r.label else "-",
            "-" if r.spoofed_probability is None else f"{r.spoofed_probability:.0%}",
            str(r.author_id or "-"),
            _clip(_clean(r.filename), _FILENAME_WIDTH),
            r.review.value if r.review else ("error: " + r.error_kind if r.error_kind else ""),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in (header, *table)) for i in range(len(header))]
    for row in (header, *table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _print_stats(stats: AuditStats, days: int) -> None:
    print(f"{stats.total} cases in the last {days} days")
    sections: list[tuple[str, list[tuple[Any, int]]]] = [
        ("by label", sorted(stats.by_label.items(), key=lambda kv: -kv[1])),
        ("by day", stats.by_day),
        ("top channels", stats.top_channels),
        ("top flagged members", stats.top_flagged_authors),
        ("provider and media errors", sorted(stats.errors_by_kind.items(), key=lambda kv: -kv[1])),
    ]
    for title, items in sections:
        print(f"\n{title}")
        if not items:
            print("  (none)")
        for key, count in items:
            print(f"  {_clean(str(key)):<24} {count}")
    print("\nmoderators' reviews by probability (to tune the alert threshold)")
    if not stats.reviews_by_band:
        print("  (none)")
    for band in stats.reviews_by_band:
        reviewed = band.confirmed + band.false_positive
        print(
            f"  {band.name:<24} {band.confirmed} confirmed, {band.false_positive} not a "
            f"deepfake ({band.false_positive / reviewed:.0%} false positives)"
        )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    return _clean(str(getattr(value, "value", value)))


def _clean(text: str) -> str:
    """Member-written text without control characters (no escape sequences to the terminal)."""
    return "".join(
        (" " if ch in "\n\t" else "?") if unicodedata.category(ch) == "Cc" else ch for ch in text
    )


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _default_db() -> Path | str:
    # Imported here: only this path needs the settings; it reads .env like the bot does,
    # and provider keys are optional there.
    from bot.settings import load_settings  # noqa: PLC0415

    return load_settings().audit_log_location  # SPOOFWATCH_DATABASE_URL when set


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
