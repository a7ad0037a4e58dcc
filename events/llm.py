"""``llm.*``: every rendered prompt and every attempt's response."""

from __future__ import annotations

import hashlib
import json

import polars as pl

from .envelope import Event


#: The parameters and usage fields tables read, typed (v3 records them; upcasting decodes older JSON).
PARAMS = pl.Struct({"combo_id": pl.String, "provider": pl.String, "max_tokens": pl.Int64})
USAGE = pl.Struct({"prompt_tokens": pl.Int64, "completion_tokens": pl.Int64, "cost": pl.Float64})


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


class LlmPromptV2(Event, frozen=True, tag="llm.prompt"):
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


class LlmPrompt(Event, frozen=True, tag="llm.prompt"):
    """v3 added the render parameters every table reads as typed fields; ``params_json``
    still holds all of them. Build one with :meth:`with_params`."""

    VERSION = 3

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
    combo_id: str | None = None
    provider: str | None = None
    max_tokens: int | None = None

    @classmethod
    def with_params(cls, params: dict, **fields: object) -> LlmPrompt:
        """The event for ``params``: all of them as JSON, the ones tables read typed."""
        return cls(params_json=json.dumps(params, sort_keys=True), **typed_fields(params, PARAMS), **fields)


def upcast_prompt_v1_to_v2(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in ("run_id", "cohort_id", "task_id"))


def upcast_prompt_v2_to_v3(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(typed_columns("params_json", PARAMS))


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


class LlmResponseV2(Event, frozen=True, tag="llm.response"):
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


class LlmResponse(Event, frozen=True, tag="llm.response"):
    """v3 added the token counts and cost as typed fields (``usage_json`` keeps the
    provider's whole object). Pass ``**usage_fields(usage_json)``."""

    VERSION = 3

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
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None


def sha256_column(column: str) -> pl.Expr:
    """sha256 of a text column, for upcasting events recorded before the hash was."""
    return pl.col(column).map_elements(lambda t: hashlib.sha256(t.encode()).hexdigest(), return_dtype=pl.String)


def upcast_response_v1_to_v2(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(sha256_column("text").alias("text_sha256"))


def upcast_response_v2_to_v3(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(typed_columns("usage_json", USAGE))


def typed_columns(json_column: str, schema: pl.Struct) -> list[pl.Expr]:
    """The schema's fields read out of a JSON text column. A value that is missing, of
    another type, or in text that is not JSON reads as null: one odd event must not
    stop every table from building."""
    return [pl.col(json_column).str.json_path_match(f"$.{f.name}").cast(f.dtype, strict=False).alias(f.name)
            for f in schema.fields]


def usage_fields(usage_json: str | None) -> dict[str, object]:
    """The typed usage fields of a response, read from the provider's usage JSON."""
    try:
        usage = json.loads(usage_json) if usage_json else None
    except ValueError:
        usage = None
    return typed_fields(usage if isinstance(usage, dict) else {}, USAGE)


def typed_fields(source: dict, schema: pl.Struct) -> dict[str, object]:
    """The values of ``source`` the schema names, read as :func:`typed_columns` reads
    them from events recorded before v3 (so both give a table the same values)."""
    return {f.name: _typed(source.get(f.name), f.dtype) for f in schema.fields}


def _typed(value: object, dtype: pl.DataType) -> object:
    if value is None:
        return None
    if dtype == pl.String:  # JSON path matching gives a non-string value as its JSON text
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return None
    if isinstance(value, str):  # a number given as JSON text ("64") counts, as a cast of the text does
        try:
            value = (int if dtype == pl.Int64 else float)(value)
        except ValueError:
            return None
    if dtype == pl.Int64:
        return value if isinstance(value, int) and -(2**63) <= value < 2**63 else None
    return float(value) if isinstance(value, (int, float)) else None
