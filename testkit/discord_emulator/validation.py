"""Discord's request-body rules, enforced like the API does: a 400 "Invalid Form Body" (50035).

Every rule names its source: the official OpenAPI spec (discord/discord-api-spec,
``openapi.json``, by ``components/schemas/<Name>``) or the developer docs (discord/discord-api-docs,
by page). Checked here: message content, embeds (each part and 6000 in all), allowed_mentions,
components (rows, buttons, selects) and interaction callbacks; application commands (names,
descriptions, options, choices, their order and the 8,000-character total) in
``validation_commands.py``, with the same error shape.

Every refusal is also kept in ``refusals``: a body Discord would refuse is a bug in the bot, and
the test fixture fails any test that produced one unless the test expects it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from .models import iter_components
from .rest_app import ApiError

JSON = dict[str, Any]


def enforce(refusals: list[JSON], route: str, error: JSON | None) -> None:
    """Raise Discord's 400 for ``error`` (from a ``validate_*``), and remember it."""
    if error is not None:
        refusals.append({"route": route, **error})
        raise ApiError.body_error(400, error)


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
    # docs: resources/message.mdx, "Create Message": content "up to 2000 characters" (the spec's
    # MessageCreateRequest allows 4000, which only boosted users may send).
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
    _validate_allowed_mentions(errors, payload.get("allowed_mentions"))
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
    """Limits from docs: resources/message.mdx, "Embed Limits" (spec: schemas/RichEmbed*).

    Whitespace at either end is not counted; a field's name and value are required
    (RichEmbedField) and a blank one is refused with BASE_TYPE_REQUIRED.
    """
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


#: docs: interactions/receiving-and-responding.mdx, "Interaction Callback Type".
_CALLBACK_TYPES = frozenset({1, 4, 5, 6, 7, 8, 9, 10, 12})
#: Same page, "Messages": only SUPPRESS_EMBEDS, EPHEMERAL, IS_COMPONENTS_V2, IS_VOICE_MESSAGE and
#: SUPPRESS_NOTIFICATIONS can be set; after a DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE only EPHEMERAL.
_RESPONSE_FLAGS = (1 << 2) | (1 << 6) | (1 << 15) | (1 << 13) | (1 << 12)
_DEFER_FLAGS = 1 << 6


def validate_callback(body: JSON) -> JSON | None:
    """The callback's own rules (type, flags); its message data goes to ``validate_message``.

    spec: schemas/CreateMessageInteractionCallbackRequest and its siblings.
    """
    errors = FormErrors()
    kind = body.get("type")
    if kind not in _CALLBACK_TYPES:
        errors.add(
            ["type"], "BASE_TYPE_CHOICES", f"Value must be one of {sorted(_CALLBACK_TYPES)}."
        )
    flags = int((body.get("data") or {}).get("flags") or 0)
    allowed = _DEFER_FLAGS if kind == 5 else _RESPONSE_FLAGS
    if flags & ~allowed:
        errors.add(["data", "flags"], "MESSAGE_FLAGS_INVALID", "Invalid flags")
    return errors.body() if errors.errors else None


#: Select menus: string, user, role, mentionable, channel (docs: components/reference.mdx).
_SELECTS = frozenset({3, 5, 6, 7, 8})
_LINK, _PREMIUM = 5, 6


def _validate_components(errors: FormErrors, rows: list[JSON]) -> None:
    """Rows and their children (docs: components/reference.mdx, "Action Row", "Button",
    "String Select"; spec: schemas/ActionRowComponentForMessageRequest and the
    ButtonComponentForMessageRequest / StringSelectComponentForMessageRequest it holds).
    """
    # MessageCreateRequest.components: maxItems 5.
    if len(rows) > 5:
        errors.too_long(["components"], 5)
    for r, row in enumerate(rows):
        if row.get("type") != 1:
            errors.add(
                ["components", r, "type"], "UNION_TYPE_CHOICES", 'Value of field "type" must be 1.'
            )
            continue
        children = row.get("components") or []
        # "Up to 5 interactive button components or a single select component".
        if not children:
            errors.add(
                ["components", r, "components"],
                "BASE_TYPE_MIN_LENGTH",
                "Must be 1 or more in length.",
            )
        elif len(children) > 5:
            errors.too_long(["components", r, "components"], 5)
        elif len(children) > 1 and any(c.get("type") in _SELECTS for c in children):
            errors.add(
                ["components", r, "components"],
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            )
        for c, child in enumerate(children):
            path: list[str | int] = ["components", r, "components", c]
            if child.get("type") == 2:
                _validate_button(errors, path, child)
            elif child.get("type") in _SELECTS:
                _validate_select(errors, path, child)
    seen: set[str] = set()
    for component in iter_components(rows):
        custom_id = component.get("custom_id")
        if custom_id is None:
            continue
        # custom_id: "1-100 characters", unique on the message (components/reference.mdx).
        if not 1 <= len(str(custom_id)) <= 100:
            errors.too_long(["components", "custom_id"], 100)
        if custom_id in seen:
            errors.add(
                ["components", "custom_id"],
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                "Component custom id cannot be duplicated",
            )
        seen.add(custom_id)


def _validate_button(errors: FormErrors, path: list[str | int], button: JSON) -> None:
    # ButtonStyleTypes: 1-6; label max 80; url max 512; link buttons have a url and no
    # custom_id, premium buttons an sku_id, every other style a custom_id and no url.
    style = button.get("style")
    if style not in range(1, 7):
        errors.add(
            [*path, "style"], "BASE_TYPE_CHOICES", "Value must be one of (1, 2, 3, 4, 5, 6)."
        )
    if len(button.get("label") or "") > 80:
        errors.too_long([*path, "label"], 80)
    if len(button.get("url") or "") > 512:
        errors.too_long([*path, "url"], 512)
    if style == _LINK:
        if not button.get("url"):
            errors.add([*path, "url"], "BASE_TYPE_REQUIRED", "This field is required")
        if button.get("custom_id"):
            errors.add(
                [*path, "custom_id"],
                "BUTTON_COMPONENT_LINK_HAS_CUSTOM_ID",
                "A link button cannot have a custom id",
            )
    elif style == _PREMIUM:
        if not button.get("sku_id"):
            errors.add([*path, "sku_id"], "BASE_TYPE_REQUIRED", "This field is required")
    else:
        if not button.get("custom_id"):
            errors.add([*path, "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
        if button.get("url"):
            errors.add(
                [*path, "url"], "BUTTON_COMPONENT_URL_NOT_ALLOWED", "Only link buttons have a url"
            )


def _validate_select(errors: FormErrors, path: list[str | int], select: JSON) -> None:
    # custom_id required; placeholder max 150; min_values 0-25; max_values 1-25; a string select
    # has 1-25 options, each with label and value of 1-100 and a description of at most 100.
    if not select.get("custom_id"):
        errors.add([*path, "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
    if len(select.get("placeholder") or "") > 150:
        errors.too_long([*path, "placeholder"], 150)
    low, high = select.get("min_values"), select.get("max_values")
    if low is not None and not 0 <= int(low) <= 25:
        errors.add([*path, "min_values"], "NUMBER_TYPE_MAX", "int value should be <= 25.")
    if high is not None and not 1 <= int(high) <= 25:
        errors.add([*path, "max_values"], "NUMBER_TYPE_MAX", "int value should be <= 25.")
    if select.get("type") != 3:
        return
    options = select.get("options") or []
    if not options:
        errors.add([*path, "options"], "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
    elif len(options) > 25:
        errors.too_long([*path, "options"], 25)
    for o, option in enumerate(options):
        for key in ("label", "value"):
            text = str(option.get(key) or "")
            if not text:
                errors.add(
                    [*path, "options", o, key], "BASE_TYPE_REQUIRED", "This field is required"
                )
            elif len(text) > 100:
                errors.too_long([*path, "options", o, key], 100)
        if len(option.get("description") or "") > 100:
            errors.too_long([*path, "options", o, "description"], 100)


_MENTION_TYPES = frozenset({"users", "roles", "everyone"})


def _validate_allowed_mentions(errors: FormErrors, mentions: Any) -> None:
    """spec: schemas/MessageAllowedMentionsRequest (parse items AllowedMentionTypes, users and
    roles at most 100 snowflakes, all unique); docs: resources/message.mdx, "Allowed Mentions
    Object": ``parse`` is mutually exclusive with a non-empty ``users``/``roles`` of its kind.
    """
    if mentions is None:
        return
    if not isinstance(mentions, dict):
        errors.add(["allowed_mentions"], "DICT_TYPE_CONVERT", "Only dictionaries may be used.")
        return
    parse = mentions.get("parse") or []
    for i, kind in enumerate(parse):
        if kind not in _MENTION_TYPES:
            errors.add(
                ["allowed_mentions", "parse", i],
                "BASE_TYPE_CHOICES",
                "Value must be one of ('everyone', 'roles', 'users').",
            )
    for key in ("users", "roles"):
        ids = mentions.get(key) or []
        if len(ids) > 100:
            errors.too_long(["allowed_mentions", key], 100)
        if len(set(map(str, ids))) != len(ids):
            errors.add(
                ["allowed_mentions", key],
                "SET_TYPE_ALREADY_CONTAINS_VALUE",
                "Values must be unique.",
            )
        if any(not str(i).isdigit() for i in ids):
            errors.add(["allowed_mentions", key], "NUMBER_TYPE_COERCE", "Value is not snowflake.")
        if ids and key in parse:
            errors.add(
                ["allowed_mentions"],
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{key}"] and {key}: [ids] are mutually exclusive.',
            )


def validate_modal(data: JSON) -> JSON | None:
    """A MODAL callback's data (type 9).

    spec: schemas/ModalInteractionCallbackRequestData (custom_id 1-100, title 1-45, 1-40
    components), ActionRowComponentForModalRequest (1-5 text inputs), and
    TextInputComponentForModalRequest (custom_id 1-100, style 1 or 2 per TextInputStyleTypes,
    label up to 45, value up to 4000, placeholder up to 100, min_length 0-4000, max_length
    1-4000). Only the legacy action-row layout discord.py sends is checked in depth.
    """
    errors = FormErrors()
    custom_id = str(data.get("custom_id") or "")
    if not 1 <= len(custom_id) <= 100:
        errors.too_long(["data", "custom_id"], 100)
    title = str(data.get("title") or "")
    if not title:
        errors.add(["data", "title"], "BASE_TYPE_REQUIRED", "This field is required")
    elif len(title) > 45:
        errors.too_long(["data", "title"], 45)
    rows = data.get("components") or []
    if not rows:
        errors.add(["data", "components"], "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
    elif len(rows) > 40:
        errors.too_long(["data", "components"], 40)
    for r, row in enumerate(rows):
        if row.get("type") != 1:
            continue
        children = row.get("components") or []
        if not 1 <= len(children) <= 5:
            errors.too_long(["data", "components", r, "components"], 5)
        for c, child in enumerate(children):
            path: list[str | int] = ["data", "components", r, "components", c]
            if child.get("type") != 4:
                errors.add([*path, "type"], "BASE_TYPE_CHOICES", "Value must be one of (4,).")
                continue
            if not 1 <= len(str(child.get("custom_id") or "")) <= 100:
                errors.too_long([*path, "custom_id"], 100)
            if child.get("style") not in (1, 2):
                errors.add([*path, "style"], "BASE_TYPE_CHOICES", "Value must be one of (1, 2).")
            for key, limit in (("label", 45), ("value", 4000), ("placeholder", 100)):
                if len(child.get(key) or "") > limit:
                    errors.too_long([*path, key], limit)
            low, high = child.get("min_length"), child.get("max_length")
            if low is not None and not 0 <= int(low) <= 4000:
                errors.add([*path, "min_length"], "NUMBER_TYPE_MAX", "int value should be <= 4000.")
            if high is not None and not 1 <= int(high) <= 4000:
                errors.add([*path, "max_length"], "NUMBER_TYPE_MAX", "int value should be <= 4000.")
    return errors.body() if errors.errors else None
