"""The timeline strip: a verdict's stretches as one coloured bar with time marks (PNG).

Drawn with Pillow from numbers the bot computed itself (segment times and scores), never from
a user's file, so it runs in a thread rather than a worker process; it is small enough (see
BENCHMARKS.md, "Timeline strip") that the GIL it holds meanwhile does not stall the event loop
noticeably. The same colours as the embeds: the guild's threshold decides each stretch.
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

from PIL import Image, ImageDraw, ImageFont

from bot.verdict import Finding, Segment, segment_finding

WIDTH: Final = 640
STRIP_HEIGHT: Final = 28
MARGIN: Final = 12
HEIGHT: Final = STRIP_HEIGHT + 26
#: Discord's colours for danger, warning and success, so the picture reads like the embed.
COLOURS: Final = {
    Finding.FLAGGED: (218, 55, 60),
    Finding.UNCLEAR: (240, 178, 50),
    Finding.GENUINE: (35, 165, 90),
}
#: Time not covered by any stretch (the provider skipped it).
GAP: Final = (128, 132, 142)
#: Mid grey reads on Discord's dark and light themes alike; the background is transparent.
TEXT: Final = (148, 155, 164)


def picture_name(case_number: int) -> str:
    return f"timeline-{case_number}.png"


def wants_picture(segments: Sequence[Segment]) -> bool:
    """A strip only says more than the headline when there are several stretches."""
    return len(segments) > 1


def render_strip(
    segments: Sequence[Segment], threshold: float, duration_s: float | None = None
) -> bytes:
    """The PNG of one verdict's stretches, coloured per stretch at `threshold`."""
    end = max([duration_s or 0.0, *(s.end for s in segments)])
    if not math.isfinite(end) or end <= 0:
        end = 1.0
    image = Image.new("RGBA", (WIDTH, HEIGHT), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    left, right = MARGIN, WIDTH - MARGIN
    span = right - left

    def x(t: float) -> int:
        return left + round(min(max(t, 0.0), end) / end * span)

    draw.rectangle((left, 0, right, STRIP_HEIGHT - 1), fill=GAP)
    for segment in segments:
        x0, x1 = x(segment.start), x(segment.end)
        # A stretch keeps at least one pixel, and a 1 px gap separates neighbours when there
        # is room, so 20 stretches read as 20.
        gap = 1 if x1 - x0 > 3 else 0
        draw.rectangle(
            (x0, 0, max(x0, x1 - 1 - gap), STRIP_HEIGHT - 1),
            fill=COLOURS[segment_finding(segment, threshold)],
        )
    font = _font()
    for t in _marks(end):
        tx = x(t)
        draw.line((tx, STRIP_HEIGHT, tx, STRIP_HEIGHT + 4), fill=TEXT)
        label = _clock(t)
        width = draw.textlength(label, font=font)
        lx = min(max(tx - width / 2, 0), WIDTH - width)
        draw.text((lx, STRIP_HEIGHT + 6), label, fill=TEXT, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


async def render_strip_async(
    segments: Sequence[Segment], threshold: float, duration_s: float | None = None
) -> bytes:
    """`render_strip` off the event loop."""
    return await asyncio.to_thread(render_strip, tuple(segments), threshold, duration_s)


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=13)
    except (OSError, TypeError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _marks(end: float) -> list[float]:
    """Round time marks, four or five across the clip, the end included."""
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if end / s <= 5), 900)
    marks = [float(t) for t in range(0, int(end) + 1, step)]
    # The end gets its own mark unless one sits too close to it to leave room for the label.
    if end - marks[-1] < step * 0.5:
        marks[-1] = end
    else:
        marks.append(end)
    return marks


def _clock(t: float) -> str:
    minutes, seconds = divmod(int(t + 0.5), 60)
    return f"{minutes}:{seconds:02}"
