"""LLM providers: where calls go and how hard to push.

Configured in ``chronicle.toml``::

    [providers.openrouter]
    base_url = "https://openrouter.ai/api/v1"   # OpenAI-compatible
    api_key_env = "OPENROUTER_API_KEY"          # the NAME of the variable; the key stays in the environment
    requests_per_minute = 60
    concurrency = 8
    timeout_seconds = 120
    max_tokens = 4096
    temperature = 0.7
    max_attempts = 4                            # per logical key per run, retries included

Two offline providers are built in and named as what they are: ``echo``
(deterministic text made from the prompt, no network; for demos and tests)
and ``local`` (a llama.cpp server with Gemma 3 270M, started on a free
loopback port for the run; needs the ``local`` extra).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Protocol

import msgspec

from chronicle.config import Config, ConfigError

if TYPE_CHECKING:
    from chronicle.experiment.client import Attempt


class Client(Protocol):
    """What the runner calls: one completion, never raising (a failure is an Attempt with an error)."""

    async def complete(self, model: str, prompt: str) -> Attempt: ...


#: How a kind of provider opens its client for one run: ``(provider, concurrency)`` to an
#: async context manager yielding a :class:`Client`. One registry for every kind.
Opener = Callable[["Provider", int], AbstractAsyncContextManager[Client]]
KINDS: dict[str, Opener] = {}


def register_kind(name: str) -> Callable[[Opener], Opener]:
    """Register a kind of provider (``kind = "NAME"`` in ``[providers.X]``)."""
    def add(opener: Opener) -> Opener:
        if name in KINDS:
            raise ValueError(f"provider kind {name!r} is registered twice")
        KINDS[name] = opener
        return opener
    return add


@register_kind("echo")
@asynccontextmanager
async def _echo(provider: Provider, concurrency: int) -> AsyncIterator[Client]:
    from chronicle.experiment.client import EchoClient  # HTTP clients only when a run calls out

    yield EchoClient(provider)


@register_kind("openai")
@asynccontextmanager
async def _openai(provider: Provider, concurrency: int, base_url: str | None = None) -> AsyncIterator[Client]:
    import aiohttp

    from chronicle.experiment.client import OpenAIClient

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield OpenAIClient(provider, session, base_url=base_url)


@register_kind("local")
@asynccontextmanager
async def _local(provider: Provider, concurrency: int) -> AsyncIterator[Client]:
    from chronicle.experiment.local_server import LocalServer

    async with LocalServer() as base_url, _openai(provider, concurrency, base_url) as client:
        yield client


def open_client(provider: Provider, concurrency: int) -> AbstractAsyncContextManager[Client]:
    return KINDS[provider.kind](provider, concurrency)


@dataclass(frozen=True)
class Provider:
    name: str
    kind: str  # a key of KINDS
    base_url: str | None = None
    api_key_env: str | None = None
    requests_per_minute: float | None = None
    concurrency: int = 8
    timeout_seconds: float = 120.0
    max_tokens: int | None = None
    temperature: float | None = None
    max_attempts: int = 4
    backoff_seconds: float = 0.5
    #: A server's Retry-After longer than this is cut to it (with a log line).
    max_retry_after_seconds: float = 600.0

    def api_key(self) -> str | None:
        """Read at call time, from the environment only; never stored on an event or printed."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"provider {self.name}: environment variable {self.api_key_env} is not set")
        return key

    def public_options(self) -> dict:
        """What may be recorded about the provider (never the key itself)."""
        return {"provider": self.name, "kind": self.kind, "base_url": self.base_url, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "timeout_seconds": self.timeout_seconds}


BUILTIN = {
    "echo": Provider("echo", "echo", concurrency=64, max_attempts=1),
    "local": Provider("local", "local", concurrency=2, timeout_seconds=300, max_tokens=256, temperature=0.7,
                      max_attempts=2),
}


def configured(config: Config) -> dict[str, Provider]:
    """The built-in providers and the workspace's ``[providers.NAME]`` (which may retune a built-in)."""
    found = dict(BUILTIN)
    names = {f.name for f in fields(Provider)}
    for name, table in config.providers.items():
        given = {k: v for k, v in msgspec.structs.asdict(table).items() if v is not None and k in names}
        p = replace(found.get(name, Provider(name, "openai")), **given)
        if p.kind not in KINDS:
            raise ConfigError(f"chronicle.toml: [providers.{name}] kind {p.kind!r} is not one of "
                              f"{', '.join(sorted(KINDS))}")
        if p.kind == "openai" and not p.base_url:
            raise ConfigError(f"chronicle.toml: [providers.{name}] needs base_url")
        found[name] = p
    return found


def get(config: Config, name: str) -> Provider:
    providers = configured(config)
    if name not in providers:
        raise ConfigError(f"unknown provider {name!r}; configured: {', '.join(sorted(providers))} "
                          "(add [providers.NAME] to chronicle.toml)")
    return providers[name]
