"""`chronicle publish`: the projection tables on a remote, as Delta Lake tables engines read.

Each table goes to ``<remote>/tables/<producer>/<table>`` as a Delta table
(``deltalake``, which speaks S3's conditional writes as the remote's own
commits do): one commit per publish that replaces its rows (``overwrite``), the
log's seq and the producer in the commit's metadata, partitioned by what
readers filter on (``PARTITIONS``). Spark, Trino, DuckDB and Polars read them
as they are, and Delta's time travel gives every earlier publish. The sealed
segments stay plain Parquet (``chronicle push``).

What leaves the machine is masked: every text and bytes cell goes through the
workspace's masker first (``[secret:RULE]``), as the viewer and exports do.
Credentials come from the standard AWS environment, never written anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chronicle.errors import UsageError
from chronicle.remote import RemoteConfig, claim, producer, remote
from chronicle.store.object_storage import remote_error, s3_settings
from chronicle.workspace import Workspace

#: Table -> the columns readers filter it on (a Delta partition each); the rest are one partition.
PARTITIONS: dict[str, tuple[str, ...]] = {"usage_daily": ("agent",), "api_calls": ("agent",), "documents": ("stage",)}


@dataclass
class Published:
    remote: str
    producer: str
    seq: int
    tables: dict[str, dict] = field(default_factory=dict)  # table -> {"rows", "version", "uri"}


def storage_options(config: RemoteConfig) -> dict[str, str]:
    """What deltalake needs beyond the AWS environment it reads itself: the endpoint, plain HTTP
    for a local one, the region, and conditional writes for its commits."""
    where = s3_settings(config.endpoint)
    options = {"aws_conditional_put": "etag"}
    if where.endpoint:
        options["AWS_ENDPOINT_URL"] = where.endpoint
    if where.allow_http:
        options["AWS_ALLOW_HTTP"] = "true"
    if where.region:
        options["AWS_REGION"] = where.region
    return options


def table_uri(config: RemoteConfig, pid: str, table: str) -> str:
    return f"{config.url}/tables/{pid}/{table}"


def publish(ws: Workspace, name: str | None = None, tables: list[str] | None = None, on_table=None) -> Published:
    from deltalake import CommitProperties, write_deltalake

    from chronicle.projection import Engine, read_tables
    from chronicle.secrets.mask import Masker

    name, config = remote(ws.data, name)
    me = producer(ws.data)
    claim(config, me)
    snap = ws.open_log().snapshot()
    engine = Engine.of(ws)
    engine.run(snap)  # current first, as every reader
    every = sorted(t for p in engine.projections.values() for t in p.outputs)
    unknown = sorted(set(tables or ()) - set(every))
    if unknown:
        raise UsageError(f"no table {unknown[0]!r} (tables: {', '.join(every)})")
    names = tables or every
    frames, committed = read_tables(ws.tables_dir, names)
    masker = Masker.of(ws)
    options = storage_options(config)
    done = Published(name, me.id, snap.head)
    for table in names:
        df = masker.frame(frames[table])
        df = df.with_columns(_delta_types(df))
        uri = table_uri(config, me.id, table)
        parts = [c for c in PARTITIONS.get(table, ()) if c in df.columns]
        try:
            write_deltalake(uri, df.to_arrow(), mode="overwrite", schema_mode="overwrite", partition_by=parts or None,
                            storage_options=options,
                            commit_properties=CommitProperties(custom_metadata={
                                "chronicle.seq": str(committed.seq(table) or snap.head),
                                "chronicle.producer": me.id}))
            version = _version(uri, options)
        except Exception as exc:  # deltalake's and the store's errors: one line naming the table's URI
            raise remote_error(f"publishing {uri}", exc) from None
        done.tables[table] = {"rows": df.height, "version": version, "uri": uri, "partitioned_by": parts}
        if on_table:
            on_table(table)
    return done


def _delta_types(df):
    """Casts for the columns whose Polars type Delta has none for: a column of nulls alone is text,
    unsigned integers are signed 64-bit, categoricals text."""
    import polars as pl

    casts = []
    for c, t in df.schema.items():
        if t == pl.Null or isinstance(t, (pl.Categorical, pl.Enum)):
            casts.append(pl.col(c).cast(pl.String))
        elif t in (pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64):
            casts.append(pl.col(c).cast(pl.Int64))
    return casts


def _version(uri: str, options: dict[str, str]) -> int:
    from deltalake import DeltaTable

    return DeltaTable(uri, storage_options=options).version()


__all__ = ["PARTITIONS", "Published", "publish", "storage_options", "table_uri"]
