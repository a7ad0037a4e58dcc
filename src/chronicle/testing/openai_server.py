"""An OpenAI-compatible chat-completions server on loopback that misbehaves on purpose.

    python -m chronicle.testing.openai_server --port 0 --latency-ms 20 \\
        --fault-rate 0.5 --faults 429,500,error200,drop,truncate,slow --require-key sk-test

It prints ``listening on http://127.0.0.1:PORT`` once ready. Faults are
deterministic: a prompt gets a fault on its first request when its hash says
so (``--fault-rate``), the kinds of ``--faults`` taken in turn; every later
request for that prompt succeeds, so a client that retries correctly always
finishes. Kinds:

- ``429``: Too Many Requests with ``Retry-After`` (``--retry-after`` seconds)
- ``500``: a server error whose body echoes the Authorization header (a client
  must never record it verbatim)
- ``error200``: HTTP 200 with ``{"error": ...}`` instead of choices
- ``drop``: the connection is closed without a response
- ``truncate``: ``finish_reason: "length"`` with half a reply
- ``slow``: answers after ``--slow-ms`` (longer than a client's timeout)

Kinds only given by name (not in the default ``--faults``), for hostile shapes:

- ``leak``: a good reply that echoes the key in ``x-request-id``, its base64 and
  URL-encoded forms in the usage object, and a 12-character piece in the text
- ``oddtypes``: a good reply whose ``id`` and ``finish_reason`` are numbers
- ``parts``: content as a list of ``{"type": "text", "text": ...}`` parts
- ``number``: content as a number
- ``soon``: 429 with ``Retry-After: soon``
- ``huge``: usage token counts beyond 64 bits

``GET /_requests`` lists every request seen (prompt sha256, model, fault, and
``in_flight``: how many requests were being answered when it arrived, itself included).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys

from aiohttp import web

FAULTS = ("429", "500", "error200", "drop", "truncate", "slow")
HOSTILE = ("leak", "oddtypes", "parts", "number", "soon", "huge")


def reply_text(model: str, prompt: str) -> str:
    digest = hashlib.sha256(f"{model}\0{prompt}".encode()).hexdigest()
    words = " ".join(prompt.split()[:30])
    return (f"reply {digest[:12]}\n<essay>\nA served reply about: {words}\n</essay>\n"
            f"Overall this deserves a middling mark.\nSCORE: {int(digest[:8], 16) % 10}/10\n")


class Behaviour:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.faults = [f for f in args.faults.split(",") if f] if args.faults else []
        unknown = set(self.faults) - set(FAULTS) - set(HOSTILE)
        if unknown:
            raise SystemExit(f"unknown fault kinds: {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(FAULTS + HOSTILE)})")
        self.seen: dict[str, int] = {}
        self.faulted = 0
        self.requests: list[dict] = []
        self.in_flight = 0

    def fault_for(self, prompt_sha: str) -> str | None:
        n = self.seen.get(prompt_sha, 0) + 1
        self.seen[prompt_sha] = n
        if n > 1 or not self.faults:
            return None
        if (int(prompt_sha[:8], 16) % 1000) / 1000 >= self.args.fault_rate:
            return None
        self.faulted += 1  # kinds in turn, so every kind shows up in a small run
        return self.faults[(self.faulted - 1) % len(self.faults)]


async def completions(request: web.Request) -> web.StreamResponse:
    b: Behaviour = request.app["behaviour"]
    b.in_flight += 1
    try:
        return await _complete(request, b)
    finally:
        b.in_flight -= 1


async def _complete(request: web.Request, b: Behaviour) -> web.StreamResponse:
    auth = request.headers.get("Authorization", "")
    if b.args.require_key and auth != f"Bearer {b.args.require_key}":
        return web.json_response({"error": {"message": "invalid api key", "code": 401}}, status=401)
    body = await request.json()
    model = body.get("model", "")
    prompt = "".join(m.get("content", "") for m in body.get("messages", []))
    sha = hashlib.sha256(prompt.encode()).hexdigest()
    fault = b.fault_for(sha)
    b.requests.append({"prompt_sha256": sha, "model": model, "fault": fault, "auth": bool(auth),
                       "in_flight": b.in_flight})
    await asyncio.sleep(b.args.latency_ms / 1000)
    if fault == "429":
        return web.json_response({"error": {"message": "rate limited", "code": 429}}, status=429,
                                 headers={"Retry-After": str(b.args.retry_after)})
    if fault == "500":
        return web.Response(status=500, text=f"internal error while handling request with header {auth}")
    if fault == "error200":
        return web.json_response({"error": {"message": "upstream provider failed", "code": 502}})
    if fault == "drop":
        assert request.transport is not None
        request.transport.abort()
        return web.Response(status=500)
    if fault == "slow":
        await asyncio.sleep(b.args.slow_ms / 1000)
    if fault == "soon":
        return web.json_response({"error": {"message": "rate limited", "code": 429}}, status=429,
                                 headers={"Retry-After": "soon"})
    if fault in HOSTILE:
        return _hostile(fault, model, prompt, auth.removeprefix("Bearer "), len(b.requests))
    text = reply_text(model, prompt)
    finish = "stop"
    if fault == "truncate":
        text, finish = text[: len(text) // 2], "length"
    n = len(b.requests)
    usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4,
             "total_tokens": (len(prompt) + len(text)) // 4, "cost": round(len(text) * 1e-6, 8)}
    return web.json_response({"id": f"chatcmpl-{n}", "object": "chat.completion", "model": model,
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                           "finish_reason": finish}], "usage": usage},
                             headers={"x-request-id": f"req-{n}"})


def _hostile(fault: str, model: str, prompt: str, key: str, n: int) -> web.Response:
    import base64
    from urllib.parse import quote

    text: object = reply_text(model, prompt)
    usage: dict = {"prompt_tokens": len(prompt) // 4, "completion_tokens": 10}
    headers = {"x-request-id": f"req-{n}"}
    body: dict = {"id": f"chatcmpl-{n}", "model": model}
    finish: object = "stop"
    if fault == "leak":
        headers["x-request-id"] = key
        usage["note"] = f"{base64.b64encode(f'user:{key}'.encode()).decode()} {quote(key, safe='')}"
        text = f"{text}\nkey piece: {key[3:15]}\n"
    elif fault == "oddtypes":
        body["id"], finish = n, 7
    elif fault == "parts":
        text = [{"type": "text", "text": part} for part in str(text).split("\n<essay>")[0:1]] + \
               [{"type": "text", "text": "\n<essay>" + str(text).split("\n<essay>", 1)[1]}]
    elif fault == "number":
        text = 42
    elif fault == "huge":
        usage = {"prompt_tokens": 2**64 + 5, "completion_tokens": 18446744073709551616}
    body.update(choices=[{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                usage=usage)
    return web.json_response(body, headers=headers)


async def requests_seen(request: web.Request) -> web.Response:
    return web.json_response(request.app["behaviour"].requests)


def make_app(args: argparse.Namespace) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["behaviour"] = Behaviour(args)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/chat/completions", completions)
    app.router.add_get("/_requests", requests_seen)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of prompts whose first request fails")
    p.add_argument("--faults", default=",".join(FAULTS))
    p.add_argument("--retry-after", type=float, default=0.2)
    p.add_argument("--slow-ms", type=float, default=5000.0)
    p.add_argument("--require-key", help="answer 401 unless this bearer key is sent")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    runner = web.AppRunner(make_app(args), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"listening on http://{args.host}:{port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    try:
        asyncio.run(serve(parse_args(argv)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
