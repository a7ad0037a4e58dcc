"""What a secret looks like: named rules, each one regular expression.

Two sources. The keys this field leaks most are chronicle's own rules
(Anthropic, OpenAI, OpenRouter and GitHub keys, whole private key blocks,
bearer tokens, ``KEY=value`` lines of ``.env`` files). The rest are the
patterns of Yelp's ``detect-secrets`` plugins that recognise a value by its
shape (AWS, GitLab, Slack, Stripe, npm, PyPI, JWTs, URLs with a password,
...). Left out: its entropy and keyword plugins (transcripts are full of
hashes and of the word "password") and those whose patterns only work with
look-behind (IBM, Cloudant, SoftLayer) or that name no secret (public IPs).

Every pattern is written so that both Python's ``re`` (which finds where a
value is) and the Rust engine behind Polars (which picks out, fast and in
parallel, the few lines that hold anything at all) accept it. A rule whose
pattern has a group named ``value`` masks only that group (``API_KEY=`` stays
readable); otherwise the whole match is the secret. ``VERSION`` changes with
any rule, so ``chronicle secrets scan`` knows to read old events again.
"""

from __future__ import annotations

import base64
import hashlib
import re
import dataclasses
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: str
    source: str = "chronicle"
    #: A match whose secret has fewer digits is not one (``PASSWORD=os.environ``).
    min_digits: int = 0
    #: A looser pattern the Rust engine finds fast (one with a literal to look for first);
    #: a value it does not match, ``pattern`` does not either.
    quick: str | None = None
    #: ``pattern`` finds base64 text to decode and look into with the other rules (see ``BASE64``).
    decodes: bool = False

    @property
    def prefilter(self) -> str:
        return _ascii(self.quick or self.pattern.replace("(?P<value>", "(?:"))

    @cached_property
    def compiled(self) -> re.Pattern[bytes]:
        return re.compile(self.pattern.encode())



_KEY_CHARS = r"[A-Za-z0-9_\-]"
_ENV_NAME = r"[A-Z][A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)[A-Z0-9_]*"

#: A match's secret: its ``value`` group where the rule has one, else the whole match.
def value_span(rule: Rule, m: re.Match) -> tuple[int, int]:
    return m.span("value") if "value" in rule.compiled.groupindex else m.span()


OWN = (
    Rule("anthropic-key", rf"\bsk-ant-{_KEY_CHARS}{{20,}}"),
    Rule("openrouter-key", rf"\bsk-or-{_KEY_CHARS}{{20,}}"),
    Rule("openai-key", rf"\bsk-(?:proj|svcacct|admin)-{_KEY_CHARS}{{20,}}|\bsk-[A-Za-z0-9]{{48}}\b"),
    Rule("github-pat", r"\bgithub_pat_[A-Za-z0-9_]{22,}"),
    Rule("private-key", r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)"
                        r"(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$)"),
    Rule("bearer-token", r"\b[Bb]earer[ \t]+(?P<value>[A-Za-z0-9\-._~+/]{20,}=*)"),
    # a KEY=value line of an .env file, as read (a newline) or inside JSON (\n)
    Rule("env-assignment", rf"(?:\A|\\n|[\s\"'])(?:export[ \t]+)?{_ENV_NAME}[ \t]*=[ \t]*['\"]?"
                           r"(?P<value>[^\s'\"\\#$(){}\[\]<>,;]{8,})", min_digits=1,
         quick=r"(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)[A-Z0-9_]*[ \t]*="),
)

# detect-secrets plugin -> rule name (a plugin's patterns are taken as it ships them,
# with a trailing look-ahead, which only trims a match, dropped).
_DETECT_SECRETS = {
    "AWSKeyDetector": "aws-key",
    "AzureStorageKeyDetector": "azure-storage-key",
    "BasicAuthDetector": "url-password",
    "DiscordBotTokenDetector": "discord-token",
    "GitHubTokenDetector": "github-token",
    "GitLabTokenDetector": "gitlab-token",
    "JwtTokenDetector": "jwt",
    "MailchimpDetector": "mailchimp-key",
    "NpmDetector": "npm-token",
    "OpenAIDetector": "openai-key-legacy",
    "PypiTokenDetector": "pypi-token",
    "SendGridDetector": "sendgrid-key",
    "SlackDetector": "slack-token",
    "SquareOAuthDetector": "square-secret",
    "StripeDetector": "stripe-key",
}
#: Looser patterns for the Rust engine where a plugin's own starts with something common
#: (npm's ``//.+/`` is any URL: alone it took a fifth of the scan).
_QUICK = {"npm-token": r"/:_authToken="}
# Also left out: TelegramBotTokenDetector (digits, a colon, 35 characters: no literal to look
# for first, so it alone took longer than every other rule together on real transcripts).


def _from_detect_secrets() -> tuple[Rule, ...]:
    """The plugins' rules, from a cache kept beside the user's other caches when the installed
    detect-secrets is the one it was made from: importing detect-secrets (it brings requests)
    and compiling its plugins cost every masking command 0.15 s."""
    import importlib.util
    import json
    import os
    from pathlib import Path

    spec = importlib.util.find_spec("detect_secrets")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("detect-secrets is not installed (a dependency of chronicle)", name="detect_secrets")
    installed = Path(spec.origin).parent
    stamp = f"{installed}:{os.stat(installed / 'plugins').st_mtime_ns}:" + hashlib.sha256(
        json.dumps([_DETECT_SECRETS, _QUICK], sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chronicle" / "detect-secrets-rules.json"
    try:
        saved = json.loads(cache.read_text())
        if saved["stamp"] == stamp:
            return tuple(Rule(**r) for r in saved["rules"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    rules = _read_plugins()
    try:  # a cache: where it cannot be written, the next command reads the plugins again
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"stamp": stamp, "rules": [dataclasses.asdict(r) for r in rules]}))
        os.replace(tmp, cache)
    except OSError:
        pass
    return rules


def _read_plugins() -> tuple[Rule, ...]:
    from importlib.metadata import version

    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    by_class = {cls.__name__: cls for cls in get_mapping_from_secret_type_to_class().values()}
    rules = []
    for plugin, name in _DETECT_SECRETS.items():
        patterns = [re.sub(r"\(\?!\\w\)$", "", r.pattern) for r in by_class[plugin].denylist]
        rules.append(Rule(name, "|".join(f"(?:{p})" for p in patterns),
                          f"detect-secrets {version('detect-secrets')}: {plugin}", quick=_QUICK.get(name)))
    return tuple(rules)


def base64_forms(literal: bytes) -> list[str]:
    """The base64 text that ``literal`` becomes wherever it lies in encoded bytes: one form per
    alignment (of three), each only the characters no neighbouring byte changes."""
    forms = []
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + literal + bytes(3))
        first = -(-8 * shift // 6)  # the first character made of the literal's bits alone
        last = 8 * (shift + len(literal)) // 6  # one past the last
        forms.append(encoded[first:last].decode())
    return forms


#: What a secret inside base64 starts with: its forms are what the Rust engine looks for first.
_ENCODED_LITERALS = (b"sk-ant-", b"sk-or-", b"sk-proj-", b"sk-svcacct-", b"sk-admin-", b"ghp_", b"gho_", b"ghu_",
                     b"ghs_", b"ghr_", b"github_pat_", b"AKIA", b"PRIVATE KEY", b"xoxb-", b"xoxp-", b"xoxa-",
                     b"sk_live_", b"rk_live_", b"glpat-", b"npm_", b"pypi-", b"Bearer ", b"KEY=", b"TOKEN=",
                     b"SECRET=", b"PASSWORD=")
#: Base64 text (a file a tool read encoded, an attachment, ``base64 .env``; wrapped lines too,
#: as read or as JSON writes them) holding one of those: decoded, and the other rules run over it.
#: (Its pattern, with a look-behind so a run never starts at the n of a JSON \n, is Python's alone:
#: the Rust engine runs ``quick``.)
BASE64 = Rule("base64", r"(?<!\\)[A-Za-z0-9+/]{16,}={0,2}(?:(?:\\n|\n)[A-Za-z0-9+/]{4,}={0,2})*",
              quick="|".join(re.escape(f) for lit in _ENCODED_LITERALS for f in base64_forms(lit)), decodes=True)

RULES: tuple[Rule, ...] = OWN + _from_detect_secrets() + (BASE64,)
BY_NAME = {r.name: r for r in RULES}
VERSION = hashlib.sha256("\n".join(f"{r.name}\t{r.pattern}" for r in RULES).encode()).hexdigest()[:16]


def _ascii(pattern: str) -> str:
    """``pattern`` for the Rust engine, with ``\\b``, ``\\s``, ``\\d`` and ``\\w`` meaning what they
    mean to Python's ``re`` on bytes (ASCII): Rust's Unicode ones make it fall back to a
    slower engine on text that is not all ASCII."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            e = pattern[i + 1]
            ascii_class = {"s": r"\t\n\x0B\x0C\r ", "d": "0-9", "w": "0-9A-Za-z_"}.get(e)
            if e == "b":
                out.append(r"(?-u:\b)")
            elif ascii_class:
                out.append(ascii_class if in_class else f"[{ascii_class}]")
            else:
                out.append(c + e)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)
