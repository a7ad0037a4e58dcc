"""`chronicle run`: carry a cohort's membership through draft -> essay -> evaluation.

For each logical key the runner records ``llm.prompt`` (durable before the
call is made), calls the model, then records ``llm.response`` and, for an ok
response, its ``parse.result`` in the same batch. Every attempt is its own
``doc_id`` and names the attempt it supersedes.

Resume comes from the log, not from a state file: a key with an ok response
is done and is never sent again; a key whose last prompt has no response (the
process died in flight) re-sends that same attempt; a key whose last attempt
failed is left alone unless ``--retry-errors`` (which then does only those).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import polars as pl

from chronicle.events import LlmPrompt, LlmResponse, ParseResult, RunFinished, RunStarted
from chronicle.events.llm import usage_fields
from chronicle.experiment import ids, parsers
from chronicle.experiment.client import Attempt
from chronicle.experiment.cohorts import Member, Plan
from chronicle.experiment.definitions import STAGES, Definitions
from chronicle.experiment.providers import Provider, open_client
from chronicle.experiment.recorder import Recorder
from chronicle.experiment.render import RenderError, prompt_text, sha256_text
from chronicle.experiment.scrubbing import Scrubber
from chronicle.store import EventLog, InvalidEvent, Snapshot

log = logging.getLogger("chronicle.runner")


@dataclass
class RunOptions:
    stage: str | None = None
    limit: int | None = None
    retry_errors: bool = False
    dry_run: bool = False
    concurrency: int | None = None
    #: (I, N): take on only the keys of shard I of N (``ids.shard_of``), as one of N machines.
    shard: tuple[int, int] | None = None


@dataclass
class KeyState:
    ok_doc: str | None = None
    parsed: str | None = None  # the ok response's parsed text, when its parse succeeded
    attempts: int = 0
    last_doc: str | None = None
    last_status: str | None = None  # None: prompt recorded, no response yet
    pending_prompt: str | None = None
    pending_provider: str | None = None

    @property
    def failed(self) -> bool:
        return self.ok_doc is None and self.last_status is not None


@dataclass
class RunSummary:
    run_id: str
    provider: str
    to_do: dict[str, int] = field(default_factory=dict)  # stage -> keys this run takes on
    planned: int = 0  # keys the run expects to take on, all stages (for progress and ETA)
    already_done: int = 0
    blocked: int = 0  # parent not done (or its parse failed)
    left_failed: int = 0  # failed earlier; not retried without --retry-errors
    other_shards: int = 0  # keys another shard takes on (--shard)
    calls: int = 0
    ok: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # e.g. a template that fails to render
    #: Why keys failed: a cause (status, HTTP status, the error's first line) -> how many keys.
    causes: dict[str, int] = field(default_factory=dict)

    def failed_because(self, cause: str) -> None:
        self.failed += 1
        self.causes[cause] = self.causes.get(cause, 0) + 1


def failure_cause(attempt: Attempt) -> str:
    """A key's failure, grouped with its kind: status, HTTP status and the error's first line
    (numbers that vary per request, such as ids and timings, blanked)."""
    import re

    http = f" (HTTP {attempt.http_status})" if attempt.http_status is not None else ""
    first = (attempt.error or "").strip().splitlines()[0] if attempt.error else ""
    if attempt.status == "truncated" and not first:
        first = f"the reply was cut off (finish_reason {attempt.finish_reason or 'length'}); raise max_tokens"
    first = re.sub(r"\d+(\.\d+)?", "N", first)[:160]
    return f"{attempt.status}{http}" + (f": {first}" if first else "")


def load_state(snaps: Snapshot | list[Snapshot], keys: list[str]) -> dict[str, KeyState]:
    """What the logs say about each logical key (attempts, the ok one, the parsed text): this
    workspace's log first, then other producers' logs pulled from a remote (``chronicle pull``),
    so a key any of them did is done and its text feeds its children. A key's prompt in flight
    counts only in this workspace's log (another machine's is its business); attempts add up,
    so a new attempt's doc id is new everywhere."""
    snaps = snaps if isinstance(snaps, list) else [snaps]
    merged = {k: KeyState() for k in keys}
    for i, snap in enumerate(snaps):
        for key, st in _states_of(snap, keys).items():
            m = merged[key]
            m.attempts += st.attempts
            if m.ok_doc is None and st.ok_doc is not None:
                m.ok_doc, m.parsed = st.ok_doc, st.parsed
            if i == 0:
                m.last_doc, m.last_status = st.last_doc, st.last_status
                m.pending_prompt, m.pending_provider = st.pending_prompt, st.pending_provider
            elif m.last_doc is None and st.last_status is not None:  # failed elsewhere: a failed key here too
                m.last_doc, m.last_status = st.last_doc, st.last_status
    return merged


def _states_of(snap: Snapshot, keys: list[str]) -> dict[str, KeyState]:
    states = {k: KeyState() for k in keys}
    present = set(snap.types())
    if "llm.prompt" not in present:
        return states
    prompts = (snap.frame("llm.prompt", ["seq", "doc_id", "logical_key_id", "prompt", "params_json"])
               .filter(pl.col("logical_key_id").is_in(keys)).collect())
    if not prompts.height:
        return states
    docs = prompts["doc_id"]
    responses = (snap.frame("llm.response", ["seq", "doc_id", "status"]).filter(pl.col("doc_id").is_in(docs))
                 .collect() if "llm.response" in present else pl.DataFrame(schema={"seq": pl.Int64, "doc_id": pl.String, "status": pl.String}))
    parses = (snap.frame("parse.result", ["seq", "doc_id", "status", "parsed"]).filter(pl.col("doc_id").is_in(docs))
              .sort("seq").group_by("doc_id").last().collect() if "parse.result" in present
              else pl.DataFrame(schema={"doc_id": pl.String, "status": pl.String, "parsed": pl.String}))
    status_of = dict(zip(responses["doc_id"], responses["status"]))
    parsed_of = {d: (p if s == "ok" else None) for d, s, p in parses.select("doc_id", "status", "parsed").iter_rows()}
    for _, doc, key, prompt, params in prompts.sort("seq").iter_rows():
        st = states[key]
        st.attempts += 1
        st.last_doc = doc
        status = status_of.get(doc)
        st.last_status = status
        st.pending_prompt = prompt if status is None else None
        st.pending_provider = json.loads(params).get("provider") if status is None else None
        if status == "ok" and st.ok_doc is None:
            st.ok_doc, st.parsed = doc, parsed_of.get(doc)
    return states


class _RateLimiter:
    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            delay = self.next - now
            self.next = max(now, self.next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


def backoff_delay(attempt: int, base: float, retry_after: float | None) -> float:
    """Exponential with full jitter, never shorter than the server's Retry-After."""
    delay = min(60.0, base * (2 ** attempt)) * random.uniform(0.5, 1.5)
    return max(delay, retry_after or 0.0)


class Runner:
    def __init__(self, log: EventLog, plan: Plan, d: Definitions, provider: Provider, options: RunOptions,
                 on_progress: Callable[[RunSummary, int], None] | None = None, pulled: list[EventLog] = ()):
        self.log, self.plan, self.d, self.provider, self.options = log, plan, d, provider, options
        #: Other producers' logs pulled from a remote: what they did is done here too.
        self.pulled = list(pulled)
        self.summary = RunSummary(run_id=f"run_{datetime.now(timezone.utc):%Y%m%dT%H%M%S}_{secrets.token_hex(3)}",
                                  provider=provider.name)
        self.on_progress = on_progress or (lambda s, inflight: None)
        self.inflight = 0
        self.states: dict[str, KeyState] = {}

    # ---------------------------------------------------------------- plan

    def _select(self, stage: str) -> list[Member]:
        """This stage's keys that this run should take on, in membership order."""
        chosen = []
        for m in self.plan.members:
            if m.stage != stage:
                continue
            if self.options.shard and ids.shard_of(m.logical_key_id, self.options.shard[1]) != self.options.shard[0]:
                self.summary.other_shards += 1
                continue
            st = self.states[m.logical_key_id]
            if st.ok_doc is not None:
                self.summary.already_done += 1
                continue
            parent = self.states.get(m.parent_key) if m.parent_key else None
            if m.parent_key and (parent is None or parent.parsed is None):
                self.summary.blocked += 1
                continue
            if self.options.retry_errors != st.failed:
                self.summary.left_failed += st.failed
                continue
            chosen.append(m)
        return chosen

    def _load_state(self) -> dict[str, KeyState]:
        return load_state([self.log.snapshot(), *(p.snapshot() for p in self.pulled)],
                          [m.logical_key_id for m in self.plan.members])

    def stages(self) -> list[str]:
        return [self.options.stage] if self.options.stage else list(STAGES)

    def _work(self) -> Iterator[list[Member]]:
        """Each stage's keys to take on, within ``--limit`` over all stages. A stage is
        selected only once the previous one is done (its keys' parents are then known)."""
        budget = self.options.limit
        for stage in self.stages():
            todo = self._select(stage)
            if budget is not None:
                todo, budget = todo[:budget], budget - len(todo[:budget])
            self.summary.to_do[stage] = len(todo)
            yield todo

    def dry_run(self) -> RunSummary:
        self.states = self._load_state()
        for todo in self._work():
            for m in todo:  # assume success, so the next stage counts their children
                self.states[m.logical_key_id] = KeyState(ok_doc="(dry run)", parsed="(dry run)")
        return self.summary

    # ---------------------------------------------------------------- run

    async def run(self) -> RunSummary:
        started = time.monotonic()
        probe = Runner(self.log, self.plan, self.d, self.provider, self.options, pulled=self.pulled).dry_run()
        if not any(probe.to_do.values()):  # nothing to take on: record no run at all
            probe.run_id = ""
            return probe
        self.summary.planned = sum(probe.to_do.values())
        self.states = self._load_state()
        concurrency = self.options.concurrency or self.provider.concurrency
        options = {k: v for k, v in vars(self.options).items() if v not in (None, False)}
        async with Recorder(self.log, Scrubber(self.provider.api_key())) as rec:
            await rec.record([RunStarted(stream=f"run:{self.summary.run_id}", event_id=f"{self.summary.run_id}:started",
                                         run_id=self.summary.run_id, cohort_id=self.plan.cohort_id,
                                         provider=self.provider.name, options_json=json.dumps(options, sort_keys=True))])
            status = "interrupted"
            try:
                async with open_client(self.provider, concurrency) as client:
                    calls = asyncio.Semaphore(concurrency)
                    # Keys past their prompt but waiting for a call slot: each slot has its next
                    # prompt recorded while its current call runs, and the durable recording of
                    # prompts and responses never holds a slot. It stays bounded so a prompt is
                    # recorded only shortly before it is sent.
                    window = asyncio.Semaphore(2 * concurrency)
                    limiter = _RateLimiter(self.provider.requests_per_minute)
                    for todo in self._work():
                        await asyncio.gather(*(self._key(m, client, rec, window, calls, limiter) for m in todo))
                status = "finished"
            finally:
                self.summary.seconds = time.monotonic() - started
                s = self.summary
                await rec.record([RunFinished(stream=f"run:{s.run_id}", event_id=f"{s.run_id}:finished",
                                              run_id=s.run_id, status=status, done=s.ok, failed=s.failed)])
        return self.summary

    def _prompt_for(self, m: Member) -> str:
        parent = self.states[m.parent_key].parsed if m.parent_key else None
        return prompt_text(self.d, m.stage, m.template_id, m.concept_ids, m.level, parent)

    def params(self, m: Member) -> dict:
        model = self.d.models[m.model_id].model if m.model_id in self.d.models else m.model_id
        return {"combo_id": m.combo_id, "concept_ids": m.concept_ids, "level": m.level, "replicate": m.replicate,
                "provider": self.provider.name if m.generator == "llm" else "copy", "model": model,
                "max_tokens": self.provider.max_tokens, "temperature": self.provider.temperature}

    async def _key(self, m: Member, client, rec: Recorder, window: asyncio.Semaphore, calls: asyncio.Semaphore,
                   limiter: _RateLimiter) -> None:
        st = self.states[m.logical_key_id]
        parent_doc = self.states[m.parent_key].ok_doc if m.parent_key else None
        params = self.params(m)
        t = self.d.templates[(m.stage, m.template_id)]
        async with window:
            pending = st.pending_prompt if st.pending_provider == params["provider"] else None
            try:
                prompt = pending if pending is not None else self._prompt_for(m)
            except RenderError as exc:  # nothing was sent; the key stays to do once the template is fixed
                self.summary.problems.append(f"{m.stage} {m.logical_key_id}: {exc}")
                self.summary.failed_because(f"template {m.template_id} did not render")
                return
            for i in range(max(1, self.provider.max_attempts)):
                if pending is None:
                    st.attempts += 1
                    doc = ids.attempt_doc_id(m.logical_key_id, st.attempts)
                    await rec.record([LlmPrompt.with_params(
                        params, stream=f"doc:{doc}", event_id=f"prompt:{doc}", doc_id=doc,
                        logical_key_id=m.logical_key_id, stage=m.stage, template_id=m.template_id,
                        template_sha256=t.sha256 or "", prompt_sha256=sha256_text(prompt), prompt=prompt,
                        model_id=m.model_id, parent_doc_id=parent_doc, run_id=self.summary.run_id, cohort_id=self.plan.cohort_id, task_id=m.task_id)])
                else:
                    doc, pending = st.last_doc, None
                # Attempt ids are deterministic, so the one superseded is always attempt n - 1.
                supersedes = ids.attempt_doc_id(m.logical_key_id, st.attempts - 1) if st.attempts > 1 else None
                if t.generator == "copy":
                    attempt = Attempt(status="ok", text=prompt, finish_reason="copy", latency_ms=0.0)
                else:
                    async with calls:
                        await limiter.wait()
                        self.inflight += 1
                        self.summary.calls += 1
                        self.on_progress(self.summary, self.inflight)
                        try:
                            attempt = await client.complete(params["model"], prompt)
                        finally:
                            self.inflight -= 1
                usage = usage_fields(attempt.usage_json)
                events: list = [LlmResponse(
                    stream=f"doc:{doc}", event_id=f"response:{doc}", doc_id=doc, attempt=st.attempts,
                    status=attempt.status, text=attempt.text, finish_reason=attempt.finish_reason,
                    usage_json=attempt.usage_json, **usage, latency_ms=attempt.latency_ms, http_status=attempt.http_status,
                    provider_request_id=attempt.provider_request_id, error=attempt.error, supersedes_doc_id=supersedes,
                    text_sha256=sha256_text(attempt.text) if attempt.text is not None else None)]
                parsed = None
                if attempt.status == "ok":
                    parser = parsers.get(m.parser)
                    parsed = parser(attempt.text)
                    events.append(ParseResult(
                        stream=f"doc:{doc}", event_id=f"parse:{doc}:{parser.name}@{parser.version}", doc_id=doc,
                        parser=parser.name, parser_version=parser.version, status=parsed.status,
                        parsed=parsed.parsed, score=parsed.score, scale=parsed.scale, reason=parsed.reason,
                        parsed_sha256=sha256_text(parsed.parsed) if parsed.parsed is not None else None,
                        provenance=f"run:{self.summary.run_id}"))
                try:
                    await rec.record(events)
                except InvalidEvent as exc:  # a reply no event can hold: its failure is recorded instead
                    attempt = Attempt(status="gen_error", error=f"response could not be recorded: {exc}"[:4000],
                                      http_status=attempt.http_status, latency_ms=attempt.latency_ms, retryable=True)
                    parsed, usage = None, usage_fields(None)
                    await rec.record([LlmResponse(
                        stream=f"doc:{doc}", event_id=f"response:{doc}", doc_id=doc, attempt=st.attempts,
                        status=attempt.status, error=attempt.error, http_status=attempt.http_status,
                        latency_ms=attempt.latency_ms, supersedes_doc_id=supersedes, **usage)])
                st.last_doc, st.last_status = doc, attempt.status
                self.summary.prompt_tokens += usage["prompt_tokens"] or 0  # type: ignore[operator]
                self.summary.completion_tokens += usage["completion_tokens"] or 0  # type: ignore[operator]
                if attempt.status == "ok":
                    st.ok_doc = doc
                    st.parsed = parsed.parsed if parsed is not None and parsed.status == "ok" else None
                    self.summary.ok += 1
                    self.on_progress(self.summary, self.inflight)
                    return
                if not attempt.retryable or i + 1 >= self.provider.max_attempts:
                    break
                retry_after = attempt.retry_after
                if retry_after is not None and retry_after > self.provider.max_retry_after_seconds:
                    log.warning("%s asked to retry after %.0f s; waiting %.0f s (max_retry_after_seconds)",
                                self.provider.name, retry_after, self.provider.max_retry_after_seconds)
                    retry_after = self.provider.max_retry_after_seconds
                await asyncio.sleep(backoff_delay(i, self.provider.backoff_seconds, retry_after))
            self.summary.failed_because(failure_cause(attempt))
            self.on_progress(self.summary, self.inflight)
