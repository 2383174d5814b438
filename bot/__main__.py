"""`python -m bot` runs the bot; `scan`, `audit`, `db` and `sync` are the operators' commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot import audit_cli, cli, db_cli
from bot.errors import SettingsError
from bot.logging_setup import setup_logging
from bot.settings import load_settings

HELP_EPILOG = """\
environment (also read from .env in the current directory; .env.example lists them all):
  DISCORD_TOKEN              the bot's token (Developer Portal → Bot → Reset Token)
  SPOOFWATCH_PROVIDER        behavioral_signals (default) or resemble
  BEHAVIORALSIGNALS_CID      numeric project id, and BEHAVIORALSIGNALS_API_KEY
  RESEMBLE_API_KEY           for resemble
  SPOOFWATCH_DB              the SQLite audit log (default data/spoofwatch.db), or
  SPOOFWATCH_DATABASE_URL    postgresql://... for several processes

exit status:
  0    stopped normally (SIGTERM / Ctrl-C while running)
  2    the configuration is missing or invalid, or Discord refused DISCORD_TOKEN
  3    Discord refused the Message Content intent (the message says which switch)
  130  interrupted before the bot was running
  `scan --help` and `audit --help` describe theirs.

No network at start is not fatal: the bot logs one line per try and logs in again with
backoff. Once logged in it logs the invite URL with the permissions it needs.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Spoofwatch: a Discord bot that catches deepfaked voice messages and videos.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="run the bot (the default)")
    sub.add_parser("sync", help="register the slash commands with Discord, then exit")
    cli.add_parser(sub)
    audit_cli.add_parser(sub)
    db_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    try:
        if command == "audit":
            setup_logging("WARNING")
            return asyncio.run(audit_cli.run(args))
        if command == "db":
            setup_logging("WARNING")
            return db_cli.run(args)
        settings = load_settings()
        setup_logging(
            settings.log_level if command != "scan" else "WARNING", log_format=settings.log_format
        )
        if command == "scan":
            return asyncio.run(cli.run(args, settings))
        # discord.py is imported only when the bot runs, keeping `scan` and `audit` light.
        from bot.discord_glue.lifecycle import run_bot  # noqa: PLC0415

        return run_bot(settings, sync_only=command == "sync")
    except SettingsError as exc:
        print(f"spoofwatch: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"spoofwatch: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
