"""``llm.*``: every rendered prompt and every attempt's response."""

from __future__ import annotations

from .envelope import Event


class LlmPrompt(Event, frozen=True, tag="llm.prompt"):
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


class LlmResponse(Event, frozen=True, tag="llm.response"):
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
