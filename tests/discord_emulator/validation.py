"""Discord's request-body rules, enforced like the API does: a 400 "Invalid Form Body" (50035).

Every rule names its source: the official OpenAPI spec (discord/discord-api-spec,
``openapi.json``, by ``components/schemas/<Name>``) or the developer docs (discord/discord-api-docs,
by page). Checked: message content, embeds (each part and 6000 in all), allowed_mentions,
components (rows, buttons, selects), and application commands (names, descriptions, options,
choices, their order and the 8,000-character total).

Every refusal is also kept in ``refusals``: a body Discord would refuse is a bug in the bot, and
the test fixture fails any test that produced one unless the test expects it.
"""

from __future__ import annotations

import re
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


# --- application commands ----------------------------------------------------------------------

CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND = 1, 2, 3
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
#: docs: interactions/application-commands.mdx, "Application Command Naming":
#: ``^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$``; Python's ``re`` has no \p{…}, so letters
#: and digits are approximated by \w (which also admits "_", as the rule does).
_NAME = re.compile(r"^[-_'\w]{1,32}$")
#: docs: same page, "Registering a Command": up to 100 global CHAT_INPUT commands, 5 USER and
#: 5 MESSAGE commands.
_COMMAND_COUNTS = {CHAT_INPUT: 100, USER_COMMAND: 5, MESSAGE_COMMAND: 5}
#: docs: same page: "a maximum of 8000 characters for combined name, description, and value
#: properties for each command, its options (including subcommands and groups), and choices".
COMMAND_SIZE_LIMIT = 8000


def validate_commands(commands: Any) -> JSON | None:
    """Return Discord's 400 body if a bulk overwrite (PUT …/commands) breaks a rule, else None.

    spec: schemas/ApplicationCommandCreateRequest and its Application*Option* schemas.
    """
    errors = FormErrors()
    if not isinstance(commands, list):
        errors.add([], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return errors.body()
    counts: dict[int, int] = {}
    names: set[tuple[int, str]] = set()
    for i, command in enumerate(commands):
        kind = int(command.get("type") or CHAT_INPUT)
        counts[kind] = counts.get(kind, 0) + 1
        key = (kind, str(command.get("name")))
        if key in names:
            errors.add(
                [i, "name"],
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique: {key[1]}",
            )
        names.add(key)
        _validate_command(errors, [i], command, kind)
    for kind, limit in _COMMAND_COUNTS.items():
        if counts.get(kind, 0) > limit:
            errors.add(
                [],
                "APPLICATION_COMMANDS_TOO_MANY",
                f"Maximum number of {kind} commands ({limit}) reached",
            )
    return errors.body() if errors.errors else None


def _validate_command(errors: FormErrors, path: list[str | int], command: JSON, kind: int) -> None:
    name = str(command.get("name") or "")
    description = command.get("description") or ""
    options = command.get("options") or []
    if kind == CHAT_INPUT:
        _validate_name(errors, [*path, "name"], name)
        _validate_description(errors, [*path, "description"], description)
        _validate_options(errors, [*path, "options"], options, top=True)
    else:
        # Context menus: 1-32 characters, mixed case and spaces allowed, no options.
        if not 1 <= len(name) <= 32:
            errors.too_long([*path, "name"], 32)
        if options:
            errors.add(
                [*path, "options"],
                "APPLICATION_COMMAND_OPTIONS_NOT_ALLOWED",
                "Only CHAT_INPUT commands have options",
            )
    for key, limit in (("name_localizations", 32), ("description_localizations", 100)):
        for locale, text in (command.get(key) or {}).items():
            if not 1 <= len(str(text)) <= limit:
                errors.too_long([*path, key, locale], limit)
    if _size(command) > COMMAND_SIZE_LIMIT:
        errors.add(
            path,
            "APPLICATION_COMMAND_TOO_LARGE",
            f"Command exceeds maximum size ({COMMAND_SIZE_LIMIT})",
        )


def _validate_name(errors: FormErrors, path: list[str | int], name: str) -> None:
    # "If there is a lowercase variant of any letters used, you must use those."
    if not _NAME.fullmatch(name) or name != name.lower():
        errors.add(path, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _validate_description(errors: FormErrors, path: list[str | int], description: str) -> None:
    # "1-100 character description" (CHAT_INPUT commands and every option).
    if not description:
        errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
    elif len(description) > 100:
        errors.too_long(path, 100)


def _validate_options(
    errors: FormErrors, path: list[str | int], options: list[JSON], *, top: bool = False
) -> None:
    """docs: interactions/application-commands.mdx, "Application Command Option Structure"."""
    if len(options) > 25:
        errors.too_long(path, 25)
    kinds = {int(o.get("type") or 0) for o in options}
    nested = kinds & {SUB_COMMAND, SUB_COMMAND_GROUP}
    if nested and kinds - nested:
        # Subcommands and groups cannot sit beside plain options.
        errors.add(
            path,
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-command and sub-command group option types are mutually exclusive to all "
            "other types",
        )
    optional_seen = False
    seen: set[str] = set()
    for o, option in enumerate(options):
        here = [*path, o]
        kind = int(option.get("type") or 0)
        name = str(option.get("name") or "")
        if kind not in range(1, 12):
            errors.add([*here, "type"], "BASE_TYPE_CHOICES", "Value must be one of 1-11.")
        _validate_name(errors, [*here, "name"], name)
        _validate_description(errors, [*here, "description"], option.get("description") or "")
        if name in seen:
            errors.add(
                [*here, "name"],
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        seen.add(name)
        if kind == SUB_COMMAND_GROUP:
            children = option.get("options") or []
            if not top or any(int(c.get("type") or 0) != SUB_COMMAND for c in children):
                errors.add(
                    [*here, "options"],
                    "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                    "A group holds only sub-commands",
                )
            _validate_options(errors, [*here, "options"], children)
        elif kind == SUB_COMMAND:
            _validate_options(errors, [*here, "options"], option.get("options") or [])
        else:
            # "Required options must be listed before optional options".
            if option.get("required"):
                if optional_seen:
                    errors.add(
                        here,
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                optional_seen = True
            _validate_choices(errors, [*here, "choices"], option)


def _validate_choices(errors: FormErrors, path: list[str | int], option: JSON) -> None:
    # Up to 25 choices; name 1-100, a string value up to 100 (application-commands.mdx,
    # "Application Command Option Choice Structure"); min/max_length 0-6000 / 1-6000.
    choices = option.get("choices") or []
    if len(choices) > 25:
        errors.too_long(path, 25)
    for c, choice in enumerate(choices):
        if not 1 <= len(str(choice.get("name") or "")) <= 100:
            errors.too_long([*path, c, "name"], 100)
        value = choice.get("value")
        if isinstance(value, str) and len(value) > 100:
            errors.too_long([*path, c, "value"], 100)
    for key, low in (("min_length", 0), ("max_length", 1)):
        value = option.get(key)
        if value is not None and not low <= int(value) <= 6000:
            errors.add([*path[:-1], key], "NUMBER_TYPE_MAX", "int value should be <= 6000.")


def _size(node: JSON) -> int:
    """Characters counted towards the 8,000: name, description and value, each at its longest
    localization, through options and choices."""
    total = 0
    for key in ("name", "description", "value"):
        if key in node and node[key] is not None:
            texts = [str(node[key]), *map(str, (node.get(f"{key}_localizations") or {}).values())]
            total += max(len(t) for t in texts)
    for child in [*(node.get("options") or []), *(node.get("choices") or [])]:
        total += _size(child)
    return total
