"""Targets: the models under audit and the helper models (judge, attacker), from a targets file, from
`--target` options, or as a run recorded them; checked, and built into Target records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor.errors import Issue, SuiteError, UnknownName
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


_OPTION_KEYS = ("name", "base_url", "model", "api_key_env", "system_prompt")


def parse_target_option(text: str) -> dict[str, Any]:
    """Parse `--target name=x,base_url=URL,model=m[,api_key_env=VAR]` into a targets-file entry."""
    entry: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _OPTION_KEYS:
            raise UnknownName("--target key", key or part, _OPTION_KEYS)
        entry[key] = value.strip()
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
