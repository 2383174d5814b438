"""REST routes for identity, gateway discovery, application commands, guilds, members and DMs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from . import payloads
from .bits import Permission
from .models import CommandSync
from .permissions import base_permissions, can_moderate
from .rest_app import ApiError, Backend, json_response, missing_access, missing_permissions, unknown
from .validation import enforce
from .validation_commands import validate_commands

JSON = dict[str, Any]
MAX_TIMEOUT = timedelta(days=28)


class CoreRoutes:
    """Login, application info, gateway URLs, command sync, guild and member reads, timeouts."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.world = backend.world

    def routes(self) -> list[web.RouteDef]:
        commands = "/api/v10/applications/{app}/commands"
        guild_commands = "/api/v10/applications/{app}/guilds/{guild}/commands"
        return [
            web.get("/api/v10/users/@me", self.get_me),
            web.get("/api/v10/users/{user}", self.get_user),
            web.post("/api/v10/users/@me/channels", self.create_dm),
            web.get("/api/v10/oauth2/applications/@me", self.get_application),
            web.get("/api/v10/applications/@me", self.get_application),
            web.get("/api/v10/gateway", self.get_gateway),
            web.get("/api/v10/gateway/bot", self.get_gateway_bot),
            web.get(commands, self.get_commands),
            web.put(commands, self.put_commands),
            web.get(guild_commands, self.get_commands),
            web.put(guild_commands, self.put_commands),
            web.get("/api/v10/guilds/{guild}", self.get_guild),
            web.get("/api/v10/guilds/{guild}/channels", self.get_guild_channels),
            web.get("/api/v10/guilds/{guild}/roles", self.get_roles),
            web.get("/api/v10/guilds/{guild}/members/{user}", self.get_member),
            web.patch("/api/v10/guilds/{guild}/members/{user}", self.patch_member),
        ]

    async def get_me(self, request: web.Request) -> web.Response:
        me = payloads.user_payload(self.world.bot_user)
        return json_response(
            me
            | {"verified": True, "mfa_enabled": False, "locale": "en-US", "email": None, "bio": ""}
        )

    async def get_user(self, request: web.Request) -> web.Response:
        user = self.world.users.get(self.b.snowflake(request, "user"))
        if user is None:
            raise unknown("User")
        return json_response(payloads.user_payload(user))

    async def create_dm(self, request: web.Request) -> web.Response:
        recipient = self.world.users.get(int(self.b.body(request).get("recipient_id", 0)))
        if recipient is None:
            raise unknown("User")
        return json_response(payloads.channel_payload(self.world, self.world.dm_channel(recipient)))

    async def get_application(self, request: web.Request) -> web.Response:
        world = self.world
        return json_response(
            {
                "id": str(world.application_id),
                "name": world.app_name,
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": payloads.user_payload(world.app_owner),
                "team": None,
                "verify_key": "0" * 64,
                "flags": self.b.gateway.application_flags(),
                "summary": "",
                "tags": [],
                "bot": payloads.user_payload(world.bot_user),
                "interactions_endpoint_url": None,
                "approximate_guild_count": len(world.guilds),
                "redirect_uris": [],
                "install_params": None,
                "integration_types_config": {"0": {}},
            }
        )

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.b.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        # Shape: docs gateway.mdx "Get Gateway Bot" (url, shards, session_start_limit object).
        gateway = self.b.gateway
        limit = {
            "total": 1000,
            "remaining": 1000 - gateway.identifies,
            "reset_after": 86_400_000,
            "max_concurrency": gateway.max_concurrency,
        }
        shards = gateway.shard_count
        return json_response(
            {"url": self.b.gateway_url, "shards": shards, "session_start_limit": limit}
        )

    async def get_commands(self, request: web.Request) -> web.Response:
        return json_response(self.world.commands.get(self._scope(request), []))

    async def put_commands(self, request: web.Request) -> web.Response:
        """Bulk overwrite: ids are kept for unchanged (name, type) pairs, as Discord does."""
        scope = self._scope(request)
        body = self.b.raw_body(request)
        enforce(self.b.refusals, request.path, validate_commands(body))
        previous = {(c["name"], c.get("type", 1)): c for c in self.world.commands.get(scope, [])}
        stored: list[JSON] = []
        for command in body:
            old = previous.get((command["name"], command.get("type", 1)))
            stored.append(self._command(command, scope, old))
        self.world.commands[scope] = stored
        self.world.command_syncs.append(CommandSync(scope, [dict(c) for c in body]))
        return json_response(stored)

    def _command(self, command: JSON, scope: int | None, old: JSON | None) -> JSON:
        world = self.world
        result: JSON = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            "contexts": None,
            "integration_types": [0],
            "name_localizations": None,
            "description_localizations": None,
            **command,
            "id": old["id"] if old else str(world.snowflakes.next()),
            "application_id": str(world.application_id),
            "version": str(world.snowflakes.next()),
        }
        if scope is not None:
            result["guild_id"] = str(scope)
        return result

    def _scope(self, request: web.Request) -> int | None:
        if self.b.snowflake(request, "app") != self.world.application_id:
            raise ApiError(
                403, 20012, "You are not authorized to perform this action on this application"
            )
        if "guild" in request.match_info:
            guild_id = self.b.snowflake(request, "guild")
            if guild_id not in self.world.guilds:
                raise missing_access()
            return guild_id
        return None

    async def get_guild(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        data = payloads.guild_payload(self.world, guild)
        if request.query.get("with_counts") in ("true", "1"):
            data.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return json_response(data)

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        channels = [c for c in guild.channels.values() if not c.is_thread]
        return json_response([payloads.channel_payload(self.world, c) for c in channels])

    async def get_roles(self, request: web.Request) -> web.Response:
        return json_response(
            [payloads.role_payload(r) for r in self._guild(request).roles.values()]
        )

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        member = guild.members.get(self.b.snowflake(request, "user"))
        if member is None:
            raise unknown("Member")
        return json_response(payloads.member_payload(member))

    async def patch_member(self, request: web.Request) -> web.Response:
        """Only timeouts (``communication_disabled_until``) and nicknames are modelled."""
        guild = self._guild(request)
        member = guild.members.get(self.b.snowflake(request, "user"))
        if member is None:
            raise unknown("Member")
        body = self.b.body(request)
        bot = self.world.bot_member(guild)
        if "communication_disabled_until" in body:
            allowed = base_permissions(guild, bot) & Permission.MODERATE_MEMBERS
            if not allowed or not can_moderate(guild, bot, member):
                raise missing_permissions()
            raw = body["communication_disabled_until"]
            until = None if raw is None else datetime.fromisoformat(raw)
            if until is not None and until - datetime.now(UTC) > MAX_TIMEOUT:
                errors = {
                    "communication_disabled_until": {
                        "_errors": [
                            {
                                "code": "BASE_TYPE_BAD_TIME",
                                "message": "Timeouts cannot exceed 28 days.",
                            }
                        ]
                    }
                }
                raise ApiError(400, 50035, "Invalid Form Body", errors)
            member.communication_disabled_until = until
        if "nick" in body:
            if not base_permissions(guild, bot) & Permission.MANAGE_NICKNAMES or not can_moderate(
                guild, bot, member
            ):
                raise missing_permissions()
            member.nick = body["nick"]
        self.world.update_member(member)
        return json_response(payloads.member_payload(member))

    def _guild(self, request: web.Request) -> Any:
        guild = self.world.guilds.get(self.b.snowflake(request, "guild"))
        if guild is None:
            raise unknown("Guild")
        return guild
