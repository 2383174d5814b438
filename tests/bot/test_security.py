"""Security: no secret leaks, nobody pinged, media only from allowed hosts, moderator-only
buttons, parameterized SQL, and no temp file outliving its scan.

The secret checks read one end-to-end run (a module-scoped fixture) in which every log record
of every logger is kept, at DEBUG, discord.py's and aiohttp's included, unfiltered (the
redacting filter `python -m bot` installs is a last line of defence, not the reason nothing
leaks). The run scans with both providers, meets a 401 from each whose body echoes the API
key (as a careless proxy might), raises a mod-log alert, answers a /check and exports the
audit log twice. Then the Discord token and both API keys are searched for in the logs,
in everything the bot sent to Discord, and in the audit log.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.guild_config import GuildConfig
from bot.settings import DEFAULT_MEDIA_HOSTS
from bot.storage import NewScan, Trigger, open_audit_log
from bot.verdict import ProviderName
from testkit.alerts import moderation
from testkit.discord_emulator import DiscordEmulator
from testkit.discord_emulator.models import Channel, Message
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.media_factory import MediaFiles
from testkit.module_bot import module_bot
from testkit.standins import behavioral_signals as bs_module
from testkit.standins import resemble as resemble_module
from testkit.standins.behavioral_signals import utterance
from testkit.standins.resemble import metrics

REPO = Path(__file__).resolve().parents[2]
BS_KEY, RESEMBLE_KEY = bs_module.API_KEY, resemble_module.API_KEY
SCANNING = "\N{LEFT-POINTING MAGNIFYING GLASS}"


def error_kind(reply: Message) -> str | None:
    [embed] = reply.embeds
    if not embed.get("title", "").startswith("Could not check"):
        return None
    # The kind is the footer's code ("Case #4 · error code: too_large"), for moderators.
    return str(embed["footer"]["text"]).rpartition("error code: ")[2]


# --- secrets: one run, searched everywhere --------------------------------------------------


class _KeepEverything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The emulator and the stand-ins play Discord and the providers: they receive the
        # credentials and may log them. Only the bot's side (and its libraries) is on trial.
        if not record.name.startswith("tests."):
            self.lines.append(self.format(record))  # exc_info and stack_info included


@contextlib.contextmanager
def every_log_record() -> Iterator[_KeepEverything]:
    """Root, discord.py, aiohttp and asyncio at DEBUG into one unfiltered handler."""
    handler = _KeepEverything()
    loggers = [logging.getLogger(n) for n in ("", "discord", "aiohttp", "asyncio", "bot", "cogs")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@dataclass
class SecretsRun:
    secrets: dict[str, str]
    places: dict[str, str]  # where → everything found there, as text
    bot_messages: list[Message]
    failure_kinds: list[str | None]
    export_files: list[str]
    cdn_requests_with_authorization: int


def _discord_payloads(emu: DiscordEmulator) -> str:
    """Everything the bot sent to Discord except the Authorization header it must send."""
    parts: list[str] = []
    for request in emu.requests:
        parts.append(f"{request.method} {request.path} {request.query}")
        parts.append(json.dumps(request.json, default=str))
        parts.extend(f.data.decode("utf-8", "replace") for f in request.files)
        parts.extend(v for k, v in request.headers.items() if k.lower() != "authorization")
    for message in emu.bot_messages():
        parts.append(message.content)
        parts.append(json.dumps(message.embeds))
        parts.extend(f.data.decode("utf-8", "replace") for f in message.files)
    return "\n".join(parts)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secrets_run(
    tmp_path_factory: pytest.TempPathFactory, media: MediaFiles
) -> AsyncIterator[SecretsRun]:
    tmp = tmp_path_factory.mktemp("secrets")
    modlog: list[Channel] = []

    def add_modlog(emu: DiscordEmulator) -> None:
        modlog.append(emu.create_text_channel(emu.guild, "mod-log"))

    with every_log_record() as logs:
        async with module_bot(tmp, scene=add_modlog, log_level="DEBUG") as run:
            emu, bot = run.emu, run.bot
            config = GuildConfig(modlog_channel_id=modlog[0].id)
            await bot.guild_configs.save(emu.guild.id, config)
            kinds: list[str | None] = []

            async def scan(file: Path, *, refused: bool = False, **kwargs: Any) -> None:
                attachment = emu.attachment(file, **kwargs)
                notices = len(emu.bot_messages(modlog[0]))
                sent = await emu.send_message(
                    emu.text_channel, emu.member, attachments=[attachment]
                )
                if refused:
                    # A refused key is told to the mod-log (and the log), not the channel.
                    await emu.wait_for(lambda: len(emu.bot_messages(modlog[0])) > notices)
                    await bot.scan_pool.join()
                    [case] = await bot.audit.cases.recent(emu.guild.id, limit=1)
                    kinds.append(case.error_kind)
                    return
                kinds.append(error_kind(await emu.wait_for_reply(sent)))
                await bot.scan_pool.join()

            # Resemble: a flagged voice message (reply + mod-log alert), then a 401 that
            # echoes the key.
            run.resemble.script_result(media.voice_ogg, metrics=metrics([0.97], label="fake"))
            await scan(media.voice_ogg, voice=True, duration_secs=3.0)
            run.resemble.fail_next(
                "submit", 401, body={"message": f"Invalid API token {RESEMBLE_KEY}"}
            )
            await scan(media.tone_wav, refused=True, content_type="audio/wav")
            # Behavioral Signals, the same two.
            provider = ProviderName.BEHAVIORAL_SIGNALS
            await bot.guild_configs.save(
                emu.guild.id, config.model_copy(update={"provider": provider})
            )
            run.bs.default_results = utterance(0, 0.0, 1.4, text=" @everyone hi", spoofed=0.9)
            await scan(media.tone_mp3, content_type="audio/mpeg")
            run.bs.fail_next(
                "submit", 401, body={"code": 401, "message": f"Unauthorized: token {BS_KEY}"}
            )
            await scan(media.speech_wav, refused=True, content_type="audio/wav")
            # /check, and both exports.
            check = await emu.invoke_slash(
                emu.text_channel,
                emu.member,
                "check",
                {"file": emu.attachment(media.video_mp4, "v.mp4", "video/mp4"), "public": True},
            )
            await check.wait_for_reply()
            exports = []
            for fmt in ("csv", "json"):
                ix = await emu.invoke_slash(
                    emu.text_channel, emu.moderator, "audit export", {"format": fmt}
                )
                exports.append(await ix.wait_for_reply())
            await bot.scan_pool.join()

            audit_rows = [
                r.model_dump_json()
                async for r in bot.audit.cases.export(
                    emu.guild.id, since=datetime(2000, 1, 1, tzinfo=UTC)
                )
            ]
            audit_rows += [
                e.model_dump_json() for e in await bot.audit.cases.events(emu.guild.id, limit=100)
            ]
            secrets = {
                "Discord token": emu.token,
                "Behavioral Signals key": BS_KEY,
                "Resemble key": RESEMBLE_KEY,
            }
            yield SecretsRun(
                secrets=secrets,
                places={
                    "logs": "\n".join(logs.lines),
                    "Discord payloads": _discord_payloads(emu),
                    "audit log": "\n".join(audit_rows),
                },
                bot_messages=emu.bot_messages(),
                failure_kinds=kinds,
                export_files=[f.filename for m in exports for f in m.files],
                cdn_requests_with_authorization=sum(
                    1 for r in emu.cdn_requests if r.had_authorization
                ),
            )


@pytest.mark.asyncio(loop_scope="module")
async def test_the_secrets_run_did_everything(secrets_run: SecretsRun) -> None:
    """Fails if the run skipped a step (a 401, an export, the debug logs), which would make
    the secret searches below vacuous."""
    assert secrets_run.failure_kinds == [None, "provider_auth", None, "provider_auth"]
    assert len(secrets_run.export_files) == 2
    assert "discord.gateway" in secrets_run.places["logs"]  # discord.py's DEBUG was captured


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("where", ["logs", "Discord payloads", "audit log"])
async def test_no_secret_anywhere(secrets_run: SecretsRun, where: str) -> None:
    """Fails if the Discord token or an API key appears in that place."""
    text = secrets_run.places[where]
    leaked = [name for name, secret in secrets_run.secrets.items() if secret in text]
    assert leaked == []


@pytest.mark.asyncio(loop_scope="module")
async def test_attachment_downloads_never_carry_the_bot_token(secrets_run: SecretsRun) -> None:
    """Fails if a CDN download sent an Authorization header (the token would leave Discord's
    API for a file host)."""
    assert secrets_run.cdn_requests_with_authorization == 0


@pytest.mark.asyncio(loop_scope="module")
async def test_every_bot_message_pings_nobody(secrets_run: SecretsRun) -> None:
    """Fails if any message the bot posted (replies, alert, /check, exports) could ping:
    allowed_mentions must parse nothing and not ping the replied-to member."""
    messages = secrets_run.bot_messages
    assert len(messages) >= 8
    for message in messages:
        allowed = message.allowed_mentions
        assert allowed is not None, message.content
        assert allowed.get("parse") == [] and not allowed.get("replied_user")
        assert message.mention_user_ids == [] and not message.mention_everyone


# --- media only from allowed hosts ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost.evil/attachments/1/2/voice-message.ogg",
        "http://127.0.0.2:{port}/attachments/1/2/voice-message.ogg",
        "https://cdn.discordapp.com.evil.example/attachments/1/2/voice-message.ogg",
        "https://evil.example/attachments/1/2/voice-message.ogg?cdn.discordapp.com",
        "ftp://127.0.0.1:{port}/voice-message.ogg",
    ],
)
async def test_media_from_a_host_not_allowed_is_refused_unfetched(
    spoofwatch: Harness, media: MediaFiles, url: str
) -> None:
    """Fails if an attachment whose URL points outside SPOOFWATCH_ALLOWED_MEDIA_HOSTS is
    fetched, or answered with anything but a refusal naming the rule."""
    emu = spoofwatch.emu
    attachment = emu.attachment(media.voice_ogg, voice=True, duration_secs=3.0)
    port = emu.url.rsplit(":", 1)[1]
    attachment.url = attachment.proxy_url = url.format(port=port)
    message = await emu.send_message(emu.text_channel, emu.member, attachments=[attachment])
    reply = await spoofwatch.reply_to(message)
    assert error_kind(reply) == "disallowed_host"
    assert attachment.downloads == 0 and emu.cdn_requests == []


async def test_loopback_media_is_refused_unless_the_operator_allows_it(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles
) -> None:
    """Fails if, with the default SPOOFWATCH_ALLOWED_MEDIA_HOSTS (Discord's CDN only), the
    bot fetches media from a loopback host (here, the emulator's CDN)."""
    async with make_spoofwatch(allowed_media_hosts=DEFAULT_MEDIA_HOSTS) as sw:
        attachment = sw.emu.attachment(media.voice_ogg, voice=True, duration_secs=3.0)
        message = await sw.emu.send_message(
            sw.emu.text_channel, sw.emu.member, attachments=[attachment]
        )
        reply = await sw.reply_to(message)
    assert error_kind(reply) == "disallowed_host"
    assert attachment.downloads == 0


# --- buttons refuse members without the permission ------------------------------------------


@pytest.mark.parametrize("action", ["confirm", "fp", "delete", "t10m", "t1h", "t1d"])
async def test_alert_button_clicked_by_a_member_does_nothing(
    make_spoofwatch: MakeSpoofwatch, emulator: DiscordEmulator, media: MediaFiles, action: str
) -> None:
    """Fails if a plain member's click on a mod-log alert button is not refused privately, or
    has any effect: a review, a deletion, a time-out, an event on the case."""
    modlog = emulator.create_text_channel(emulator.guild, "mod-log")
    async with make_spoofwatch() as sw:
        await sw.bot.guild_configs.save(emulator.guild.id, GuildConfig(modlog_channel_id=modlog.id))
        sw.resemble.script_result(media.voice_ogg, metrics=metrics([0.97], label="fake"))
        flagged = await sw.post(media.voice_ogg, voice=True)
        alert = await emulator.wait_for_message(modlog)
        await sw.settle()
        before = len(emulator.requests)
        click = await emulator.click_button(alert, emulator.member, f"sw:alert:{action}:1")
        answer = await click.wait_for_reply()
        await sw.settle()
        assert answer.ephemeral and "permission" in answer.content
        case = await sw.bot.audit.cases.case(emulator.guild.id, 1)
        assert case is not None and case.review is None
        assert moderation(await sw.bot.audit.cases.case_events(emulator.guild.id, 1)) == []
        assert not emulator.message(flagged).deleted
        acting = [
            r
            for r in emulator.requests[before:]
            if r.method in {"PATCH", "DELETE", "PUT"} and "/interactions/" not in r.path
        ]
        assert acting == []


# --- SQL only through parameters -------------------------------------------------------------

_SQL_WORDS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", "PRAGMA ", " WHERE ", "CREATE ")


def _is_constant_name(node: ast.expr) -> bool:
    """A module constant (UPPER_CASE, maybe private, maybe `module.CONSTANT`), or a constant
    table looked up with a literal or an enum member (`CODES[Status.QUEUED]`)."""
    if isinstance(node, ast.Subscript):
        key = node.slice
        fixed_key = isinstance(key, ast.Constant) or (
            isinstance(key, ast.Attribute) and _is_constant_name(key)
        )
        return fixed_key and _is_constant_name(node.value)
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return bool(name) and name.lstrip("_").replace("_", "").isupper()


def _looks_like_sql(node: ast.JoinedStr | ast.Constant) -> bool:
    parts = [node] if isinstance(node, ast.Constant) else node.values
    text = " ".join(str(p.value) for p in parts if isinstance(p, ast.Constant)).upper()
    return any(word in f" {text} " for word in _SQL_WORDS)


def _literal_arguments(tree: ast.Module, function: str, parameter: str) -> list[bool]:
    """For every call of `function` (or `self.function`) in the module: whether it passes a
    string literal for `parameter`."""
    definitions = [
        n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)
    ]
    definition = next(n for n in definitions if n.name == function)
    names = [a.arg for a in definition.args.args]
    position = names.index(parameter) - (1 if names and names[0] == "self" else 0)
    found = []
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        callee = (
            call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        )
        if callee != function:
            continue
        value = next((k.value for k in call.keywords if k.arg == parameter), None)
        if value is None and len(call.args) > position:
            value = call.args[position]
        found.append(isinstance(value, ast.Constant) and isinstance(value.value, str))
    return found


def _sql_violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    functions = {
        id(node): fn
        for fn in ast.walk(tree)
        if isinstance(fn, ast.AsyncFunctionDef | ast.FunctionDef)
        for node in ast.walk(fn)
    }
    problems = []
    for node in ast.walk(tree):
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
        where = f"{shown}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant | ast.JoinedStr) and _looks_like_sql(side):
                    other = node.right if side is node.left else node.left
                    if isinstance(node.op, ast.Mod) or not (
                        isinstance(other, ast.Constant | ast.JoinedStr) or _is_constant_name(other)
                    ):
                        problems.append(f"{where}: SQL built with {type(node.op).__name__}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant | ast.JoinedStr)
            and _looks_like_sql(node.func.value)
        ):
            problems.append(f"{where}: SQL built with str.format")
        elif isinstance(node, ast.JoinedStr) and _looks_like_sql(node):
            for value in (v.value for v in node.values if isinstance(v, ast.FormattedValue)):
                if _is_constant_name(value):
                    continue
                if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "int":
                    continue  # a number cannot carry SQL
                function = functions.get(id(node))
                if (
                    isinstance(value, ast.Name)
                    and function is not None
                    and value.id in [a.arg for a in function.args.args]
                ):
                    calls = _literal_arguments(tree, function.name, value.id)
                    if calls and all(calls):
                        continue  # a parameter every caller fills with a literal
                problems.append(f"{where}: SQL interpolates {ast.unparse(value)}")
    return problems


def test_sql_is_built_from_constants_only() -> None:
    """Fails if any SQL in bot/storage interpolates a value (f-string, %, +, .format) rather
    than binding it as a parameter: only module constants, int() casts, and parameters every
    caller fills with a string literal may be spliced into SQL text."""
    files = sorted((REPO / "bot" / "storage").glob("*.py"))
    assert files
    problems = [p for f in files for p in _sql_violations(f)]
    assert problems == []


def test_sql_check_catches_an_interpolated_value(tmp_path: Path) -> None:
    """Fails if the SQL check above would miss a value spliced into a query."""
    # In tmp_path, not bot/storage: tests running at once on other workers read that tree.
    bad = tmp_path / "_probe_for_the_sql_test.py"
    source = (
        "async def by_name(conn, name):\n"
        "    await conn.execute(f\"SELECT * FROM scans WHERE filename = '{name}'\")\n"
        '    await conn.execute("DELETE FROM scans WHERE id = %s" % name)\n'
    )
    bad.write_text(source)
    assert len(_sql_violations(bad)) == 2


@pytest.mark.parametrize(
    "payload",
    [
        "x'); DROP TABLE scans; --",
        '" OR 1=1 --',
        "voice.ogg'; UPDATE scans SET label = 0; --",
    ],
)
async def test_hostile_text_is_stored_as_data(tmp_path: Path, payload: str) -> None:
    """Fails if text from Discord (a file name, a review note) changes the database instead
    of being stored verbatim."""
    audit = await open_audit_log(tmp_path / "audit.db")
    try:
        record, _ = await audit.scans.create_scan(
            NewScan(
                guild_id=1, filename=payload, trigger=Trigger.CLI, provider=ProviderName.RESEMBLE
            )
        )
        await audit.scans.mark_failed(record.id, "not_media", payload)
        await audit.admin.log_event(1, actor="2", action="review", target=payload, reason=payload)
        [stored] = await audit.cases.recent(1, limit=10)
        assert stored.filename == payload and stored.error_message == payload
        assert stored.label is None
        assert (await audit.cases.count_cases(1)) == 1
    finally:
        await audit.close()


# --- temp files deleted after each scan -------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "file", "settings", "arrange"),
    [
        ("verdict", "voice_ogg", {}, None),
        ("not_media", "random_ogg", {}, None),
        (
            "provider_timeout",
            "voice_ogg",
            {"request_timeout_s": 0.3, "behavioralsignals_upload_timeout_s": 0.3},
            "hang",
        ),
        ("media_timeout", "long_ogg", {"ffmpeg_timeout_s": 0.5, "max_duration_s": 20_000}, None),
    ],
)
async def test_scan_leaves_no_temp_files(
    make_spoofwatch: MakeSpoofwatch,
    media: MediaFiles,
    tmp_path: Path,
    outcome: str,
    file: str,
    settings: dict[str, object],
    arrange: str | None,
) -> None:
    """Fails if a scan that ended this way (verdict, refusal, provider timeout, media
    worker timeout) leaves anything in SPOOFWATCH_TEMP_DIR."""
    temp = tmp_path / "scans"
    temp.mkdir()
    async with make_spoofwatch(provider="behavioral_signals", temp_dir=temp, **settings) as sw:
        if arrange == "hang":
            sw.bs.hang("submit", None)
        path = getattr(media, file)
        attachment = (
            sw.emu.attachment(path, voice=True, duration_secs=3.0)
            if file == "voice_ogg"
            else sw.emu.attachment(path, content_type="audio/ogg")
        )
        message = await sw.emu.send_message(
            sw.emu.text_channel, sw.emu.member, attachments=[attachment]
        )
        reply = await sw.reply_to(message)
        assert error_kind(reply) == (None if outcome == "verdict" else outcome)
        assert sorted(temp.rglob("*")) == []


async def test_cancelled_scan_leaves_no_temp_files(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles, tmp_path: Path
) -> None:
    """Fails if a scan cancelled mid-flight (the bot shutting down) leaves its download or
    its transcode in SPOOFWATCH_TEMP_DIR."""
    temp = tmp_path / "scans"
    temp.mkdir()
    async with make_spoofwatch(provider="behavioral_signals", temp_dir=temp) as sw:
        sw.bs.hang("submit", seconds=60)  # cancelled while its upload is unanswered
        await sw.post(media.voice_ogg, voice=True)
        await sw.emu.wait_for(lambda: sw.bs.received["submit"] >= 1)
        assert sorted(temp.rglob("*")) != []  # the scan's files exist until it is submitted
        await sw.bot.close()
        assert sorted(temp.rglob("*")) == []
