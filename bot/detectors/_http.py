"""One HTTP request to a detection service: timeouts, retries, and errors from `bot.errors`.

Both provider clients go through `ProviderHTTP.request`. It retries only what is safe to
retry (connection failures, timeouts and HTTP 408/409/429/5xx, honouring `Retry-After`,
capped exponential backoff with full jitter) and turns every final failure into the one
exception tree. Uploads are streamed from disk and never retried once the service may have
received them: neither service offers an idempotency key, so a retried upload could create
(and bill) a second job.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

import aiohttp
import aiohttp.payload
from pydantic import BaseModel, ValidationError

from bot import metrics
from bot.detectors._base import RetryPolicy
from bot.detectors._upload import FilePart, multipart_body
from bot.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderOutOfCredits,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from bot.verdict import ProviderName

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

DISPLAY_NAMES = {
    ProviderName.BEHAVIORAL_SIGNALS: "Behavioral Signals",
    ProviderName.RESEMBLE: "Resemble",
}

#: Statuses worth another try of an idempotent request (openai-python's list).
RETRYABLE_STATUSES = frozenset({408, 409, 429})
#: Statuses that prove the service refused the request before doing anything with it, so even
#: an upload can be sent again without risking a duplicate job.
REFUSED_STATUSES = frozenset({429, 503})
REJECTED_STATUSES = frozenset({400, 413, 415, 422})

_MAX_MESSAGE = 300
_REDACTED = "[redacted]"


@dataclass(slots=True)
class _Failure:
    """Why one attempt failed, kept until we know whether it was the last."""

    reason: str
    status: int | None = None
    provider_message: str | None = None
    retry_after: float | None = None
    exc: BaseException | None = None
    timed_out: bool = False


class ProviderHTTP:
    """Sends requests to one provider over the shared session, with its auth headers."""

    def __init__(
        self,
        http_session: aiohttp.ClientSession,
        *,
        provider: ProviderName,
        headers: Mapping[str, str],
        retry: RetryPolicy,
        request_timeout_s: float,
        secrets: Iterable[str] = (),
    ) -> None:
        self._session = http_session
        self.provider = provider
        self.name = DISPLAY_NAMES[provider]
        self._headers = dict(headers)
        self._retry = retry
        self.request_timeout_s = request_timeout_s
        self._secrets = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        """`text` with every secret this client knows replaced, for messages and logs."""
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    async def request(
        self,
        method: str,
        url: str,
        model: type[M],
        *,
        what: str,
        retry_safe: bool,
        fields: Mapping[str, str] | None = None,
        file: FilePart | None = None,
        headers: Mapping[str, str] | None = None,
        client_timeout: aiohttp.ClientTimeout | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> M:
        """Send one request (retrying what is safe) and validate the JSON answer as `model`.

        `what` names the request in messages ("upload", "job status"). With
        `retry_safe=False` (uploads) the request is sent again only when the connection
        failed before anything was sent, or when the service answered 429/503.
        """
        attempts = max(1, self._retry.attempts)
        request_headers = {**self._headers, **(headers or {})}
        encoded = None
        if json_body is not None:
            encoded = json.dumps(json_body).encode()
            request_headers["Content-Type"] = "application/json"
        timeout = client_timeout or aiohttp.ClientTimeout(total=self.request_timeout_s)
        failure = _Failure(reason="not attempted")
        for attempt in range(1, attempts + 1):
            retryable = False
            began = time.perf_counter()
            try:
                async with (
                    multipart_body(fields, file) as data,
                    self._session.request(
                        method,
                        url,
                        headers=request_headers,
                        data=data if encoded is None else encoded,
                        timeout=timeout,
                        # A redirect would carry the auth header (X-Auth-Token is not one
                        # aiohttp strips) to another host; neither service redirects.
                        allow_redirects=False,
                    ) as response,
                ):
                    body = await response.read()
                    status = response.status
                    retry_after_header = response.headers.get("Retry-After")
            except aiohttp.ClientSSLError as exc:
                # A certificate problem does not go away by asking again.
                failure = _Failure(reason=f"TLS error: {exc}", exc=exc)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # The connection was never made, so nothing reached the service.
                failure = _Failure(reason=f"connection failed: {exc}", exc=exc)
                retryable = True
            except TimeoutError as exc:
                failure = _Failure(reason="no answer in time", exc=exc, timed_out=True)
                retryable = retry_safe
            except aiohttp.ClientError as exc:
                failure = _Failure(reason=f"connection lost: {type(exc).__name__}", exc=exc)
                retryable = retry_safe
            else:
                metrics.provider_attempt(self.provider, what, status, began)
                if 200 <= status < 300:
                    return self._parse(body, model, what=what, status=status)
                failure = _Failure(
                    reason=f"HTTP {status}",
                    status=status,
                    provider_message=provider_message(body),
                    retry_after=parse_retry_after(retry_after_header),
                )
                if retry_safe:
                    retryable = status in RETRYABLE_STATUSES or status >= 500
                else:
                    retryable = status in REFUSED_STATUSES

            if failure.status is None:
                metrics.provider_attempt(self.provider, what, None, began)
            if not retryable or attempt == attempts:
                break
            if failure.retry_after is not None and failure.retry_after > self._retry.max_delay_s:
                # Waiting that long inside one scan would stall it; report it instead so the
                # caller can say when to try again.
                break
            delay = self._delay(attempt, failure.retry_after)
            log.warning(
                "%s %s failed (%s); retry %d of %d in %.2f s",
                self.name,
                what,
                self.redact(failure.reason),
                attempt,
                attempts - 1,
                delay,
            )
            await asyncio.sleep(delay)
        error = self._error(failure, what=what, attempts=attempt, upload=file is not None)
        raise error from failure.exc

    def upload_timeout(self) -> aiohttp.ClientTimeout:
        """Timeouts for an upload: its length depends on the file, the silence after it not."""
        return aiohttp.ClientTimeout(
            # A backstop only: an upload legitimately takes as long as the uplink needs.
            total=self.request_timeout_s * 10,
            sock_connect=self.request_timeout_s,
            # Bounds the wait for the answer once the file is sent.
            sock_read=self.request_timeout_s,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        # Full jitter: spreads clients that failed together instead of retrying in step.
        cap = min(self._retry.max_delay_s, self._retry.base_delay_s * 2 ** (attempt - 1))
        return random.uniform(0.0, cap)

    def _parse(self, body: bytes, model: type[M], *, what: str, status: int) -> M:
        try:
            data = json.loads(body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise ProviderProtocolError(
                self.provider,
                f"{self.name} answered the {what} with something that is not JSON "
                f"(HTTP {status}, {len(body)} bytes).",
                status=status,
            ) from exc
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ProviderProtocolError(
                self.provider,
                f"{self.name} answered the {what} in an unexpected shape: {describe(exc)}.",
                status=status,
            ) from exc

    def _error(self, failure: _Failure, *, what: str, attempts: int, upload: bool) -> ProviderError:
        name, status = self.name, failure.status
        said = f": {self.redact(failure.provider_message)}" if failure.provider_message else ""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if status is None:
            reason = self.redact(failure.reason)
            if failure.timed_out:
                return ProviderTimeout(
                    self.provider, f"{name} did not answer the {what}{tries} ({reason})."
                )
            return ProviderUnavailable(self.provider, f"Could not reach {name}{tries}: {reason}.")
        if status in (401, 403):
            return ProviderAuthError(
                self.provider,
                f"{name} refused the API key (HTTP {status} on the {what}){said}",
                status=status,
            )
        if status == 402:
            return ProviderOutOfCredits(
                self.provider,
                f"{name} says the account is out of credits (HTTP 402 on the {what}){said}",
                status=status,
            )
        if status == 404:
            # On an upload a 404 means a wrong API URL (or project id), not a lost job.
            subject = "the upload address (check the API URL)" if upload else "this job"
            return ProviderNotFound(
                self.provider, f"{name} does not know {subject} (HTTP 404){said}", status=status
            )
        if status in REJECTED_STATUSES:
            return ProviderRejected(
                self.provider, f"{name} rejected the {what} (HTTP {status}){said}", status=status
            )
        if status == 429:
            wait = (
                f"; retry after {failure.retry_after:.0f} s"
                if failure.retry_after is not None
                else ""
            )
            return ProviderRateLimited(
                self.provider,
                f"{name} is rate limiting requests (HTTP 429 on the {what}{tries}){wait}{said}",
                retry_after=failure.retry_after,
            )
        if status >= 500 or status in RETRYABLE_STATUSES:
            return ProviderUnavailable(
                self.provider,
                f"{name} is unavailable (HTTP {status} on the {what}{tries}){said}",
                status=status,
            )
        return ProviderProtocolError(
            self.provider,
            f"{name} answered the {what} with an undocumented HTTP {status}{said}",
            status=status,
        )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def provider_message(body: bytes) -> str | None:
    """The provider's own explanation in an error body (`message`, `error`, `errors`)."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        text = " ".join(body.decode("utf-8", "replace").split())
        # An HTML error page from a proxy says nothing useful in one line.
        if not text or text.startswith("<"):
            return None
        return _clip(text)
    if not isinstance(data, dict):
        return None
    parts: list[str] = []
    for key in ("message", "error", "errors"):
        parts.extend(_texts(data.get(key)))
    unique = list(dict.fromkeys(p.strip() for p in parts if p and p.strip()))
    return _clip("; ".join(unique)) if unique else None


def _texts(value: Any, prefix: str = "") -> list[str]:
    """Flatten `message`/`error`/`errors` values: strings, lists, {field: [messages]}."""
    if isinstance(value, str):
        return [f"{prefix}{value}"]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item, prefix)]
    if isinstance(value, dict):
        if isinstance(value.get("message"), str):
            return [f"{prefix}{value['message']}"]
        return [text for key, item in value.items() for text in _texts(item, f"{key}: ")]
    return []


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def describe(exc: ValidationError) -> str:
    """A short account of a validation error: where and what, never the offending values."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def first_line(text: str | None) -> str:
    """The first non-empty line of a provider's failure text (it may append a long log)."""
    for line in (text or "").splitlines():
        if line.strip():
            return _clip(line.strip())
    return ""
