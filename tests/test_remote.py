"""Remotes on a real S3 API (moto in server mode on 127.0.0.1): push, pull, producers, faults.

Two workspaces play two researchers' machines; each runs chronicle as a user
would (a process, the AWS environment for credentials).
"""

from __future__ import annotations

import io
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

pytest.importorskip("moto")

import test_secrets  # noqa: E402
from s3_server import CREDENTIALS, environ, moto_server, new_bucket  # noqa: E402
from test_secrets import FAKE, _no_secret_in  # noqa: E402


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url:
        yield url


def _workspace(tmp_path: Path, name: str, endpoint: str) -> dict[str, str]:
    env = {**environ(endpoint), "CHRONICLE_ROOT": str(tmp_path / name), "HOME": str(tmp_path / f"{name}-home")}
    run(env, "init")
    return env


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "chronicle", *args], env=env, capture_output=True, timeout=300)
    if check:
        assert proc.returncode == 0, (args, proc.stderr.decode())
    return proc


ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "data" / "examples" / "claude-projects"


def _ingest(env: dict[str, str], tmp_path: Path, name: str, copies: int = 1, *, leaky: bool = False) -> None:
    """Sessions recorded: copies of the shipped examples (no secret in them), or with ``leaky`` the
    transcript that leaks every kind of secret."""
    for i in range(copies):
        if leaky:
            test_secrets._transcript(tmp_path / f"{name}-projects" / f"-p{i}")
        else:
            shutil.copytree(EXAMPLES, tmp_path / f"{name}-projects" / f"-p{i}")
    run(env, "ingest", "sessions", str(tmp_path / f"{name}-projects"))


def _s3(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")


def _keys(endpoint: str, bucket: str) -> list[str]:
    pages = _s3(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _producer(env: dict[str, str]) -> str:
    return json.loads(run(env, "remote", "list", "--json").stdout.splitlines()[0])["producer"]


def test_push_then_pull_mirrors_a_producer_byte_for_byte(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    a, b = _workspace(tmp_path, "a", endpoint), _workspace(tmp_path, "b", endpoint)
    _ingest(a, tmp_path, "a", copies=2)
    run(a, "remote", "add", "team", f"s3://{bucket}/lab")
    pushed = json.loads(run(a, "push", "--json").stdout)
    assert pushed["lines"] >= 1 and pushed["files"] >= 1 and pushed["remote_lines"] == 0
    again = json.loads(run(a, "push", "team", "--json").stdout)
    assert again["lines"] == 0 and again["files"] == 0  # idempotent: nothing is sent twice
    producer_a = pushed["producer"]
    keys = _keys(endpoint, bucket)
    assert f"lab/producers/{producer_a}/PRODUCER" in keys and any("/manifest/" in k for k in keys)

    run(b, "remote", "add", "team", f"s3://{bucket}/lab", "--producer", "laptop-b")
    pulled = [json.loads(x) for x in run(b, "pull", "--json").stdout.splitlines()]
    assert [p["producer"] for p in pulled] == [producer_a] and pulled[0]["lines"] == pushed["lines"]
    mirror = Path(b["CHRONICLE_ROOT"]) / "data" / "remotes" / "team" / producer_a
    log_a = Path(a["CHRONICLE_ROOT"]) / "data" / "log"
    assert (mirror / "MANIFEST").read_bytes() == (log_a / "MANIFEST").read_bytes()
    for f in (log_a / "segments").iterdir():
        assert (mirror / "segments" / f.name).read_bytes() == f.read_bytes()
    verified = run(b, "verify").stdout.decode()
    assert f"team/{producer_a}: ok" in verified
    assert "up to date" in run(b, "pull").stdout.decode()
    # B's own pushes never touch A's objects, and A pulls B
    _ingest(b, tmp_path, "b")
    run(b, "push")
    assert [json.loads(x)["producer"] for x in run(a, "pull", "--json").stdout.splitlines()] == ["laptop-b"]


def test_a_producer_id_taken_by_another_workspace_is_refused(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    a, b = _workspace(tmp_path, "a", endpoint), _workspace(tmp_path, "b", endpoint)
    run(a, "remote", "add", "team", f"s3://{bucket}", "--producer", "desk-1")
    taken = run(b, "remote", "add", "team", f"s3://{bucket}", "--producer", "desk-1", check=False)
    assert taken.returncode == 2 and b"producer id 'desk-1' is taken" in taken.stderr
    assert run(b, "remote", "list").stdout.startswith(b"no remotes")  # nothing recorded


def test_credentials_never_reach_a_file_or_the_output(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    a, b = _workspace(tmp_path, "a", endpoint), _workspace(tmp_path, "b", endpoint)
    secret_env = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY", "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLETOKEN0042"}
    a, b = {**a, **secret_env}, {**b, **secret_env}
    _ingest(a, tmp_path, "a")
    outputs = [run(a, "remote", "add", "team", f"s3://{bucket}"), run(a, "push"), run(b, "remote", "add", "team",
               f"s3://{bucket}"), run(b, "pull"), run(b, "verify"), run(a, "remote", "list", "--json"),
               run(a, "log", "--json"), run(b, "push", "--json")]
    for needle in (*secret_env.values(), CREDENTIALS["AWS_ACCESS_KEY_ID"]):
        for proc in outputs:
            assert needle.encode() not in proc.stdout + proc.stderr
        for root in (tmp_path / "a", tmp_path / "b"):
            for f in root.rglob("*"):
                if f.is_file():
                    assert needle.encode() not in f.read_bytes(), f
                    if f.suffix == ".parquet":
                        assert needle not in str(pq.read_table(f).to_pylist()), f
    for key in _keys(endpoint, bucket):
        body = _s3(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
        assert secret_env["AWS_SECRET_ACCESS_KEY"].encode() not in body, key


def test_a_push_killed_at_random_instants_resumes_and_the_remote_verifies(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    a, b = _workspace(tmp_path, "a", endpoint), _workspace(tmp_path, "b", endpoint)
    for i in range(6):  # several commits, so kills land between files and lines
        _ingest(a, tmp_path, f"a{i}")
    run(a, "remote", "add", "team", f"s3://{bucket}")
    rng = random.Random(11)
    for _ in range(4):
        child = subprocess.Popen([sys.executable, "-m", "chronicle", "push"], env=a, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 1.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert b"ok:" in run(a, "verify").stdout  # nothing local lost or altered
    run(a, "push")
    producer_a = _producer(a)
    run(b, "remote", "add", "team", f"s3://{bucket}")
    run(b, "pull")
    mirror = Path(b["CHRONICLE_ROOT"]) / "data" / "remotes" / "team" / producer_a
    assert (mirror / "MANIFEST").read_bytes() == (Path(a["CHRONICLE_ROOT"]) / "data" / "log" / "MANIFEST").read_bytes()
    assert f"team/{producer_a}: ok".encode() in run(b, "verify").stdout


def test_objects_altered_on_the_remote_are_refused_naming_them_and_nothing_local_changes(endpoint: str,
                                                                                        tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    a, b = _workspace(tmp_path, "a", endpoint), _workspace(tmp_path, "b", endpoint)
    _ingest(a, tmp_path, "a")
    run(a, "remote", "add", "team", f"s3://{bucket}")
    run(a, "push")
    run(b, "remote", "add", "team", f"s3://{bucket}")
    segment = next(k for k in _keys(endpoint, bucket) if "/segments/" in k and "session.line" in k)
    original = _s3(endpoint).get_object(Bucket=bucket, Key=segment)["Body"].read()
    _s3(endpoint).put_object(Bucket=bucket, Key=segment, Body=original[:-10] + b"0123456789")
    bad = run(b, "pull", check=False)
    assert bad.returncode == 3 and segment.split("/", 1)[1].encode() in bad.stderr and b"sha256" in bad.stderr
    mirror = Path(b["CHRONICLE_ROOT"]) / "data" / "remotes" / "team"
    assert not any((p / "MANIFEST").exists() and (p / "MANIFEST").read_bytes() for p in mirror.iterdir() if p.is_dir())
    _s3(endpoint).put_object(Bucket=bucket, Key=segment, Body=original)
    run(b, "pull")
    line = next(k for k in _keys(endpoint, bucket) if "/manifest/" in k)
    body = _s3(endpoint).get_object(Bucket=bucket, Key=line)["Body"].read()
    _s3(endpoint).put_object(Bucket=bucket, Key=line, Body=body.replace(b'"n":1', b'"n":7'))
    manifest_before = next(p / "MANIFEST" for p in mirror.iterdir() if p.is_dir() and p.name != ".cache").read_bytes()
    bad = run(b, "pull", check=False)
    assert bad.returncode == 3 and b"manifest" in bad.stderr and b"kept as it was" in bad.stderr
    assert next(p / "MANIFEST" for p in mirror.iterdir() if p.is_dir() and p.name != ".cache").read_bytes() == manifest_before


def test_an_unreachable_remote_or_a_wrong_bucket_is_a_clear_error_and_nothing_is_recorded(endpoint: str,
                                                                                       tmp_path: Path) -> None:
    a = _workspace(tmp_path, "a", endpoint)
    missing = run(a, "remote", "add", "team", "s3://no-such-bucket-here/x", check=False)
    assert missing.returncode == 3 and b"the bucket does not exist" in missing.stderr
    closed = run({**a, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "remote", "add", "team", f"s3://{new_bucket(endpoint)}",
                 check=False)
    assert closed.returncode == 3 and b"cannot be reached" in closed.stderr
    assert run(a, "remote", "list").stdout.startswith(b"no remotes")
    bad = run(a, "remote", "add", "team", "https://example.com/x", check=False)
    assert bad.returncode == 3 and b"not an s3://bucket" in bad.stderr
    assert run(a, "push", check=False).returncode == 2


def test_a_push_that_would_send_secrets_is_refused_until_they_are_redacted(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    a = _workspace(tmp_path, "a", endpoint)
    run(a, "remote", "add", "team", f"s3://{bucket}")
    _ingest(a, tmp_path, "a", leaky=True)
    refused = run(a, "push", check=False)
    assert refused.returncode == 2 and f"{test_secrets.FINDINGS} secret(s) found".encode() in refused.stderr
    assert not any("/manifest/" in k or "/segments/" in k for k in _keys(endpoint, bucket))  # nothing sent
    run(a, "secrets", "redact", "--all")
    pushed = json.loads(run(a, "push", "--json").stdout)
    assert pushed["lines"] >= 2 and pushed["removed"] == 0  # the replaced files were never sent
    for key in _keys(endpoint, bucket):
        body = _s3(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
        data = body + (str(pq.read_table(io.BytesIO(body)).to_pylist()).encode() if key.endswith(".parquet") else b"")
        _no_secret_in(data, f"the remote's {key}")
    b = _workspace(tmp_path, "b", endpoint)
    run(b, "remote", "add", "team", f"s3://{bucket}")
    run(b, "pull")
    assert b"ok:" in run(b, "verify").stdout


def test_a_redaction_pushed_reaches_every_producer_that_pulls(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    a, b = _workspace(tmp_path, "a", endpoint), _workspace(tmp_path, "b", endpoint)
    _ingest(a, tmp_path, "a", leaky=True)
    run(a, "remote", "add", "team", f"s3://{bucket}")
    run(a, "push", "--include-secrets")  # sent as recorded, by choice
    run(b, "remote", "add", "team", f"s3://{bucket}")
    run(b, "pull")
    producer_a = _producer(a)
    mirror = Path(b["CHRONICLE_ROOT"]) / "data" / "remotes" / "team" / producer_a
    leaked = b"\n".join(str(pq.read_table(f).to_pylist()).encode() for f in (mirror / "segments").iterdir())
    assert FAKE["github-token"].encode() in leaked  # pulled as recorded, before the redaction
    run(a, "secrets", "redact", "--all")
    pushed = json.loads(run(a, "push", "--json").stdout)
    assert pushed["lines"] >= 1 and pushed["removed"] >= 1
    pulled = json.loads(run(b, "pull", "--json").stdout)
    assert pulled["lines"] >= 1 and pulled["removed"] >= 1
    assert f"team/{producer_a}: ok".encode() in run(b, "verify").stdout
    for f in (mirror / "segments").iterdir():
        _no_secret_in(f.read_bytes() + str(pq.read_table(f).to_pylist()).encode(), f"mirror {f.name}")
    for key in _keys(endpoint, bucket):
        body = _s3(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
        data = body + (str(pq.read_table(io.BytesIO(body)).to_pylist()).encode() if key.endswith(".parquet") else b"")
        _no_secret_in(data, f"the remote's {key}")


def test_the_daemon_pushes_after_each_seal_and_backs_off_while_the_remote_is_down(
        endpoint: str, tmp_path: Path, monkeypatch) -> None:
    from s3_server import Relay
    from test_daemon import EXAMPLES as DAEMON_EXAMPLES, Daemon, call, record

    relay = Relay(endpoint)
    bucket = new_bucket(endpoint)
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    projects = tmp_path / "projects"
    shutil.copytree(DAEMON_EXAMPLES, projects)
    ws = tmp_path / "ws"
    env = {**environ(endpoint), "CHRONICLE_ROOT": str(ws)}
    run(env, "init")
    (ws / "chronicle.toml").write_text(f'[watch]\nclaude_roots = ["{projects}"]\ndebounce_ms = 50\nseal_mb = 0.001\n'
                                       'seal_seconds = 1\nslow_projection_seconds = 0.5\n')
    run(env, "remote", "add", "team", f"s3://{bucket}", "--endpoint", relay.endpoint)
    d = Daemon(ws)

    def remote_state() -> dict:
        out = run(env, "status", "--json")
        return json.loads(out.stdout)["remotes"][0]

    def wait(ok, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = remote_state()
            if ok(st):
                return st
            time.sleep(0.3)
        raise AssertionError(f"not reached in {timeout}s: {remote_state()}")

    try:
        d.start()
        first = wait(lambda st: st["pushed_at"] is not None and st["behind"] == 0)
        assert first["error"] is None and any("/manifest/" in k for k in _keys(endpoint, bucket))
        relay.down()
        live = projects / "-home-ana-repo" / "live.jsonl"
        live.write_bytes(record("live", "l1", "while the remote is down") + call("live", "l2", "m1", 7))
        down = wait(lambda st: st["error"] is not None and st["behind"] > 0)
        assert "cannot be reached" in down["error"]
        calls = run(env, "show", "api_calls", "--where", "session_id = 'live'", "--json").stdout.splitlines()
        assert len(calls) == 1  # recorded and projected locally while the push waits
        relay.up()
        back = wait(lambda st: st["error"] is None and st["behind"] == 0)
        assert back["pushed_seq"] > first["pushed_seq"]
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.terminate()
            d.proc.wait(timeout=30)
        relay.down()
    logged = [json.loads(x) for x in (ws / "data" / "logs" / "watch.log").read_text().splitlines()]
    assert any(x.get("msg", x.get("event")) == "push failed" or "push failed" in json.dumps(x) for x in logged)
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in json.dumps(logged)


def test_publish_writes_delta_tables_that_polars_and_duckdb_read_as_show_prints_them(endpoint: str,
                                                                                     tmp_path: Path) -> None:
    """One commit per table per publish; read back from the S3 server with Polars' scan_delta and
    with DuckDB (through an fsspec filesystem: its extensions cannot be downloaded here); the text
    that leaves is masked."""
    import duckdb
    import polars as pl
    from deltalake import DeltaTable
    from obstore.fsspec import FsspecStore

    bucket = new_bucket(endpoint)
    a = _workspace(tmp_path, "a", endpoint)
    _ingest(a, tmp_path, "a", copies=2)
    test_secrets._transcript(tmp_path / "a-projects" / "-leaky")  # secrets in the text: masked when published
    run(a, "ingest", "sessions", str(tmp_path / "a-projects"))
    run(a, "remote", "add", "team", f"s3://{bucket}/lab")
    first = {t["table"]: t for t in map(json.loads, run(a, "publish", "--json").stdout.splitlines())}
    assert {"api_calls", "usage_daily", "messages", "sessions"} <= set(first)
    assert all(t["version"] == 0 for t in first.values())
    again = {t["table"]: t for t in map(json.loads, run(a, "publish", "--tables", "api_calls,messages",
                                                         "--json").stdout.splitlines())}
    assert set(again) == {"api_calls", "messages"} and again["api_calls"]["version"] == 1  # one commit each
    options = {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", **CREDENTIALS}

    shown = [json.loads(x) for x in run(a, "show", "api_calls", "--columns", "message_id,output_tokens,agent",
                                        "--json", "--limit", "100000").stdout.splitlines()]
    want = sorted((r["message_id"], r["output_tokens"]) for r in shown)
    uri = again["api_calls"]["uri"]
    published = pl.scan_delta(uri, storage_options=options).select("message_id", "output_tokens").collect()
    assert sorted(published.iter_rows()) == want
    meta = DeltaTable(uri, storage_options=options).history(1)[0]
    assert meta.get("chronicle.producer") == first["api_calls"]["producer"]

    con = duckdb.connect()
    con.register_filesystem(FsspecStore("s3", endpoint=endpoint, client_options={"allow_http": True},
                                        region="us-east-1", access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                        secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"]))
    files = DeltaTable(uri, storage_options=options).file_uris()
    rows = con.sql(f"SELECT message_id, output_tokens FROM read_parquet({files!r}, hive_partitioning=true)").fetchall()
    assert sorted(rows) == want

    daily = [json.loads(x) for x in run(a, "show", "usage_daily", "--json", "--limit", "100000").stdout.splitlines()]
    got = pl.scan_delta(first["usage_daily"]["uri"], storage_options=options).collect()
    assert sorted(got["output_tokens"].to_list()) == sorted(r["output_tokens"] for r in daily)

    messages = pl.scan_delta(again["messages"]["uri"], storage_options=options).collect()
    text = "\n".join(t for t in messages["text"].to_list() if t)
    assert "[secret:" in text
    _no_secret_in(text.encode(), "the published messages")
    bad = run(a, "publish", "--tables", "nope", check=False)
    assert bad.returncode == 2 and b"no table 'nope'" in bad.stderr


def test_a_cohort_sharded_over_two_machines_pays_each_call_once(endpoint: str, tmp_path: Path) -> None:
    """Two machines run one cohort with --shard 0/2 and 1/2, pushing and pulling between rounds
    (an essay waits for its draft, which the other machine may own). In the end every key is done
    exactly once across the two logs, and neither a resume nor an unsharded run pays a call again."""
    from experiment_helpers import make_workspace

    from chronicle.store import EventLog

    bucket = new_bucket(endpoint)
    envs = []
    for name in ("a", "b"):
        root = make_workspace(tmp_path / name)
        env = {**environ(endpoint), "CHRONICLE_ROOT": str(root), "HOME": str(tmp_path / f"{name}-home")}
        run(env, "remote", "add", "team", f"s3://{bucket}", "--producer", f"machine-{name}")
        envs.append(env)
    calls = []
    for _ in range(6):
        made = 0
        for i, env in enumerate(envs):
            made += json.loads(run(env, "run", "demo", "--provider", "echo", "--shard", f"{i}/2", "--json").stdout)["calls"]
            run(env, "push")
        for env in envs:
            run(env, "pull")
        calls.append(made)
        if made == 0:
            break
    assert calls[-1] == 0 and sum(calls) > 0, calls
    dry = json.loads(run(envs[0], "run", "demo", "--provider", "echo", "--dry-run", "--json").stdout)
    assert not any(dry["to_do"].values()) and dry["already_done"] > 0
    assert json.loads(run(envs[1], "run", "demo", "--provider", "echo", "--json").stdout)["calls"] == 0
    done = []
    for env in envs:
        with EventLog(Path(env["CHRONICLE_ROOT"]) / "data" / "log") as log:
            snap = log.snapshot()
            ok = snap.frame("llm.response", ["doc_id", "status"]).filter(pl.col("status") == "ok")
            keys = (snap.frame("llm.prompt", ["doc_id", "logical_key_id"]).join(ok, on="doc_id")
                    .collect()["logical_key_id"].to_list())
            assert len(keys) == len(set(keys))
            done.append(set(keys))
    assert done[0] and done[1] and not done[0] & done[1]  # each key paid once, by one machine
    assert len(done[0] | done[1]) == dry["already_done"]
    bad = run(envs[0], "run", "demo", "--provider", "echo", "--shard", "2/2", check=False)
    assert bad.returncode == 2 and b"--shard '2/2'" in bad.stderr


def test_the_dask_recipe_sums_usage_over_producers_as_each_producers_projection_does(endpoint: str,
                                                                                      tmp_path: Path) -> None:
    """examples/dask_usage.py on a LocalCluster (worker processes), reading the producers' logs from
    the S3 server, equals each producer's own usage_daily (chronicle show), summed by day x model."""
    pytest.importorskip("distributed")
    import importlib.util

    from distributed import Client, LocalCluster

    bucket = new_bucket(endpoint)
    expected = []
    for name, copies in (("a", 1), ("b", 2)):
        env = _workspace(tmp_path, name, endpoint)
        _ingest(env, tmp_path, name, copies=copies)
        run(env, "remote", "add", "team", f"s3://{bucket}/lab", "--producer", f"desk-{name}")
        run(env, "push")
        daily = pl.DataFrame([json.loads(x) for x in run(env, "show", "usage_daily", "--json", "--limit",
                                                         "100000").stdout.splitlines()])
        expected.append(daily.with_columns(pl.col("day").str.to_date(), pl.lit(f"desk-{name}").alias("producer")))
    want = (pl.concat(expected).group_by("day", "model", "producer")
            .agg(pl.col(c).sum() for c in ("calls", "output_tokens", "total_tokens")).sort("day", "model", "producer"))

    spec = importlib.util.spec_from_file_location("dask_usage", ROOT / "examples" / "dask_usage.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
            mp.setenv(k, v)  # the workers (forked from here) read the AWS environment, as on a cluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            got = recipe.usage_by_producer(f"s3://{bucket}/lab", client)
    assert got.height == want.height > 0
    assert got.select(want.columns).equals(want)


def test_tables_over_the_union_of_producers_are_the_same_on_every_machine(endpoint: str, tmp_path: Path) -> None:
    """Two producers push and pull each other; each builds the tables over the union (its log and
    the mirror) and both get the same rows in the same order. The last producer in the order
    growing is merged incrementally, another growing rebuilds; either equals a full build."""
    from test_daemon import call, record

    def sessions(env: dict[str, str], tag: str, n: int) -> None:
        """``n`` sessions of calls of this producer's own (ids no other producer has)."""
        folder = tmp_path / f"{tag}-own" / "-work"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            sid = f"{tag}-session-{i}"
            (folder / f"{sid}.jsonl").write_bytes(b"".join(
                record(sid, f"{tag}u{i}{k}", f"task {k}") + call(sid, f"{tag}a{i}{k}", f"msg_{tag}_{i}_{k}", 10 + k)
                for k in range(3)))
        run(env, "ingest", "sessions", str(tmp_path / f"{tag}-own"))

    bucket = new_bucket(endpoint)
    envs = {}
    for name, n in (("a", 2), ("b", 3)):
        envs[name] = env = _workspace(tmp_path, name, endpoint)
        sessions(env, name, n)
        run(env, "remote", "add", "team", f"s3://{bucket}", "--producer", f"desk-{name}")
        run(env, "push")
    for env in envs.values():
        run(env, "pull")

    def union(env: dict[str, str], table: str = "api_calls") -> list[dict]:
        return [json.loads(x) for x in run(env, "show", table, "--union", "--json", "--columns", "all",
                                           "--limit", "100000").stdout.splitlines()]

    def own(env: dict[str, str]) -> list[dict]:
        return [json.loads(x) for x in run(env, "show", "api_calls", "--json", "--columns", "all",
                                           "--limit", "100000").stdout.splitlines()]

    on_a, on_b = union(envs["a"]), union(envs["b"])
    assert on_a == on_b and len(on_a) == len(own(envs["a"])) + len(own(envs["b"]))
    assert sorted(r["message_id"] for r in on_a) == sorted(r["message_id"] for r in own(envs["a"]) + own(envs["b"]))
    assert union(envs["a"], "sessions") == union(envs["b"], "sessions")

    # the last producer (desk-b) grows: merged; then the first (desk-a): built again
    for grower, action in (("b", "updated"), ("a", "built")):
        env = envs[grower]
        sessions(env, f"{grower}2", 1)
        run(env, "push")
        other = envs["a" if grower == "b" else "b"]
        run(other, "pull")
        outcomes = [json.loads(x) for x in run(other, "rebuild", "usage", "--union", "--json").stdout.splitlines()]
        assert outcomes[0]["action"] == action, (grower, outcomes)
        merged = union(other)
        run(other, "rebuild", "usage", "--union", "--full")
        assert union(other) == merged  # incremental equals full
    bad = run(envs["a"], "rebuild", "--union", "--as-of", "3", check=False)
    assert bad.returncode == 2 and b"--union and --as-of" in bad.stderr


def test_a_deleted_object_stops_a_pull_naming_it_and_what_came_before_is_kept(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    a, b = _workspace(tmp_path, "a", endpoint), _workspace(tmp_path, "b", endpoint)
    _ingest(a, tmp_path, "a")
    run(a, "remote", "add", "team", f"s3://{bucket}")
    run(a, "push")
    first_lines = (Path(a["CHRONICLE_ROOT"]) / "data" / "log" / "MANIFEST").read_bytes()
    before = set(_keys(endpoint, bucket))
    _ingest(a, tmp_path, "a-later")
    run(a, "push")
    later = sorted(k for k in set(_keys(endpoint, bucket)) - before if "/segments/" in k)
    _s3(endpoint).delete_object(Bucket=bucket, Key=later[0])
    run(b, "remote", "add", "team", f"s3://{bucket}")
    short = run(b, "pull", check=False)
    assert short.returncode == 3 and later[0].split("/", 1)[1].encode() in short.stderr and b"missing" in short.stderr
    mirror = Path(b["CHRONICLE_ROOT"]) / "data" / "remotes" / "team" / _producer(a)
    assert (mirror / "MANIFEST").read_bytes() == first_lines  # the lines before it, whole
    assert b"ok:" in run(b, "verify").stdout


def test_credentials_the_store_refuses_are_a_clear_error(tmp_path: Path) -> None:
    key_id, secret = "AKIA" + "EXPIRED00000000", "an-expired-secret-0042"
    with moto_server(check_credentials=True) as strict:
        env = _workspace(tmp_path, "a", strict)
        refused = run({**env, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret},
                      "remote", "add", "team", "s3://any-bucket", check=False)
    assert refused.returncode == 3 and b"access denied" in refused.stderr and b"credentials" in refused.stderr
    assert key_id.encode() not in refused.stderr and secret.encode() not in refused.stderr  # never echoed
    assert run(env, "remote", "list").stdout.startswith(b"no remotes")


def test_two_producers_pushing_at_once_never_touch_each_other(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    envs = []
    for name in ("a", "b"):
        env = _workspace(tmp_path, name, endpoint)
        for i in range(3):
            _ingest(env, tmp_path, f"{name}{i}")
        run(env, "remote", "add", "team", f"s3://{bucket}", "--producer", f"desk-{name}")
        envs.append(env)
    procs = [subprocess.Popen([sys.executable, "-m", "chronicle", "push"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for env in envs]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    c = _workspace(tmp_path, "c", endpoint)
    run(c, "remote", "add", "team", f"s3://{bucket}")
    assert sorted(json.loads(x)["producer"] for x in run(c, "pull", "--json").stdout.splitlines()) == ["desk-a", "desk-b"]
    verified = run(c, "verify").stdout
    assert b"team/desk-a: ok" in verified and b"team/desk-b: ok" in verified
    for env, name in zip(envs, ("a", "b")):
        mirror = Path(c["CHRONICLE_ROOT"]) / "data" / "remotes" / "team" / f"desk-{name}" / "MANIFEST"
        assert mirror.read_bytes() == (Path(env["CHRONICLE_ROOT"]) / "data" / "log" / "MANIFEST").read_bytes()


def test_credentials_from_an_aws_profile(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    env = _workspace(tmp_path, "a", endpoint)
    home = Path(env["HOME"])
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        f"[lab]\naws_access_key_id = {CREDENTIALS['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {CREDENTIALS['AWS_SECRET_ACCESS_KEY']}\n")
    profile = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    none = run(profile, "remote", "add", "team", f"s3://{bucket}", check=False)
    assert none.returncode == 3 and b"no AWS credentials" in none.stderr
    run({**profile, "AWS_PROFILE": "lab"}, "remote", "add", "team", f"s3://{bucket}")
    _ingest(env, tmp_path, "a")
    assert json.loads(run({**profile, "AWS_PROFILE": "lab"}, "push", "--json").stdout)["lines"] >= 1
    missing = run({**profile, "AWS_PROFILE": "nope"}, "push", check=False)
    assert missing.returncode == 3 and b"AWS_PROFILE='nope'" in missing.stderr
