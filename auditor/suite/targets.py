"""Targets: the models under audit and the helper models (judge, attacker), from a targets file, from
`--target` options, or as a run recorded them; checked, and built into Target records."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.errors import Issue, SuiteError, UnknownName, UsageError, clip
from auditor.records import Limits, Target
from auditor.suite.files import located, raise_if, validate


def load_targets(path: Path) -> list[Target]:
    """Load and check a targets file; a classifier's template_file is read now, relative to the file."""
    data, issues, offsets, text = validate(path, "targets")
    raise_if(issues)
    found = _target_issues(data["targets"]) + _read_templates(data["targets"], path.parent)
    raise_if([located(path, text, offsets, p, m) for p, m in found])
    return [build_target(t) for t in data["targets"]]


MAX_TEMPLATE_BYTES = 1_000_000
TEMPLATE_SLOTS = ("{behaviour}", "{response}")  # a classifier template must place both


def _read_templates(entries: list[dict[str, Any]], folder: Path) -> list[tuple[str, str]]:
    """Replace each classifier's `template_file` by the `template` it holds; issues for files that cannot serve."""
    found: list[tuple[str, str]] = []
    for i, t in enumerate(entries):
        classifier = t.get("classifier", {})
        if "template_file" not in classifier:
            continue
        where = f"/targets/{i}/classifier/template_file"
        file = folder / classifier["template_file"]
        try:
            if not file.is_file():
                found.append((where, f"{file}: {'no such file' if not file.exists() else 'not a regular file'}"))
                continue
            if file.stat().st_size > MAX_TEMPLATE_BYTES:
                found.append((where, f"{file}: larger than {MAX_TEMPLATE_BYTES:,} bytes; not a prompt template"))
                continue
            template = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            found.append((where, f"{file}: cannot read: {exc}"))
            continue
        missing = [slot for slot in TEMPLATE_SLOTS if slot not in template]
        if missing:
            found.append((where, f"{file}: the template needs {' and '.join(missing)} where the text goes"))
            continue
        rest = {k: v for k, v in classifier.items() if k != "template_file"}
        t["classifier"] = {**rest, "template": template}
    return found


def _target_issues(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Duplicate names, and credentials written into a base_url (they would land in manifests and reports)."""
    from urllib.parse import urlsplit

    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, t in enumerate(entries):
        if t["name"] in seen:
            found.append((f"/targets/{i}/name", f"duplicate target name '{t['name']}'"))
        seen.add(t["name"])
        try:
            credentials = urlsplit(t["base_url"]).username is not None
        except ValueError:
            credentials = False
        if credentials or "@" in t["base_url"].split("//", 1)[-1].split("/", 1)[0]:
            found.append(
                (
                    f"/targets/{i}/base_url",
                    "base_url carries credentials (user:password@host); they would be stored in the archive and "
                    "printed in reports: remove them and give the key with api_key_env",
                )
            )
        found += _header_issues(t, f"/targets/{i}")
    return found


SECRET_HEADER_WORDS = ("authorization", "key", "token", "secret", "password", "cookie")


def _header_issues(t: dict[str, Any], where: str) -> list[tuple[str, str]]:
    """Headers that would store a credential, clash, or an api-key auth without a key."""
    found: list[tuple[str, str]] = []
    for name in t.get("headers", {}):
        if any(word in name.lower() for word in SECRET_HEADER_WORDS):
            message = f"header '{name}' looks like a credential and would be stored in the archive: move it to "
            message += f'headers_env ("{name}": "ENV_VAR_NAME")'
            found.append((f"{where}/headers/{name.replace('~', '~0')}", message))
    clashes = {n.lower() for n in t.get("headers", {})} & {n.lower() for n in t.get("headers_env", {})}
    for name in sorted(clashes):
        found.append((f"{where}/headers_env", f"header '{name}' is set in both headers and headers_env"))
    if t.get("auth") == "api-key" and not t.get("api_key_env"):
        found.append((f"{where}/auth", "auth api-key sends the key from api_key_env, which is not set"))
    return found


def build_target(t: dict[str, Any]) -> Target:
    """Make a Target record from a checked targets-file entry."""
    limits = t.get("limits", {})
    default = Limits()
    return Target(
        name=t["name"],
        base_url=t["base_url"].rstrip("/"),
        model=t["model"],
        api_key_env=t.get("api_key_env"),
        params=tuple(sorted(t.get("params", {}).items())),
        system_prompt=t.get("system_prompt"),
        limits=Limits(
            concurrency=int(limits.get("concurrency", default.concurrency)),
            timeout_s=float(limits.get("timeout_s", default.timeout_s)),
            max_retries=int(limits.get("max_retries", default.max_retries)),
            requests_per_minute=limits.get("requests_per_minute"),
            tokens_per_minute=limits.get("tokens_per_minute"),
        ),
        facts=tuple(sorted(t.get("facts", {}).items())),
        classifier=_classifier(t.get("classifier")),
        headers=tuple(sorted(t.get("headers", {}).items())),
        headers_env=tuple(sorted(t.get("headers_env", {}).items())),
        api_version=t.get("api_version"),
        auth=t.get("auth", "bearer"),
    )


def _classifier(c: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """A checked classifier entry (its template already read from any template_file) with defaults filled in."""
    from auditor.criteria.rubrics import CLASSIFIER_MAX_TOKENS

    if not c:
        return ()
    settings: dict[str, Any] = {
        "type": c["type"],
        "max_tokens": int(c.get("max_tokens", CLASSIFIER_MAX_TOKENS[c["type"]])),
    }
    if c["type"] == "completion":
        settings |= {"template": c["template"], "yes": c.get("yes", "harmful")}
    return tuple(sorted(settings.items()))


_OPTION_KEYS = ("name", "base_url", "model", "api_key_env", "system_prompt", "api_version", "auth")
_OPTION_LIMITS = {"concurrency": int, "timeout_s": float, "max_retries": int, "requests_per_minute": float,
                  "tokens_per_minute": float}  # fmt: skip
_OPTION_FACTS = {"price_input_per_mtok": float, "price_output_per_mtok": float, "vendor": str}


def parse_target_option(text: str) -> dict[str, Any]:
    """Parse `--target name=x,base_url=URL,model=m[,api_key_env=VAR][,concurrency=4][,price_input_per_mtok=2.5]...`
    into a targets-file entry: limits and prices go where a targets file puts them."""
    entry: dict[str, Any] = {}
    keys = (*_OPTION_KEYS, *_OPTION_LIMITS, *_OPTION_FACTS)
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"unknown --target key '{clip(key or part, 80)}'{hint}; keys: {', '.join(keys)}")
        if key in _OPTION_KEYS:
            entry[key] = value
            continue
        group, kind = ("limits", _OPTION_LIMITS[key]) if key in _OPTION_LIMITS else ("facts", _OPTION_FACTS[key])
        try:
            number = kind(value)
            if isinstance(number, float) and not math.isfinite(number):
                raise ValueError(value)
        except ValueError:
            raise UsageError(f"--target {key}={value}: not a{'n integer' if kind is int else ' number'}") from None
        entry.setdefault(group, {})[key] = number
    return entry


def check_target_entries(entries: list[dict[str, Any]], source: str) -> list[Target]:
    """Validate targets given on the command line against the targets schema."""
    import jsonschema

    from auditor.suite.files import message_of, pointer, schema

    validator = jsonschema.Draft202012Validator(schema("targets"))
    issues = [
        Issue(source, pointer(e.absolute_path), message_of(e)) for e in validator.iter_errors({"targets": entries})
    ]
    issues += [Issue(source, where, message) for where, message in _target_issues(entries)] if not issues else []
    if issues:
        raise SuiteError(issues)
    return [build_target(t) for t in entries]


def from_public(entry: dict[str, Any]) -> Target:
    """A target as a run recorded it (Target.public() in its manifest), rebuilt."""
    return build_target({k: v for k, v in entry.items() if v is not None})


@dataclass(frozen=True)
class Chosen:
    """The targets a command works with: those audited, and the helper models (judge, attacker)."""

    audited: tuple[Target, ...]
    judge: Target | None = None
    attacker: Target | None = None


def choose(
    targets_file: Path | None,
    options: tuple[str, ...] = (),
    judge: str | None = None,
    attacker: str | None = None,
    audit: bool = True,
) -> Chosen:
    """Resolve --targets FILE, --target options (names from the file, or inline name=...,base_url=...,model=...)
    and the --judge / --attacker names into targets.

    With no names given, every entry of the file is audited except the helpers and classifier judges (which answer
    "harmful or not", not requests). Naming a helper as an audited target is an error, not a silent drop. With
    `audit` off (grade, calibrate) only the helpers are resolved.
    """
    inline = [parse_target_option(t) for t in options if "=" in t]
    names = [t for t in options if "=" not in t]
    pool = (load_targets(targets_file) if targets_file else []) + (
        check_target_entries(inline, "--target") if inline else []
    )
    by_name = {t.name: t for t in pool}
    helpers: dict[str, Target | None] = {}
    for role, name in (("judge", judge), ("attacker", attacker)):
        if name is not None and name not in by_name:
            raise UnknownName(f"{role} target", name, by_name)
        helpers[role] = by_name[name] if name is not None else None
    if not audit:
        return Chosen((), helpers["judge"], helpers["attacker"])
    helper_names = {t.name for t in helpers.values() if t is not None}
    for name in names:
        if name not in by_name:
            raise UnknownName("target", name, by_name)
        if name in helper_names:
            raise UsageError(f"target '{name}' is named both as audited and as the judge or attacker: a helper model "
                             "is not audited; name another judge, or drop it from --target")  # fmt: skip
    inline_names = {e["name"] for e in inline}
    if names or inline:
        defined = [t for t in pool if t.name in inline_names and t.name not in names and t.name not in helper_names]
        chosen = [by_name[n] for n in names] + defined
    else:
        chosen = [t for t in pool if t.name not in helper_names and not t.classifier]
    if not chosen:
        raise UsageError(
            "no targets to audit: give --targets FILE or --target name=...,base_url=...,model=..."
            if not pool
            else "every target given is a judge, an attacker or a classifier: name at least one other to audit"
        )
    return Chosen(tuple(chosen), helpers["judge"], helpers["attacker"])
