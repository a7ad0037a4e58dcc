"""Token usage by day x model x producer, over every producer in a bucket, on a Dask cluster.

Each worker opens one producer's log where it lies (its MANIFEST and segment files on
S3-compatible storage, through chronicle's storage contract: no copy, redactions in force)
and runs chronicle's own usage projection over it with Polars; the client sums what the
workers return. The same code runs on a laptop (a ``LocalCluster``, the default) and on a
real cluster (``--scheduler tcp://HOST:8786``), whose workers need chronicle installed and
the AWS environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``
for a store other than AWS).

    python examples/dask_usage.py s3://research-logs/chronicle
    python examples/dask_usage.py s3://research-logs/chronicle --scheduler tcp://10.0.0.5:8786 --json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import polars as pl

SUMS = ["calls", "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
        "total_tokens"]


def producer_usage(url: str, producer: str, endpoint: str | None = None) -> pl.DataFrame:
    """One producer's ``usage_daily``, built by chronicle's projection from its log on the store."""
    from chronicle.projections import usage
    from chronicle.store import EventLog
    from chronicle.store.object_storage import ObjectStorage, s3_store

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "log"  # a reader's own folder: the log's commits and files stay on the store
        EventLog.init(local).close()
        where = f"{url}/producers/{producer}"
        storage = ObjectStorage(s3_store(where, endpoint), Path(tmp) / "cache", where=where)
        with EventLog(local, storage) as log:
            snap = log.snapshot()
            daily = usage.build({t: snap.frame(t) for t in usage.INPUTS})["usage_daily"]
    return daily.with_columns(pl.lit(producer).alias("producer"))


def usage_by_producer(url: str, client, endpoint: str | None = None) -> pl.DataFrame:
    """Day x model x producer sums of every producer under ``url``, one Dask task per producer."""
    from chronicle.remote import RemoteConfig, producer_ids

    producers = producer_ids(RemoteConfig(url, endpoint))
    futures = client.map(producer_usage, [url] * len(producers), producers, [endpoint] * len(producers))
    parts = [p for p in client.gather(futures) if p.height]
    if not parts:
        return pl.DataFrame(schema={"day": pl.Date, "model": pl.String, "producer": pl.String,
                                    **{c: pl.Int64 for c in SUMS}})
    return (pl.concat(parts).group_by("day", "model", "producer").agg(pl.col(c).sum() for c in SUMS)
            .sort("day", "model", "producer"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", help="s3://bucket[/prefix], as given to `chronicle remote add`")
    ap.add_argument("--scheduler", help="a Dask scheduler's address (default: a LocalCluster on this machine)")
    ap.add_argument("--endpoint", help="an S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    ap.add_argument("--json", action="store_true", help="JSON Lines instead of a table")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    cluster = None if args.scheduler else LocalCluster(n_workers=2, threads_per_worker=1)
    with Client(args.scheduler or cluster) as client:
        table = usage_by_producer(args.url, client, args.endpoint)
    if cluster is not None:
        cluster.close()
    if args.json:
        table.write_ndjson(sys.stdout)
    else:
        with pl.Config(tbl_rows=-1):
            print(table)


if __name__ == "__main__":
    main()
