"""chronicle.toml: decoded once into typed structs; a wrong key or value is refused by name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chronicle import config
from chronicle.experiment import providers

from conftest import run_cli


@pytest.mark.parametrize("text, says", [
    ("[watch]\nseal_mbb = 3\n", "[watch] unknown key `seal_mbb` (known: claude_roots, codex_roots, git_repos, seal_mb"),
    ("[watch]\nseal_mb = -1\n", "[watch] seal_mb: expected `float` > 0.0"),
    ('[watch]\nslow_projections = "episodes"\n', "[watch] slow_projections: expected `array`, got `str`"),
    ('[providers.openrouter]\nbase_urll = "x"\n', "[providers.openrouter] unknown key `base_urll`"),
    ('[providers.openrouter]\nconcurrency = "8"\n', "[providers.openrouter] concurrency: expected `int | null`"),
    ("[wacth]\n", "unknown key `wacth` (known: providers, projects, watch, projections, run, quality)"),
    ("[projections]\npaths = [1]\n", "[projections] paths[0]: expected `str`, got `int`"),
    ("providers = 3\n", "[providers] must hold [providers.NAME] tables"),
    ("[watch\n", "not valid TOML"),
])
def test_a_wrong_key_or_value_is_refused_naming_the_file_and_key(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "chronicle.toml").write_text(text)
    with pytest.raises(config.ConfigError) as caught:
        config.load(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'chronicle.toml'}: {says}" or says in str(caught.value)
    assert str(tmp_path / "chronicle.toml") in str(caught.value)
    # and on the command line: one line, exit 2, for any verb that reads the workspace
    proc = run_cli("tables", root=tmp_path)
    assert proc.returncode == 2 and says in proc.stderr.decode() and b"Traceback" not in proc.stderr


def test_no_file_means_every_default_and_the_reference_lists_every_key(tmp_path: Path) -> None:
    c = config.load(tmp_path)
    assert c.watch.seal_mb == 16 and c.watch.slow_projections == ["conversations", "episodes"]
    assert c.providers == {} and c.projections.paths == [] and c.run.provider is None
    reference = config.reference()
    for struct in (config.ProviderTable, config.WatchTable, config.ProjectionsTable, config.RunTable):
        for field in struct.__struct_fields__:
            assert f"\n{field}" in reference or reference.startswith(field), field
    assert "seal_mb = 16  # seal the WAL" in reference


def test_a_provider_sets_its_kind_and_every_kind_comes_from_one_registry() -> None:
    c = config.decode(b'[providers.cheap]\nkind = "echo"\nconcurrency = 3\n'
                      b'[providers.local]\nmax_tokens = 64\n'
                      b'[providers.router]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "ROUTER_KEY"\n')
    found = providers.configured(c)
    assert (found["cheap"].kind, found["cheap"].concurrency) == ("echo", 3)
    assert (found["local"].kind, found["local"].max_tokens, found["local"].concurrency) == ("local", 64, 2)
    assert found["router"].kind == "openai"
    assert set(providers.KINDS) >= {"echo", "openai", "local"}

    async def one_call() -> str:
        async with providers.open_client(found["cheap"], 1) as client:
            return (await client.complete("m", "hello there")).text

    assert "hello there" in asyncio.run(one_call())
    with pytest.raises(config.ConfigError, match=r"\[providers.x\] kind 'carrier-pigeon' is not one of echo, local, openai"):
        providers.configured(config.decode(b'[providers.x]\nkind = "carrier-pigeon"\n'))
    with pytest.raises(config.ConfigError, match=r"\[providers.x\] needs base_url"):
        providers.configured(config.decode(b'[providers.x]\nconcurrency = 2\n'))
    with pytest.raises(ValueError, match="registered twice"):
        providers.register_kind("echo")(lambda p, n: None)  # type: ignore[arg-type,return-value]


def test_the_readme_reference_is_the_one_the_structs_print() -> None:
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    assert f"```toml\n{config.reference().rstrip()}\n```" in readme, "README: paste config.reference() again"


def test_init_writes_every_setting_commented_and_the_provider_example_works_uncommented(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    proc = run_cli("--root", str(ws), "init", root=tmp_path)
    assert proc.returncode == 0 and b"next:" in proc.stdout and b"report daily" in proc.stdout
    text = (ws / "chronicle.toml").read_text()
    assert config.load(ws) == config.Config(), "all commented out: the defaults"
    for struct in (config.ProviderTable, config.WatchTable, config.ProjectionsTable, config.RunTable):
        for field in struct.__struct_fields__:
            assert f"# {field}" in text, field
    lines = text.splitlines()
    start = lines.index("# [providers.openrouter]")
    lines[start:start + 3] = [line[2:] for line in lines[start:start + 3]]
    (ws / "chronicle.toml").write_text("\n".join(lines) + "\n")
    router = providers.configured(config.load(ws))["openrouter"]
    assert (router.kind, router.base_url, router.api_key_env) == ("openai", "https://openrouter.ai/api/v1",
                                                                  "OPENROUTER_API_KEY")
    again = run_cli("--root", str(ws), "init", root=tmp_path)
    assert again.returncode == 0 and b"already initialised" in again.stdout and b"wrote" not in again.stdout
    assert "[providers.openrouter]\n" in (ws / "chronicle.toml").read_text(), "never overwritten"
