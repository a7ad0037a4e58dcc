"""``llm.*``: every rendered prompt and every attempt's response."""

from __future__ import annotations

import hashlib

import polars as pl

from .envelope import Event


class LlmPromptV1(Event, frozen=True, tag="llm.prompt"):
    doc_id: str
    logical_key_id: str
    stage: str
    template_id: str
    template_sha256: str
    prompt_sha256: str
    prompt: str
    model_id: str
    parent_doc_id: str | None = None
    params_json: str = "{}"


class LlmPrompt(Event, frozen=True, tag="llm.prompt"):
    """v2 added the run, the cohort and the source project's task id (gen_id)."""

    VERSION = 2

    doc_id: str
    logical_key_id: str
    stage: str
    template_id: str
    template_sha256: str
    prompt_sha256: str
    prompt: str
    model_id: str
    parent_doc_id: str | None = None
    #: JSON object of the render parameters.
    params_json: str = "{}"
    run_id: str | None = None
    cohort_id: str | None = None
    task_id: str | None = None


def upcast_prompt_v1_to_v2(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in ("run_id", "cohort_id", "task_id"))


class LlmResponseV1(Event, frozen=True, tag="llm.response"):
    doc_id: str
    attempt: int
    status: str
    text: str | None = None
    finish_reason: str | None = None
    usage_json: str | None = None
    latency_ms: float | None = None
    http_status: int | None = None
    provider_request_id: str | None = None
    error: str | None = None
    supersedes_doc_id: str | None = None


class LlmResponse(Event, frozen=True, tag="llm.response"):
    """v2 added ``text_sha256`` (of the UTF-8 text), so tables never re-hash every response."""

    VERSION = 2

    doc_id: str
    attempt: int
    status: str
    text: str | None = None
    finish_reason: str | None = None
    #: The provider's whole usage object, verbatim JSON.
    usage_json: str | None = None
    latency_ms: float | None = None
    http_status: int | None = None
    provider_request_id: str | None = None
    error: str | None = None
    supersedes_doc_id: str | None = None
    text_sha256: str | None = None


def sha256_column(column: str) -> pl.Expr:
    """sha256 of a text column, for upcasting events recorded before the hash was."""
    return pl.col(column).map_elements(lambda t: hashlib.sha256(t.encode()).hexdigest(), return_dtype=pl.String)


def upcast_response_v1_to_v2(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(sha256_column("text").alias("text_sha256"))
