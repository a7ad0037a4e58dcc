"""`chronicle prices import FILE` and `chronicle prices show`: the price table costs are computed with.

An import is recorded as a ``prices.imported`` event (the table itself, the
file's name and hash), so the tables are priced by it from then on, and a
rebuild as of an earlier seq prices as the table then in force did. Reads
LiteLLM's ``model_prices_and_context_window.json`` (what ccusage uses; offline:
download it yourself) or chronicle's own shape (``projections/claude_prices.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from chronicle.commands.verbs import Verbs
from chronicle.commands.output import out, print_json
from chronicle.errors import EXIT_OK, UsageError
from chronicle.workspace import Workspace

EXAMPLES = """\
examples:
  curl -sO https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json
  chronicle prices import model_prices_and_context_window.json
  chronicle prices show --json
"""
_RATES = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


def from_litellm(data: dict, version: str) -> dict:
    """LiteLLM's per-token costs as chronicle's per-million rates, for Anthropic's Claude models
    (a 1-hour cache write without its own rate is priced at the 5-minute one)."""
    models = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or entry.get("litellm_provider") != "anthropic":
            continue
        model = name.removeprefix("anthropic/")
        if not model.startswith("claude") or "input_cost_per_token" not in entry:
            continue
        per_m = {k: float(entry[k]) * 1e6 if entry.get(k) is not None else None for k in (
            "input_cost_per_token", "output_cost_per_token", "cache_creation_input_token_cost",
            "cache_creation_input_token_cost_above_1hr", "cache_read_input_token_cost",
            "input_cost_per_token_above_200k_tokens", "output_cost_per_token_above_200k_tokens",
            "cache_creation_input_token_cost_above_200k_tokens", "cache_read_input_token_cost_above_200k_tokens")}
        if per_m["output_cost_per_token"] is None:
            continue
        write_5m = per_m["cache_creation_input_token_cost"] or per_m["input_cost_per_token"]
        rates = {"from": "1970-01-01", "input": per_m["input_cost_per_token"],
                 "output": per_m["output_cost_per_token"], "cache_write_5m": write_5m,
                 "cache_write_1h": per_m["cache_creation_input_token_cost_above_1hr"] or write_5m,
                 "cache_read": per_m["cache_read_input_token_cost"] or 0.0}
        for ours, theirs in (("input", "input_cost_per_token"), ("output", "output_cost_per_token"),
                             ("cache_write_5m", "cache_creation_input_token_cost"),
                             ("cache_read", "cache_read_input_token_cost")):
            if per_m[f"{theirs}_above_200k_tokens"] is not None:  # the long-context rate above 200k tokens
                rates[f"{ours}_above_200k"] = per_m[f"{theirs}_above_200k_tokens"]
        models[model] = [rates]
    if not models:
        raise UsageError("no Anthropic Claude models with prices in this file (is it LiteLLM's "
                         "model_prices_and_context_window.json?)")
    return {"version": version, "currency": "USD", "unit": "per million tokens",
            "source": "LiteLLM model_prices_and_context_window.json, imported", "models": models}


def check_table(table: dict, path: Path) -> dict:
    """A table in chronicle's shape, every rate a non-negative number and every date ISO."""
    from datetime import date

    models = table.get("models") if isinstance(table, dict) else None
    if not isinstance(models, dict) or not models or not isinstance(table.get("version"), str):
        raise UsageError(f"{path}: neither LiteLLM's prices nor chronicle's (a \"version\" and \"models\")")
    for model, entries in models.items():
        for i, e in enumerate(entries if isinstance(entries, list) else [None]):
            where = f"{path}: models.{model}[{i}]"
            if not isinstance(e, dict):
                raise UsageError(f"{where}: must be an object with from, {', '.join(_RATES)}")
            try:
                date.fromisoformat(str(e.get("from")))
            except ValueError:
                raise UsageError(f"{where}.from: {e.get('from')!r} is not a date (YYYY-MM-DD)") from None
            for r in (*_RATES, *(f"{r}_above_200k" for r in _RATES if f"{r}_above_200k" in e)):
                if not isinstance(e.get(r), (int, float)) or isinstance(e.get(r), bool) or e[r] < 0:
                    raise UsageError(f"{where}.{r}: {e.get(r)!r} is not a rate (a number, per million tokens)")
    return table


def cmd_import(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.events import PricesImported

    path = Path(args.file)
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if isinstance(data, dict) and "models" in data and "version" in data:
        kind, table = "chronicle", check_table(data, path)
    else:
        kind, table = "litellm", check_table(from_litellm(data, f"litellm-{digest[:12]}"), path)
    event = PricesImported(stream="prices", event_id=f"P{digest}", source=str(path), sha256=digest, format=kind,
                           table_json=json.dumps(table, sort_keys=True))
    with ws.open_log() as log:
        ack = log.append([event])[0]
    summary = {"seq": ack.seq, "format": kind, "models": len(table["models"]), "version": table["version"],
               "already_imported": ack.duplicate}
    if args.json:
        print_json(summary)
    else:
        out(f"{'already imported' if ack.duplicate else 'imported'} {len(table['models'])} models "
            f"({kind}, version {table['version']}) at seq {ack.seq}; tables are priced by it from now on")
    return EXIT_OK


def cmd_show(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.projections.usage import prices_in_force

    table = prices_in_force(ws.open_log().snapshot().frame("prices.imported"))
    if args.json:
        for model, entries in sorted(table["models"].items()):
            for e in entries:
                print_json({"model": model, **e, "table": table["version"]})
        return EXIT_OK
    out(f"price table {table['version']}: {table.get('source', '')}")
    out(f"{'model':<34}{'from':<12}" + "".join(f"{r:>16}" for r in _RATES) + "   (USD per million tokens)")
    for model, entries in sorted(table["models"].items()):
        for e in entries:
            out(f"{model:<34}{e['from']:<12}" + "".join(f"{e[r]:>16,.2f}" for r in _RATES))
    return EXIT_OK


def register(verbs: Verbs) -> None:
    verbs.group("prices", "the price table costs are computed with", "chronicle prices show")
    p = verbs.add("import", cmd_import, "record a price table (LiteLLM's JSON or chronicle's) as a prices.imported "
                  "event; tables are priced by it from then on", "", under="prices", epilog=EXAMPLES)
    p.add_argument("file", metavar="FILE")
    verbs.add("show", cmd_show, "the table in force: imported, else the one shipped", "chronicle prices show --json",
              under="prices")
