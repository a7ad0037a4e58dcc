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
from dataclasses import dataclass, replace

from chronicle.workspace import ConfigError

BUILTIN = ("echo", "local")


@dataclass(frozen=True)
class Provider:
    name: str
    kind: str  # "openai" | "echo" | "local"
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


_FIELDS = {"base_url": str, "api_key_env": str, "requests_per_minute": (int, float), "concurrency": int,
           "timeout_seconds": (int, float), "max_tokens": int, "temperature": (int, float), "max_attempts": int,
           "backoff_seconds": (int, float), "max_retry_after_seconds": (int, float)}


def configured(config: dict) -> dict[str, Provider]:
    found = {
        "echo": Provider("echo", "echo", concurrency=64, max_attempts=1),
        "local": Provider("local", "local", concurrency=2, timeout_seconds=300, max_tokens=256, temperature=0.7,
                          max_attempts=2),
    }
    table = config.get("providers", {})
    if not isinstance(table, dict):
        raise ConfigError("chronicle.toml: [providers] must be a table of provider tables")
    for name, opts in table.items():
        if not isinstance(opts, dict):
            raise ConfigError(f"chronicle.toml: [providers.{name}] must be a table")
        for key, value in opts.items():
            if key not in _FIELDS:
                raise ConfigError(f"chronicle.toml: [providers.{name}] unknown key {key!r} "
                                  f"(known: {', '.join(sorted(_FIELDS))})")
            if not isinstance(value, _FIELDS[key]) or isinstance(value, bool):
                raise ConfigError(f"chronicle.toml: [providers.{name}] {key} has the wrong type ({value!r})")
        base = found.get(name, Provider(name, "openai"))
        p = replace(base, **opts)
        if p.kind == "openai" and not p.base_url:
            raise ConfigError(f"chronicle.toml: [providers.{name}] needs base_url")
        found[name] = p
    return found


def get(config: dict, name: str) -> Provider:
    providers = configured(config)
    if name not in providers:
        raise ConfigError(f"unknown provider {name!r}; configured: {', '.join(sorted(providers))} "
                          "(add [providers.NAME] to chronicle.toml)")
    return providers[name]
