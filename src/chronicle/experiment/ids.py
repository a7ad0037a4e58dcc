"""Identity recipes.

``combo_id`` and ``gen_id`` follow the DayDreaming project exactly (see the
corpus NOTES), so its data imports with its ids intact and new documents can
be compared with old ones.

chronicle's own identities:

- ``logical_key_id``: one unit of work, the thing that should end with exactly
  one ok response. It covers every input that changes the output: for an
  essay that includes the essay model, which the source's essay ``gen_id``
  omits (two essay models on one draft collide there; they must not here).
  It also covers the content behind the names (template text, concept
  descriptions), which the source's ids do not; the source id is kept beside
  it as ``task_id``.
- ``doc_id``: one attempt at a logical key (attempt 1, 2, ...). Deterministic,
  so a run that resumes after a crash re-uses the attempt whose prompt is
  recorded but whose response is not.
"""

from __future__ import annotations

import hashlib

STAGE_PREFIX = {"draft": "d_", "essay": "e_", "evaluation": "v_"}
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def combo_id(concept_ids: list[str] | tuple[str, ...], level: str, k_max: int) -> str:
    key = "|".join(sorted(concept_ids)) + "|" + level + "|" + str(k_max)
    return "combo_v1_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _base36(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_DIGITS[r])
    return "".join(reversed(out))


def _digest(parts: tuple[object, ...]) -> str:
    sig = "|".join(str(p).strip().lower() if not isinstance(p, int) else str(p) for p in parts)
    return _base36(hashlib.blake2b(sig.encode(), digest_size=10).digest())


def gen_id(stage: str, *parts: object) -> str:
    """The source project's gen_id: draft (combo_id, template, model, replicate);
    essay (draft_gen_id, template, replicate); evaluation (essay_gen_id, template, model, replicate)."""
    return STAGE_PREFIX[stage] + _digest(tuple(parts))


def logical_key_id(stage: str, parent: str, template_id: str, model_id: str, replicate: int, inputs_sha256: str) -> str:
    """``parent`` is the combo id for drafts and the parent's logical key otherwise;
    ``inputs_sha256`` covers the content the id names do not: the template text and,
    for drafts, the concept descriptions. Edit a template and its documents are new work."""
    return STAGE_PREFIX[stage] + _digest((parent, template_id, model_id, int(replicate), inputs_sha256))


def shard_of(logical_key: str, shards: int) -> int:
    """Which of ``shards`` machines takes on a key (``chronicle run --shard I/N``): from a hash of the
    key alone, so every machine agrees without talking, and each key goes to exactly one."""
    return int(hashlib.sha256(logical_key.encode()).hexdigest()[:15], 16) % shards


def attempt_doc_id(logical_key: str, attempt: int) -> str:
    return logical_key[:2] + "a" + _digest((logical_key, "attempt", int(attempt)))
