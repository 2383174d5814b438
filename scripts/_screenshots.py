"""Render what members and moderators see to docs/screenshots/ (a developer's tool).

The payloads come from the bot's own builders (the same functions the cogs send), for a few
typical cases; they are laid out in HTML close to Discord's dark theme and captured with
headless Chromium (`scripts/system-packages --screenshots` installs it from Debian).

    scripts/screenshots            # writes docs/screenshots/*.png
"""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.discord_glue.opinion_embeds import Opinion, opinions_embed  # noqa: E402
from bot.discord_glue.replies import outcome_embeds  # noqa: E402
from bot.errors import ProviderUnavailable  # noqa: E402
from bot.guild_config import GuildConfig  # noqa: E402
from bot.scanning import ScanOutcome  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.storage import AuditEvent, Review, ScanRecord, ScanStatus, Trigger  # noqa: E402
from bot.timeline import picture_name, render_strip  # noqa: E402
from bot.verdict import Label, ProviderName, Segment, Verdict, combine  # noqa: E402
from cogs.admin._cog import settings_embed  # noqa: E402
from cogs.alerts._embeds import alert_embed  # noqa: E402
from cogs.audit._cog import case_embed  # noqa: E402
from cogs.audit._views import page_embed  # noqa: E402
from cogs.autoscan._views import explainer_embed, verdict_view  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
NOW = datetime(2026, 11, 21, 20, 44, tzinfo=UTC)
GUILD, CHANNEL, AUTHOR, MOD = 1, 2, 444555666777888999, 7
NAMES = {AUTHOR: "mallory", MOD: "ModAlice", 8: "sam", 9: "kit"}
CHANNELS = {CHANNEL: "general"}
SCAM = "so I was telling him about the trip and then mom needs you to transfer the money today"
SCORES = [
    0.03,
    0.08,
    0.12,
    0.91,
    0.96,
    0.55,
    0.04,
    0.88,
    0.97,
    0.02,
    0.06,
    0.93,
    0.99,
    0.47,
    0.05,
    0.1,
    0.9,
    0.92,
    0.03,
    0.04,
]


def record(case: int, **fields: Any) -> ScanRecord:
    values: dict[str, Any] = {
        "id": case,
        "guild_id": GUILD,
        "case_number": case,
        "channel_id": CHANNEL,
        "message_id": 1000 + case,
        "author_id": AUTHOR,
        "jump_url": f"https://discord.com/channels/{GUILD}/{CHANNEL}/{1000 + case}",
        "filename": "voice-message.ogg",
        "content_type": "audio/ogg",
        "size": 40_960,
        "duration_s": 60.0,
        "trigger": Trigger.AUTO,
        "provider": ProviderName.BEHAVIORAL_SIGNALS,
        "provider_job_id": "51234",
        "status": ScanStatus.DONE,
        "created_at": NOW - timedelta(minutes=2),
        "label": Label.SPOOFED,
        "spoofed_probability": 0.71,
        "transcript": SCAM,
    }
    values.update(fields)
    return ScanRecord.model_validate(values)


def verdict(p: float, label: Label, scores: list[float] | None = None, **fields: Any) -> Verdict:
    segments = tuple(
        Segment(start=3.0 * i, end=3.0 * i + 3, label=label, spoofed_probability=s)
        for i, s in enumerate(scores or [])
    )
    values: dict[str, Any] = {
        "label": label,
        "spoofed_probability": p,
        "transcript": SCAM,
        "segments": segments,
        "provider": ProviderName.BEHAVIORAL_SIGNALS,
        "provider_job_id": "51234",
        "duration_s": 60.0,
    }
    values.update(fields)
    return Verdict.model_validate(values)


# --- HTML -----------------------------------------------------------------------------------


def markdown(text: str) -> str:
    """The bits of Discord markdown Spoofwatch uses, escaped first."""
    text = html.escape(text)
    text = re.sub(r"\\(.)", r"\1", text)
    text = re.sub(r"&lt;t:(\d+):[a-zA-Z]&gt;", lambda m: _when(int(m[1])), text)
    text = re.sub(
        r"&lt;@!?(\d+)&gt;", lambda m: _mention("@" + NAMES.get(int(m[1]), "member")), text
    )
    text = re.sub(
        r"&lt;#(\d+)&gt;", lambda m: _mention("#" + CHANNELS.get(int(m[1]), "channel")), text
    )
    text = re.sub(r"\[([^\]]+)\]\((https?://[^)]+)\)", r"<a>\1</a>", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    lines = []
    for line in text.split("\n"):
        if line.startswith(("&gt;&gt;&gt; ", "&gt; ")):
            lines.append(f'<span class="quote">{line.split(" ", 1)[1]}</span>')
        elif line.startswith("-# "):
            lines.append(f'<span class="sub">{line[3:]}</span>')
        else:
            lines.append(line)
    return "<br>".join(lines)


def _when(ts: int) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    minutes = max(1, int((NOW - moment).total_seconds() // 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f'<span class="ts">{minutes} {unit} ago</span>'


def _mention(name: str) -> str:
    return f'<span class="mention">{html.escape(name)}</span>'


def embed_html(embed: dict[str, Any], files: dict[str, bytes]) -> str:
    colour = f"#{embed.get('color', 0x4F545C):06x}"
    parts = []
    if author := embed.get("author"):
        name = html.escape(author["name"])
        parts.append(f'<div class="author"><span class="avatar small"></span>{name}</div>')
    if title := embed.get("title"):
        parts.append(f'<div class="title">{markdown(title)}</div>')
    if description := embed.get("description"):
        parts.append(f'<div class="desc">{markdown(description)}</div>')
    fields = "".join(
        f'<div class="field{" inline" if f.get("inline") else ""}"><div class="fname">'
        f'{markdown(f["name"])}</div><div class="fvalue">{markdown(f["value"])}</div></div>'
        for f in embed.get("fields", [])
    )
    if fields:
        parts.append(f'<div class="fields">{fields}</div>')
    if image := embed.get("image"):
        name = image["url"].removeprefix("attachment://")
        data = base64.b64encode(files[name]).decode()
        parts.append(f'<img class="image" src="data:image/png;base64,{data}">')
    if footer := embed.get("footer"):
        parts.append(f'<div class="footer">{html.escape(footer["text"])}</div>')
    return f'<div class="embed" style="border-left-color:{colour}">{"".join(parts)}</div>'


def _button_text(button: dict[str, Any]) -> str:
    emoji = (button.get("emoji") or {}).get("name", "")
    return html.escape(f"{emoji} {button.get('label', '')}".strip())


def components_html(components: list[dict[str, Any]]) -> str:
    rows = []
    for row in components:
        buttons = "".join(
            f'<span class="button s{b.get("style", 2)}">{_button_text(b)}</span>'
            for b in row["components"]
        )
        rows.append(f'<div class="row">{buttons}</div>')
    return "".join(rows)


def message_html(
    caption: str,
    embeds: list[discord.Embed],
    *,
    files: dict[str, bytes] | None = None,
    view: discord.ui.View | None = None,
    ephemeral: bool = False,
    content: str = "",
) -> str:
    body = "".join(embed_html(e.to_dict(), files or {}) for e in embeds)  # type: ignore[arg-type]
    buttons = components_html(view.to_components()) if view else ""
    note = '<div class="eph">Only you can see this · Dismiss message</div>' if ephemeral else ""
    text = f'<div class="content">{markdown(content)}</div>' if content else ""
    return (
        f'<div class="caption">{html.escape(caption)}</div><div class="msg"><span class="avatar">SW'
        f'</span><div><div class="who">Spoofwatch <span class="app">APP</span> '
        f'<span class="ts">Today at 20:44</span></div>{text}{body}{buttons}{note}</div></div>'
    )


CSS = "\n".join(
    (
        (
            "body{background:#313338;color:#dbdee1;font:15px/1.375 'DejaVu Sans',sans-serif;"
            "margin:0;padding:12px;width:860px}"
        ),
        ".caption{font:12px monospace;color:#949ba4;margin:14px 0 6px}",
        ".msg{display:flex;gap:14px}",
        (
            ".avatar{flex:none;width:40px;height:40px;border-radius:50%;background:#5865f2;"
            "color:#fff;display:flex;align-items:center;justify-content:center;font-weight:bold;"
            "font-size:13px}"
        ),
        (
            ".avatar.small{width:22px;height:22px;background:#e67e22;display:inline-block;"
            "vertical-align:middle;margin-right:8px}"
        ),
        ".who{font-weight:600;color:#f2f3f5}",
        ".app{background:#5865f2;color:#fff;font-size:10px;padding:1px 4px;border-radius:3px}",
        ".ts{color:#949ba4;font-size:12px;font-weight:normal}",
        (
            ".embed{background:#2b2d31;border-left:4px solid;border-radius:4px;"
            "padding:10px 16px 14px 12px;margin-top:6px;max-width:520px}"
        ),
        ".title{font-weight:700;color:#f2f3f5;margin:6px 0}",
        ".author{font-weight:600;font-size:14px;margin:4px 0}",
        ".desc{font-size:14px}",
        ".fields{display:flex;flex-wrap:wrap;gap:8px 16px;margin-top:8px}",
        ".field{flex:1 0 100%;font-size:14px}",
        ".field.inline{flex:1 0 28%}",
        ".fname{font-weight:700;color:#f2f3f5}",
        ".quote{border-left:4px solid #4e5058;padding-left:10px;display:inline-block}",
        ".sub{font-size:12px;color:#949ba4}",
        ".footer{font-size:12px;color:#b5bac1;margin-top:8px}",
        ".image{margin-top:12px;max-width:100%;border-radius:4px}",
        ".mention{background:#5865f24d;color:#c9cdfb;border-radius:3px;padding:0 2px}",
        "a{color:#00a8fc}",
        "code{background:#1e1f22;padding:0 3px;border-radius:3px;font-size:13px}",
        ".row{display:flex;gap:8px;margin-top:8px}",
        ".button{background:#4e5058;color:#fff;border-radius:4px;padding:6px 14px;font-size:14px}",
        ".s1{background:#5865f2}",
        ".s3{background:#248046}",
        ".s4{background:#da373c}",
        ".eph{font-size:12px;color:#949ba4;margin-top:4px}",
    )
)


def page(blocks: list[str]) -> str:
    return f"<!doctype html><meta charset=utf-8><style>{CSS}</style>{''.join(blocks)}"


# --- the scenes -----------------------------------------------------------------------------


def member_replies() -> list[str]:
    config = GuildConfig()
    long_clip = verdict(0.71, Label.SPOOFED, SCORES)
    flagged = ScanOutcome(record=record(44), verdict=long_clip)
    strip = render_strip(long_clip.segments, config.alert_threshold, 60.0)
    files = {picture_name(44): strip}
    genuine = ScanOutcome(
        record=record(42, duration_s=3.0, spoofed_probability=0.04, label=Label.BONAFIDE),
        verdict=verdict(0.04, Label.BONAFIDE, duration_s=3.0),
    )
    unclear = ScanOutcome(
        record=record(43, duration_s=5.0, spoofed_probability=0.41, label=Label.BONAFIDE),
        verdict=verdict(0.41, Label.BONAFIDE, duration_s=5.0, transcript="okay so um… tomorrow"),
    )
    failed = ScanOutcome(
        record=record(45, status=ScanStatus.FAILED, label=None),
        error=ProviderUnavailable("behavioral_signals", "HTTP 503 on the upload", status=503),
    )

    def reply(outcome: ScanOutcome, pictures: dict[int, str] | None = None) -> list[discord.Embed]:
        return outcome_embeds(
            [outcome], show_transcript=True, threshold=0.5, automatic=True, pictures=pictures
        )

    return [
        message_html(
            "A 60 s voice message, 20 stretches, flagged (public reply)",
            reply(flagged, {44: picture_name(44)}),
            files=files,
            view=verdict_view([flagged]),
        ),
        message_html(
            "A genuine voice message (public reply, one line)",
            reply(genuine),
            view=verdict_view([genuine]),
        ),
        message_html(
            "An unclear result (public reply)", reply(unclear), view=verdict_view([unclear])
        ),
        message_html("The detection service is down (public reply)", reply(failed)),
        message_html(
            "What does this mean? (only the member sees it)",
            [explainer_embed(record(44), config)],
            ephemeral=True,
        ),
    ]


def moderator_views() -> list[str]:
    config = GuildConfig(modlog_channel_id=3)
    clip = verdict(
        0.97,
        Label.SPOOFED,
        [0.97, 0.95, 0.98, 0.9],
        duration_s=12.0,
        transcript="hi it's me, I lost my phone can you send the code",
    )
    outcome = ScanOutcome(
        record=record(41, duration_s=12.0, spoofed_probability=0.97), verdict=clip
    )
    author = SimpleNamespace(
        id=AUTHOR,
        name="mallory",
        display_name="mallory",
        mention=f"<@{AUTHOR}>",
        display_avatar=SimpleNamespace(url="https://cdn.discordapp.com/embed/avatars/0.png"),
    )
    message: Any = SimpleNamespace(
        author=author,
        channel=SimpleNamespace(mention=f"<#{CHANNEL}>"),
        created_at=NOW - timedelta(minutes=2),
        jump_url=record(41).jump_url,
    )
    files = {picture_name(41): render_strip(clip.segments, 0.5, 12.0)}
    alert = alert_embed(
        message, outcome, None, threshold=0.5, earlier=(1, 1), picture=picture_name(41)
    )
    events = [
        AuditEvent(
            id=1,
            guild_id=GUILD,
            at=NOW - timedelta(minutes=1),
            actor=str(MOD),
            action="timeout",
            target="case 41",
            reason="timed out for 1 h",
            case_number=41,
        ),
    ]
    reviewed = record(
        41,
        spoofed_probability=0.97,
        review=Review.CONFIRMED,
        reviewed_by=MOD,
        reviewed_at=NOW - timedelta(minutes=1),
        duration_s=12.0,
    )
    recent = [
        record(60, spoofed_probability=0.97),
        record(59, author_id=8, label=Label.BONAFIDE, spoofed_probability=0.04),
        record(58, author_id=9, label=Label.BONAFIDE, spoofed_probability=0.41),
        record(57, review=Review.FALSE_POSITIVE, spoofed_probability=0.88),
        record(56, status=ScanStatus.FAILED, label=None, error_kind="not_media"),
    ]
    defaults = Settings(
        _env_file=None,
        discord_token="unused",  # noqa: S106  (nothing connects: only the defaults are read)
        provider="resemble",
        resemble_api_key="x",
    )
    # A second opinion that disagrees: Resemble flags the clip, Behavioral Signals does not.
    first = verdict(0.91, Label.SPOOFED, duration_s=12.0, provider=ProviderName.RESEMBLE)
    second = verdict(0.18, Label.BONAFIDE, duration_s=12.0)
    both = combine(first, second, 0.5)
    side_by_side = opinions_embed(
        [
            Opinion(ProviderName.RESEMBLE, 41, first),
            Opinion(ProviderName.BEHAVIORAL_SIGNALS, 42, second),
        ],
        both,
        filename="voice-message.ogg",
        content_type="audio/ogg",
        audience="moderators",
    )
    return [
        message_html("Mod-log alert", [alert], files=files),
        message_html("Second opinion, in the mod-log", [side_by_side]),
        message_html("/audit case 41", [case_embed(reviewed, events, 0.5)], ephemeral=True),
        message_html("/audit recent", [page_embed("Latest cases", recent, 0, 0.5)], ephemeral=True),
        message_html(
            "/spoofwatch settings show, fresh install",
            [settings_embed(GuildConfig(), defaults)],
            ephemeral=True,
        ),
        message_html(
            "/spoofwatch settings show, configured",
            [settings_embed(config, defaults)],
            ephemeral=True,
        ),
    ]


def capture(name: str, blocks: list[str], browser: str, height: int) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{name}.html"
        source.write_text(page(blocks), encoding="utf-8")
        target = OUT / f"{name}.png"
        subprocess.run(  # noqa: S603  (the browser found on PATH, our own arguments)
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={target}",
                f"--window-size=900,{height}",
                source.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return target


def main() -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("screenshots: no chromium; run scripts/system-packages --screenshots first")
    OUT.mkdir(parents=True, exist_ok=True)
    for name, blocks, height in (
        ("member-replies", member_replies(), 1900),
        ("moderator-views", moderator_views(), 2900),
    ):
        print(capture(name, blocks, browser, height))


if __name__ == "__main__":
    main()
