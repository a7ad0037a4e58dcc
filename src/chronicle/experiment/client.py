"""Chat-completion calls: one attempt in, one :class:`Attempt` out, never an exception.

Every way a call can go wrong becomes an ``Attempt`` with status ``gen_error``
(or ``truncated`` for ``finish_reason: length``), the HTTP status, the error
body and whether a retry may help. The API key travels only in the
Authorization header; anything recorded from a response is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import time
from typing import TYPE_CHECKING

import aiohttp
import msgspec

from chronicle.experiment.scrubbing import Scrubber

if TYPE_CHECKING:  # the registry opens clients; a client only reads its provider's settings
    from chronicle.experiment.providers import Provider

_ERROR_BODY_CHARS = 4000
_JSON = msgspec.json.Encoder()


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # "ok" | "truncated" | "gen_error"
    text: str | None = None
    finish_reason: str | None = None
    usage_json: str | None = None
    latency_ms: float | None = None
    http_status: int | None = None
    provider_request_id: str | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait, from delta-seconds or an HTTP date; None for anything else ("soon")."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = when.timestamp() - time.time() if when.tzinfo else None
    if seconds is None or seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _content_text(content: object) -> str | None:
    """The reply's text: a string, or the text parts of a list of content parts; None otherwise."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        if texts and all(isinstance(t, str) for t in texts):
            return "".join(texts)  # type: ignore[arg-type]
    return None


def _as_text(value: object) -> str | None:
    """A header-like value as text (a provider may send an id or a reason as a number)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class OpenAIClient:
    """POST {base_url}/chat/completions over one shared aiohttp session."""

    def __init__(self, provider: Provider, session: aiohttp.ClientSession, base_url: str | None = None):
        self.provider = provider
        self.session = session
        self.url = (base_url or provider.base_url or "").rstrip("/") + "/chat/completions"
        self._key = provider.api_key()
        self._scrubber = Scrubber(self._key)
        self._headers = {"Content-Type": "application/json"}
        if self._key:
            self._headers["Authorization"] = f"Bearer {self._key}"
        self._timeout = aiohttp.ClientTimeout(total=provider.timeout_seconds)

    def _scrub(self, text: str) -> str:
        return self._scrubber.text(text)

    def _fail(self, started: float, error: str, *, http_status: int | None = None, retryable: bool,
              retry_after: float | None = None, request_id: str | None = None) -> Attempt:
        return Attempt(status="gen_error", error=self._scrub(error)[:_ERROR_BODY_CHARS], http_status=http_status,
                       latency_ms=(time.monotonic() - started) * 1000, retryable=retryable,
                       retry_after=retry_after, provider_request_id=self._request_id(request_id))

    def _request_id(self, value: object) -> str | None:
        text = _as_text(value)
        return None if text is None else self._scrub(text)[:200]

    async def complete(self, model: str, prompt: str) -> Attempt:
        body: dict = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        if self.provider.max_tokens is not None:
            body["max_tokens"] = self.provider.max_tokens
        if self.provider.temperature is not None:
            body["temperature"] = self.provider.temperature
        started = time.monotonic()
        try:
            async with self.session.post(self.url, data=_JSON.encode(body), headers=self._headers,
                                         timeout=self._timeout) as resp:
                raw = await resp.read()
                status = resp.status
                request_id = resp.headers.get("x-request-id") or resp.headers.get("openai-request-id")
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            return self._fail(started, f"timeout after {self.provider.timeout_seconds:g}s", retryable=True)
        except aiohttp.ClientError as exc:
            return self._fail(started, f"{type(exc).__name__}: {exc}", retryable=True)
        if status != 200:
            return self._fail(started, f"HTTP {status}: {_text(raw)}", http_status=status,
                              request_id=request_id, retryable=status == 429 or status >= 500 or status == 408,
                              retry_after=retry_after)
        return self._from_body(started, raw, request_id)

    def _from_body(self, started: float, raw: bytes, request_id: str | None) -> Attempt:
        try:
            data = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            return self._fail(started, f"HTTP 200 body is not JSON ({exc}): {_text(raw)}", http_status=200,
                              retryable=True, request_id=request_id)
        if not isinstance(data, dict):
            return self._fail(started, f"HTTP 200 body is not an object: {_text(raw)}", http_status=200, retryable=True)
        request_id = request_id or data.get("id")
        if data.get("error"):
            return self._fail(started, f"HTTP 200 with an error body: {json.dumps(data['error'], default=str)}",
                              http_status=200, retryable=True, request_id=request_id)
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return self._fail(started, f"HTTP 200 without choices[0].message.content: {_text(raw)}", http_status=200,
                              retryable=True, request_id=request_id)
        text = _content_text(content)
        if text is None:
            return self._fail(started, f"HTTP 200 with content of an unexpected shape "
                                       f"({type(content).__name__}): {_text(raw)}",
                              http_status=200, retryable=True, request_id=request_id)
        finish = _as_text(choice.get("finish_reason")) if isinstance(choice, dict) else None
        usage = data.get("usage")
        return Attempt(
            status="truncated" if finish == "length" else "ok",
            text=self._scrub(text), finish_reason=None if finish is None else self._scrub(finish)[:200],
            usage_json=self._scrub(json.dumps(usage, sort_keys=True, default=str)) if usage is not None else None,
            latency_ms=(time.monotonic() - started) * 1000, http_status=200,
            provider_request_id=self._request_id(request_id),
            error="finish_reason: length (truncated)" if finish == "length" else None,
        )


class EchoClient:
    """Deterministic, offline: the reply is made from the prompt's hash and its first words.

    It ends with a ``SCORE:`` line and wraps an ``<essay>`` block, so every
    stage's parsers have something real to read.
    """

    def __init__(self, provider: Provider):
        self.provider = provider

    async def complete(self, model: str, prompt: str) -> Attempt:
        digest = hashlib.sha256(f"{model}\0{prompt}".encode()).hexdigest()
        words = " ".join(prompt.split()[:40])
        text = (f"echo {digest[:12]} from {model}\n<essay>\nAn echo of the prompt: {words}\n</essay>\n"
                f"SCORE: {int(digest[:8], 16) % 10}\n")
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4,
                 "total_tokens": (len(prompt) + len(text)) // 4, "cost": 0.0}
        return Attempt(status="ok", text=text, finish_reason="stop", usage_json=json.dumps(usage, sort_keys=True),
                       latency_ms=0.0, provider_request_id=f"echo-{digest[:16]}")
