"""Discord's message limits, enforced like the API does: a 400 "Invalid Form Body" (code 50035).

Only limits a bot can realistically trip are checked: content length, embed limits (per field and
6000 in total), URL schemes in embeds, and the shape of buttons.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from .models import iter_components

JSON = dict[str, Any]

EMBED_LIMITS = {"title": 256, "description": 4096}
_URL_KEYS = (
    ("url",),
    ("image", "url"),
    ("thumbnail", "url"),
    ("author", "url"),
    ("footer", "icon_url"),
)
COMPONENTS_V2_FLAG = 1 << 15


class FormErrors:
    """Collects errors in Discord's nested ``errors`` shape."""

    def __init__(self) -> None:
        self.errors: JSON = {}

    def add(self, path: list[str | int], code: str, message: str) -> None:
        node = self.errors
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def too_long(self, path: list[str | int], limit: int) -> None:
        self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def body(self) -> JSON:
        return {"code": 50035, "errors": self.errors, "message": "Invalid Form Body"}


def validate_message(
    payload: JSON, *, has_files: bool = False, partial: bool = False
) -> JSON | None:
    """Return Discord's 400 body if the message payload breaks a limit, else None.

    ``partial`` is for edits, where an absent field means "unchanged" and may not be empty.
    """
    errors = FormErrors()
    content = payload.get("content") or ""
    if len(content) > 2000:
        errors.too_long(["content"], 2000)
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        errors.too_long(["embeds"], 10)
    total = 0
    for index, embed in enumerate(embeds):
        total += _validate_embed(errors, ["embeds", index], embed)
    if total > 6000:
        errors.add(["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    if not payload.get("flags", 0) & COMPONENTS_V2_FLAG:
        _validate_components(errors, payload.get("components") or [])
    if errors.errors:
        return errors.body()
    empty = not (
        content
        or embeds
        or payload.get("components")
        or payload.get("sticker_ids")
        or payload.get("poll")
        or has_files
    )
    if not partial and empty:
        return {"code": 50006, "message": "Cannot send an empty message"}
    return None


def _validate_embed(errors: FormErrors, path: list[str | int], embed: JSON) -> int:
    size = 0
    for key, limit in EMBED_LIMITS.items():
        text = embed.get(key) or ""
        size += len(text.strip())
        if len(text) > limit:
            errors.too_long([*path, key], limit)
    fields = embed.get("fields") or []
    if len(fields) > 25:
        errors.too_long([*path, "fields"], 25)
    for i, field in enumerate(fields):
        for key, limit in (("name", 256), ("value", 1024)):
            text = str(field.get(key) or "")
            size += len(text.strip())
            if not text.strip():
                errors.add(
                    [*path, "fields", i, key], "BASE_TYPE_REQUIRED", "This field is required"
                )
            elif len(text) > limit:
                errors.too_long([*path, "fields", i, key], limit)
    for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
        text = (embed.get(key) or {}).get(sub) or ""
        size += len(text.strip())
        if len(text) > limit:
            errors.too_long([*path, key, sub], limit)
    color = embed.get("color")
    if color is not None and not 0 <= int(color) <= 0xFFFFFF:
        errors.add([*path, "color"], "NUMBER_TYPE_MAX", "int value should be <= 16777215.")
    for keys in _URL_KEYS:
        node: Any = embed
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and urlparse(node).scheme not in ("http", "https", "attachment"):
            scheme = urlparse(node).scheme
            errors.add(
                [*path, *keys], "URL_TYPE_INVALID_PROTOCOL", f'Scheme "{scheme}" is not supported.'
            )
    return size


def _validate_components(errors: FormErrors, rows: list[JSON]) -> None:
    if len(rows) > 5:
        errors.too_long(["components"], 5)
    for r, row in enumerate(rows):
        if row.get("type") != 1:
            errors.add(
                ["components", r, "type"], "UNION_TYPE_CHOICES", 'Value of field "type" must be 1.'
            )
            continue
        children = row.get("components") or []
        if len(children) > 5:
            errors.too_long(["components", r, "components"], 5)
    seen: set[str] = set()
    for component in iter_components(rows):
        custom_id = component.get("custom_id")
        if custom_id is not None:
            if len(custom_id) > 100:
                errors.too_long(["components", "custom_id"], 100)
            if custom_id in seen:
                errors.add(
                    ["components", "custom_id"],
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)
        if component.get("type") == 2:
            if len(component.get("label") or "") > 80:
                errors.too_long(["components", "label"], 80)
            link = component.get("style") == 5
            if link and not component.get("url"):
                errors.add(["components", "url"], "BASE_TYPE_REQUIRED", "This field is required")
            if not link and component.get("style") != 6 and not custom_id:
                errors.add(
                    ["components", "custom_id"], "BASE_TYPE_REQUIRED", "This field is required"
                )
