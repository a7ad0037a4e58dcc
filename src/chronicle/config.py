"""``chronicle.toml``, decoded once into typed structs.

Every section and key is declared here, with its type, default and meaning;
the README's configuration reference is printed from these structs
(``chronicle config --help`` shows the same). An unknown section or key, or a
value of the wrong type, is refused with the file, the key and what was
expected: a typo never silently does nothing. The file is optional; every key
has a default.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from chronicle.errors import UsageError

CONFIG_NAME = "chronicle.toml"

class ConfigError(UsageError, ValueError):
    """chronicle.toml is unreadable or has a wrong value (names the key)."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


PosFloat = Annotated[float, msgspec.Meta(gt=0)]
PosInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class ProviderTable(_Section):
    """[providers.NAME]: an LLM endpoint `chronicle run --provider NAME` calls."""

    kind: Annotated[str | None, _doc(
        'which client: "openai" (any OpenAI-compatible server: OpenRouter, vLLM, llama.cpp), "echo" (offline) '
        'or "local" (the bundled Gemma 3 270M server); default "openai", or the built-in of that name')] = None
    base_url: Annotated[str | None, _doc('the server, e.g. "https://openrouter.ai/api/v1" (kind "openai" needs it)')] = None
    api_key_env: Annotated[str | None, _doc("the environment variable holding the key (never the key itself)")] = None
    requests_per_minute: Annotated[PosFloat | None, _doc("at most this many calls a minute")] = None
    concurrency: Annotated[PosInt | None, _doc("calls in flight at once")] = None
    timeout_seconds: Annotated[PosFloat | None, _doc("per call")] = None
    max_tokens: Annotated[PosInt | None, _doc("per response")] = None
    temperature: Annotated[NonNegFloat | None, _doc("sampling temperature")] = None
    max_attempts: Annotated[PosInt | None, _doc("attempts per call, the first included")] = None
    backoff_seconds: Annotated[PosFloat | None, _doc("first retry delay (doubles)")] = None
    max_retry_after_seconds: Annotated[PosFloat | None, _doc("a server's Retry-After is cut to this")] = None


class WatchTable(_Section):
    """[watch]: what `chronicle watch` follows, and how often it seals and projects."""

    claude_roots: Annotated[list[str] | None, _doc(
        "Claude Code projects folders (default: ~/.claude/projects, ~/.config/claude/projects, "
        "$CLAUDE_CONFIG_DIR)")] = None
    codex_roots: Annotated[list[str] | None, _doc(
        "Codex CLI sessions folders (default: $CODEX_HOME/sessions, else ~/.codex/sessions)")] = None
    git_repos: Annotated[list[str], _doc("git repositories whose commits are recorded")] = []
    seal_mb: Annotated[PosFloat, _doc("seal the WAL into Parquet once it holds this many MB")] = 16
    seal_seconds: Annotated[PosFloat, _doc("or this long after the last seal")] = 300
    full_pass_seconds: Annotated[PosFloat, _doc("a full scan of every root this often")] = 300
    debounce_ms: Annotated[PosFloat, _doc("file events closer than this are one pass")] = 200
    slow_projections: Annotated[list[str], _doc("projections brought up to date at most every "
                                                "slow_projection_seconds (the rest after every pass)")] = (
        msgspec.field(default_factory=lambda: ["conversations", "episodes"]))
    slow_projection_seconds: Annotated[PosFloat, _doc("see slow_projections")] = 30


class ProjectionsTable(_Section):
    """[projections]: the workspace's own projection modules."""

    paths: Annotated[list[str], _doc("folders of projection modules, relative to the workspace")] = []
    part_rows: Annotated[PosInt, _doc("a table of more rows is written in parts of this many (an update rewrites "
                                      "only the parts it changes)")] = 100_000


class RunTable(_Section):
    """[run]: defaults of `chronicle run`."""

    provider: Annotated[str | None, _doc("the provider used when --provider is not given")] = None


Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
ProjectStatus = Literal["active", "paused", "archived", "excluded"]


class ProjectTable(_Section):
    """[projects.ID]: a project of the `projects` table (inferred from the sessions where absent)."""

    name: Annotated[str | None, _doc("its name (default: the ID)")] = None
    roots: Annotated[list[str], _doc("folders its sessions work in (a session's cwd inside one is the project's)")] = []
    repos: Annotated[list[str], _doc("git repositories of its commits (default: those its roots lie in)")] = []
    status: Annotated[ProjectStatus, _doc('"active", "paused", "archived" or "excluded" (left out of exports)')] = "active"


class QualityTable(_Section):
    """[quality]: the bars of `chronicle report quality` and `chronicle review`."""

    bar: Annotated[Fraction, _doc("a project's session-commit link precision must reach this to be included")] = 0.7
    review_below: Annotated[Fraction, _doc("links and reactions of less confidence go to the review queue")] = 0.7


class Config(_Section):
    providers: dict[str, ProviderTable] = {}
    projects: dict[str, ProjectTable] = {}
    watch: WatchTable = WatchTable()
    projections: ProjectionsTable = ProjectionsTable()
    run: RunTable = RunTable()
    quality: QualityTable = QualityTable()


def load(root: Path) -> Config:
    """The workspace's configuration (defaults when it has no chronicle.toml)."""
    path = root / CONFIG_NAME
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):  # no file, or no workspace there (said by whoever needs one)
        return Config()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return decode(data, path)


def decode(data: bytes, path: Path | str = CONFIG_NAME) -> Config:
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    # Each provider apart, so that an error names its [providers.NAME].
    table = raw.pop("providers", {})
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"{path}: [providers] must hold [providers.NAME] tables")
    providers = {name: _convert(value, ProviderTable, path, ["providers", name]) for name, value in table.items()}
    table = raw.pop("projects", {})
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"{path}: [projects] must hold [projects.ID] tables")
    projects = {name: _convert(value, ProjectTable, path, ["projects", name]) for name, value in table.items()}
    return msgspec.structs.replace(_convert(raw, Config, path, []), providers=providers, projects=projects)


def _convert(value: dict, struct: type, path: Path | str, within: list[str]):
    try:
        return msgspec.convert(value, struct)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_readable(str(exc), within)}") from None


def _readable(message: str, within: list[str]) -> str:
    """msgspec's "Object contains unknown field `x` - at `$.watch`" as "[watch] unknown key `x` (known: ...)"."""
    text, _, where = message.partition(" - at `$")
    parts = within + re.findall(r"[^.\[\]`]+", where)
    key = parts.pop() if parts and not text.startswith("Object contains unknown field") else ""
    if key.isdigit() and parts:  # an item of a list: paths[0]
        key = f"{parts.pop()}[{key}]"
    text = text.replace("Object contains unknown field", "unknown key")
    if key:
        text = f"{key}: {text[0].lower()}{text[1:]}"
    place = f"[{'.'.join(parts)}] " if parts else ""
    hint = f" (known: {', '.join(_known_keys(parts))})" if text.startswith("unknown key") else ""
    return f"{place}{text}{hint}"


def _known_keys(parts: list[str]) -> list[str]:
    struct: type = Config
    for i, part in enumerate(parts):
        if i == 1 and parts[0] in _NAMED:  # a provider's or a project's own name
            struct = _NAMED[parts[0]]
            continue
        field = {f.name: f for f in msgspec.structs.fields(struct)}.get(part)
        if field is not None and isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
            struct = field.type
    return [f.name for f in msgspec.structs.fields(struct)]


#: Sections made of named tables ([providers.NAME], [projects.ID]), and the struct of each table.
_NAMED: dict[str, type] = {"providers": ProviderTable, "projects": ProjectTable}


def reference() -> str:
    """Every section and key with its default and meaning, read from the structs above."""
    lines = []
    for struct in (ProviderTable, ProjectTable, WatchTable, ProjectionsTable, RunTable, QualityTable):
        lines.append(f"# {struct.__doc__}")
        for field in msgspec.inspect.type_info(struct).fields:
            default = field.default_factory() if field.default_factory is not msgspec.NODEFAULT else field.default
            shown = "" if default in (None, msgspec.NODEFAULT) else f" = {msgspec.json.encode(default).decode()}"
            description = (getattr(field.type, "extra_json_schema", None) or {}).get("description", "")
            lines.append(f"{field.name}{shown}" + (f"  # {description}" if description else ""))
        lines.append("")
    return "\n".join(lines)


def commented_template() -> str:
    """A chronicle.toml with every setting shown and commented out (what ``init`` writes)."""
    lines = ["# chronicle.toml: every setting, commented out, with its default. Uncomment to change one.",
             "# An unknown key is refused by name. Reference: README, section Configuration.", ""]
    for line in reference().splitlines():
        if line.startswith("# ["):
            section = line[2:].split("]", 1)[0] + "]"
            lines += [f"# {line[2:]}", f"# {section.replace('NAME', 'openrouter').replace('.ID', '.myapp')}"]
            if "providers" in section:
                lines += ['# base_url = "https://openrouter.ai/api/v1"', '# api_key_env = "OPENROUTER_API_KEY"']
        elif line:
            lines.append(f"# {line}")
        else:
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
