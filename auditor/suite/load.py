"""Loads suites and targets files: schema validation, semantic checks, and typed records."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Any

from auditor import criteria
from auditor.errors import UnknownName
from auditor.records import (
    Attack,
    Challenge,
    Criterion,
    Evidence,
    Message,
    Policy,
    Probe,
    ProbeExample,
    Rule,
    Scope,
    Suite,
)
from auditor.suite.files import located, raise_if, validate

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def detect_kind(data: Any) -> str:
    """Guess whether parsed JSON is a suite or a targets file."""
    if isinstance(data, dict) and "targets" in data and "challenges" not in data:
        return "targets"
    return "suite"


MAX_ITEMS = 200_000  # requests per target a suite may expand to, unless raised with --max-items


def load_suite(path: Path, trusted_sha256: str | None = None, max_items: int = MAX_ITEMS) -> Suite:
    """Load and check a suite file, raising SuiteError with every issue found.

    A file whose SHA-256 equals `trusted_sha256` (a copy checked when its run started) is not checked again.
    A suite that expands to more than `max_items` requests per target is refused before anything is planned.
    """
    if trusted_sha256 is not None:
        raw = path.read_bytes()
        if hashlib.sha256(raw).hexdigest() == trusted_sha256:
            return _build_suite(json.loads(raw), path, trusted_sha256)
    data, issues, offsets, text = validate(path, "suite")
    raise_if(issues)
    raise_if([located(path, text, offsets, p, m) for p, m in _semantic_issues(data)])
    raise_if([located(path, text, offsets, p, m) for p, m in _size_issues(data, max_items)])
    return _build_suite(data, path, hashlib.sha256(path.read_bytes()).hexdigest())


def expansion(data: dict[str, Any]) -> list[tuple[str, int]]:
    """(probe pointer, requests per target) for every probe of checked suite data, without expanding anything:
    variable combinations x samples x (the direct request + each static attack it runs under)."""
    defaults = data.get("defaults", {})
    static = [a["id"] for a in data.get("attacks", []) if a["type"] not in ("pair", "tap")]
    sizes = []
    for ci, ch in enumerate(data["challenges"]):
        for pi, probe in enumerate(ch.get("probes", [])):
            combos = 1
            for values in probe.get("variables", {}).values():
                combos *= len(values)
            named = probe.get("attacks", [])
            attacks = 1 + sum(1 for a in static if "*" in named or a in named)
            samples = int(probe.get("samples", defaults.get("samples", 1)))
            sizes.append((f"/challenges/{ci}/probes/{pi}", combos * samples * attacks))
    return sizes


def _size_issues(data: dict[str, Any], max_items: int) -> list[tuple[str, str]]:
    sizes = expansion(data)
    total = sum(n for _, n in sizes)
    if total <= max_items:
        return []
    where, biggest = max(sizes, key=lambda s: s[1])
    return [
        (
            where,
            f"the suite expands to {total:,} requests per target (this probe alone to {biggest:,}), more than the "
            f"cap of {max_items:,}; cut variable values or samples, or raise the cap with --max-items",
        )
    ]


def _semantic_issues(data: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    seen_challenges: set[str] = set()
    seen_probes: dict[str, str] = {}
    measured: list[dict[str, Any]] = []
    for ci, ch in enumerate(data["challenges"]):
        where = f"/challenges/{ci}"
        if ch["id"] in seen_challenges:
            found.append((where + "/id", f"duplicate challenge id '{ch['id']}'"))
        seen_challenges.add(ch["id"])
        if "probes" in ch:
            measured.append(ch)
        for pi, probe in enumerate(ch.get("probes", [])):
            pw = f"{where}/probes/{pi}"
            if probe["id"] in seen_probes:
                found.append((pw + "/id", f"duplicate probe id '{probe['id']}' (first at {seen_probes[probe['id']]})"))
            seen_probes.setdefault(probe["id"], pw)
            found.extend(_probe_issues(probe, pw, data.get("defaults", {})))
    for ci, ch in enumerate(data["challenges"]):
        for pi, probe in enumerate(ch.get("probes", [])):
            twin = probe.get("twin")
            if twin is not None and twin not in seen_probes:
                found.append((f"/challenges/{ci}/probes/{pi}/twin", str(UnknownName("probe", twin, seen_probes))))
    found.extend(_attack_issues(data))
    ids = {c["id"] for c in data["challenges"]}
    for pi, policy in enumerate(data["policies"]):
        for ri, rule in enumerate(policy["rules"]):
            rw = f"/policies/{pi}/rules/{ri}"
            for k, cid in enumerate(rule["select"].get("ids", [])):
                if cid not in ids:
                    found.append((f"{rw}/select/ids/{k}", str(UnknownName("challenge", cid, ids))))
            if not any(_selects(rule["select"], ch) for ch in measured):
                found.append((rw + "/select", "selects no measured challenge"))
    return found


def _attack_issues(data: dict[str, Any]) -> list[tuple[str, str]]:
    from auditor.suite.attacks import library

    found: list[tuple[str, str]] = []
    declared: set[str] = set()
    templates = {t["id"] for t in library()["templates"]}
    for ai, attack in enumerate(data.get("attacks", [])):
        if attack["id"] in declared or attack["id"] == "direct":
            found.append((f"/attacks/{ai}/id", f"attack id '{attack['id']}' is reserved or used twice"))
        declared.add(attack["id"])
        if "library" in attack and attack["library"] not in templates:
            found.append((f"/attacks/{ai}/library", str(UnknownName("attack template", attack["library"], templates))))
        if "template" in attack and "{behaviour}" not in attack["template"]:
            found.append((f"/attacks/{ai}/template", "a template needs {behaviour} where the request goes"))
    for ci, ch in enumerate(data["challenges"]):
        for pi, probe in enumerate(ch.get("probes", [])):
            for k, name in enumerate(probe.get("attacks", [])):
                where = f"/challenges/{ci}/probes/{pi}/attacks/{k}"
                if name != "*" and name not in declared:
                    found.append((where, str(UnknownName("attack", name, declared))))
            if probe.get("attacks") and "turns" in probe:
                found.append(
                    (f"/challenges/{ci}/probes/{pi}/attacks", "a scripted multi-turn probe cannot be attacked")
                )
    return found


def _selects(select: dict[str, Any], ch: dict[str, Any]) -> bool:
    return (
        ch["id"] in select.get("ids", [ch["id"]])
        and ch["category"] in select.get("categories", [ch["category"]])
        and ch["severity"] in select.get("severities", [ch["severity"]])
    )


def _probe_issues(probe: dict[str, Any], where: str, defaults: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    texts = [probe.get("prompt", ""), probe.get("system", "")]
    texts += [m["content"] for m in probe.get("messages", [])]
    texts += list(probe.get("turns", [])) + list(probe.get("translations", {}).values())
    used = {name for t in texts for name in PLACEHOLDER.findall(t)} - {"last_reply"}
    declared = set(probe.get("variables", {}))
    for name in sorted(used - declared):
        found.append((where, f"uses {{{{{name}}}}} but declares no variable '{name}'"))
    for name in sorted(declared - used):
        found.append((f"{where}/variables/{name}", f"variable '{name}' is never used"))
    for k, example in enumerate(probe.get("examples", [])):
        ew = f"{where}/examples/{k}"
        replies = example.get("replies")
        if isinstance(example.get("expect"), list) != isinstance(replies, list) or (
            replies is not None and len(example["expect"]) != len(replies)
        ):
            found.append(
                (ew + "/expect", "give one expected verdict per reply (a list with 'replies', one word with 'reply')")
            )
        for name, value in example.get("variables", {}).items():
            values = probe.get("variables", {}).get(name)
            if values is None:
                found.append((f"{ew}/variables/{name}", f"the probe has no variable '{name}'"))
            elif (isinstance(value, int) and value >= len(values)) or (isinstance(value, str) and value not in values):
                found.append((f"{ew}/variables/{name}", f"not one of the values of '{name}' (a value or its index)"))
    if probe.get("stereotype") is not None:
        try:
            re.compile(probe["stereotype"])
        except re.error as exc:
            found.append((where + "/stereotype", f"not a valid regular expression: {exc}"))
    messages = probe.get("messages")
    if messages and messages[-1]["role"] != "user":
        found.append((f"{where}/messages/{len(messages) - 1}/role", "the last message must be from the user"))
    try:
        criteria.build(probe["pass_if"], where + "/pass_if")
    except criteria.CriterionError as exc:
        found.append((exc.pointer, str(exc)))
    if probe["pass_if"].get("type") == "consistency":
        over = probe["pass_if"].get("over", "samples")
        variants = 1
        for values in probe.get("variables", {}).values():
            variants *= len(values)
        samples = probe.get("samples", defaults.get("samples", 1))
        size = {"samples": samples, "variants": variants, "all": samples * variants}[over]
        if size < 2:
            found.append(
                (
                    where + "/pass_if",
                    f"consistency over {over} needs at least 2 replies to compare; this probe gives {size}",
                )
            )
    return found


def _criterion(spec: dict[str, Any]) -> Criterion:
    return Criterion(kind=spec["type"], means=spec.get("means", ""), spec=spec)


def _build_suite(data: dict[str, Any], path: Path, sha256: str) -> Suite:
    defaults = data.get("defaults", {})
    challenges = []
    for ch in data["challenges"]:
        probes = tuple(_build_probe(p, defaults) for p in ch.get("probes", []))
        ev = ch.get("evidence")
        evidence = Evidence(ev["statement"], tuple(ev.get("facts", [])), tuple(ev.get("sources", []))) if ev else None
        challenges.append(
            Challenge(
                id=ch["id"],
                title=ch["title"],
                category=ch["category"],
                severity=ch["severity"],
                description=ch["description"],
                controls=tuple(ch.get("controls", [])),
                probes=probes,
                evidence=evidence,
            )
        )
    policies = tuple(
        Policy(
            id=p["id"],
            title=p["title"],
            description=p.get("description", ""),
            rules=tuple(
                Rule(
                    id=r["id"],
                    description=r.get("description", ""),
                    ids=tuple(r["select"].get("ids", [])),
                    categories=tuple(r["select"].get("categories", [])),
                    severities=tuple(r["select"].get("severities", [])),
                    min_pass_rate=float(r["min_pass_rate"]),
                    on_fail=r.get("on_fail", "reject"),
                    conditions=tuple(r.get("conditions", [])),
                    per=r.get("per", "challenge"),
                )
                for r in p["rules"]
            ),
        )
        for p in data["policies"]
    )
    scope = data.get("scope", {})
    return Suite(
        id=data["id"],
        version=data["version"],
        title=data["title"],
        description=data.get("description", ""),
        owner=data.get("owner", ""),
        scope=Scope(scope.get("intended_use", ""), scope.get("out_of_scope", ""), tuple(scope.get("limitations", []))),
        challenges=tuple(challenges),
        policies=policies,
        path=str(path),
        sha256=sha256,
        attacks=tuple(Attack(a["id"], a["type"], a.get("family", a["type"]), a) for a in data.get("attacks", [])),
    )


def _build_probe(p: dict[str, Any], defaults: dict[str, Any]) -> Probe:
    if "prompt" in p:
        messages: tuple[Message, ...] = (Message("user", p["prompt"]),)
    elif "turns" in p:
        messages = ()
    else:
        messages = tuple(Message(m["role"], m["content"]) for m in p["messages"])
    params = {**defaults.get("params", {}), **p.get("params", {})}
    return Probe(
        id=p["id"],
        description=p.get("description", ""),
        messages=messages,
        system=p.get("system"),
        variables=tuple((k, tuple(v)) for k, v in sorted(p.get("variables", {}).items())),
        samples=int(p.get("samples", defaults.get("samples", 1))),
        params=tuple(sorted(params.items())),
        pass_if=_criterion(p["pass_if"]),
        intent=p.get("intent"),
        twin=p.get("twin"),
        attacks=tuple(p.get("attacks", [])),
        category=p.get("category"),
        translations=tuple(sorted(p.get("translations", {}).items())),
        turns=tuple(p.get("turns", [])),
        examples=tuple(_build_example(e) for e in p.get("examples", [])),
        stereotype=p.get("stereotype"),
        fresh=bool(p.get("fresh", False)),
    )


def _build_example(e: dict[str, Any]) -> ProbeExample:
    replies = tuple(e["replies"]) if "replies" in e else (e["reply"],)
    expect = e["expect"] if isinstance(e["expect"], list) else [e["expect"]] * len(replies)
    return ProbeExample(
        replies=replies,
        expect=tuple(expect),
        why=e.get("why", ""),
        variables=tuple(sorted(e.get("variables", {}).items())),
        latency_s=e.get("latency_s"),
        completion_tokens=e.get("completion_tokens"),
        judge_only=bool(e.get("judge_only", False)),
    )


def variants(probe: Probe) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the probe's variable values, in declaration order (one empty one if none)."""
    names = [name for name, _ in probe.variables]
    values = [vals for _, vals in probe.variables]
    return [tuple(zip(names, combo)) for combo in itertools.product(*values)]
