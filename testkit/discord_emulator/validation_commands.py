"""Discord's rules for registering application commands (PUT …/commands): 400 code 50035.

Sources as in ``validation.py``: the OpenAPI spec's ApplicationCommandCreateRequest and its
Application*Option* schemas, and docs: interactions/application-commands.mdx.
"""

from __future__ import annotations

import re
from typing import Any

from .validation import JSON, FormErrors

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
