"""One decorator per role that sets both Discord's default permissions and a runtime check.

`default_permissions` is only a hint that server admins can override; the check is what
actually refuses a member without the permission.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import discord
from discord import app_commands

T = TypeVar("T")


def require(**perms: bool) -> Callable[[T], T]:
    """Require these guild permissions, both as the default and at run time."""

    def decorator(func: T) -> T:
        func = app_commands.default_permissions(**perms)(func)
        return app_commands.checks.has_permissions(**perms)(func)

    return decorator


def missing(interaction: discord.Interaction[Any], **perms: bool) -> list[str]:
    """The permissions (by name) the interacting member lacks in this channel."""
    have = interaction.permissions
    return [name for name, wanted in perms.items() if wanted and not getattr(have, name)]


def check_member(interaction: discord.Interaction[Any], **perms: bool) -> None:
    """Raise `MissingPermissions` unless the member has every permission (guild only)."""
    if interaction.guild is None:
        raise app_commands.NoPrivateMessage()
    lacking = missing(interaction, **perms)
    if lacking:
        raise app_commands.MissingPermissions(lacking)
