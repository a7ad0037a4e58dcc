"""Writes data/examples/codex-sessions: a small, hand-made Codex CLI rollout (run once; committed).

It has the shapes the counting rule must survive (see the corpus NOTES): an
``info: null`` snapshot, every snapshot written twice, compaction (totals
unchanged, ``last_token_usage`` zero but for total_tokens), a model switch
mid-session, a ``token_usage_record`` beside its token_count, and a line cut
off mid-write. Counted: 3 calls, 34,500 input (22,904 cached), 870 output
(350 reasoning), 35,370 total; gpt-5.3-codex 2 calls, gpt-5.4 1.
"""
import json
from pathlib import Path

out = Path("data/examples/codex-sessions/2026/03/02")
sid = "019c9000-0000-7000-8000-00000000c0de"
lines: list[str] = []


def rec(ts, typ, payload):
    lines.append(json.dumps({"timestamp": ts, "type": typ, "payload": payload}, separators=(",", ":")))


def usage(i, c, o, r):
    return {"input_tokens": i, "cached_input_tokens": c, "output_tokens": o, "reasoning_output_tokens": r,
            "total_tokens": i + o}


total = [0, 0, 0, 0]


def count(ts, i, c, o, r, repeat=True):
    for k, v in enumerate((i, c, o, r)):
        total[k] += v
    info = {"total_token_usage": usage(*total), "last_token_usage": usage(i, c, o, r), "model_context_window": 258400}
    rec(ts, "event_msg", {"type": "token_count", "info": info, "rate_limits": None})
    if repeat:  # Codex writes most snapshots twice
        rec(ts, "event_msg", {"type": "token_count", "info": info, "rate_limits": None})


rec("2026-03-02T09:00:00.100Z", "session_meta", {
    "id": sid, "timestamp": "2026-03-02T09:00:00.000Z", "cwd": "/home/ada/src/chronicle", "originator": "codex_cli_rs",
    "cli_version": "0.104.0", "source": "cli", "model_provider": "openai",
    "git": {"commit_hash": "abc123", "branch": "main"}})
rec("2026-03-02T09:00:00.200Z", "event_msg", {"type": "task_started", "turn_id": "t1"})
rec("2026-03-02T09:00:00.210Z", "response_item", {"type": "message", "role": "user", "content": [
    {"type": "input_text", "text": "Add a --json flag to `chronicle tables`; keep <html> & \"quotes\" as they are."}]})
rec("2026-03-02T09:00:00.220Z", "turn_context", {"turn_id": "t1", "cwd": "/home/ada/src/chronicle",
                                                 "model": "gpt-5.3-codex", "effort": "medium"})
rec("2026-03-02T09:00:00.900Z", "event_msg", {"type": "token_count", "info": None,
                                              "rate_limits": {"primary": {"used_percent": 3.0}}})
rec("2026-03-02T09:00:02.000Z", "response_item", {"type": "function_call", "name": "exec_command",
                                                  "arguments": "{\"cmd\":\"rg --json tables\"}", "call_id": "call_1"})
count("2026-03-02T09:00:02.010Z", 12000, 3000, 300, 200)
rec("2026-03-02T09:00:02.500Z", "response_item", {"type": "function_call_output", "call_id": "call_1",
                                                  "output": "src/chronicle/cli.py:120: tables"})
count("2026-03-02T09:00:05.000Z", 13500, 11904, 420, 100)
rec("2026-03-02T09:00:05.100Z", "response_item", {"type": "message", "role": "assistant", "content": [
    {"type": "output_text", "text": "Done: `chronicle tables --json` prints one object per table."}]})
rec("2026-03-02T09:00:05.110Z", "event_msg", {"type": "task_complete", "turn_id": "t1"})
rec("2026-03-02T09:10:00.000Z", "compacted", {"message": "", "replacement_history": [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "(summary)"}]}]})
rec("2026-03-02T09:10:00.010Z", "event_msg", {"type": "token_count", "info": {
    "total_token_usage": usage(*total),
    "last_token_usage": {"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0,
                         "reasoning_output_tokens": 0, "total_tokens": 26220}}, "rate_limits": None})
rec("2026-03-02T09:10:00.020Z", "event_msg", {"type": "context_compacted"})
rec("2026-03-02T09:11:00.000Z", "event_msg", {"type": "thread_settings_applied", "model": "gpt-5.4"})
rec("2026-03-02T09:11:00.100Z", "event_msg", {"type": "task_started", "turn_id": "t2"})
rec("2026-03-02T09:11:00.200Z", "turn_context", {"turn_id": "t2", "cwd": "/home/ada/src/chronicle",
                                                 "model": "gpt-5.4", "effort": "high"})
rec("2026-03-02T09:11:01.000Z", "token_usage_record", {"usage": usage(9000, 8000, 150, 50),
                                                       "response_id": "[redacted]"})
count("2026-03-02T09:11:01.000Z", 9000, 8000, 150, 50, repeat=False)
lines.append('{"timestamp":"2026-03-02T09:11:02.000Z","type":"event_msg","payload":{"type":"agent_message",'
             '"message":"cut off mid-wr')
rec("2026-03-02T09:11:03.000Z", "event_msg", {"type": "user_message", "message": "thanks"})
out.mkdir(parents=True, exist_ok=True)
(out / f"rollout-2026-03-02T10-00-00-{sid}.jsonl").write_text("\n".join(lines) + "\n")
