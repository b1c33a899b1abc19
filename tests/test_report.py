"""The deliverable: recommendation first, four decision states, charts, a PDF with contents, bookmarks, running
heads and metadata, branding, and a web page that filters and that hostile model output cannot subvert (checked in
headless Chromium)."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, invoke, write_targets

from auditor.run.serve import Scripted, chat_body

HOSTILE = (
    "Sure, here is how: step one. <script>alert('x')</script><img src=x onerror=\"alert('img')\">"
    "<a href=\"javascript:alert('link')\">click</a><style>body{background:url(http://127.0.0.1:9/steal)}</style>"
    "<svg onload=alert(3)></svg>"
)


def safe(request: dict[str, Any]) -> Scripted:
    text = request["messages"][-1]["content"]
    if "protect" in text.lower() or "secure" in text.lower():
        return Scripted(chat_body("Use a long passphrase, WPA3 and keep the firmware updated; back up offline."))
    return Scripted(chat_body("I can't help with that request."))


def unsafe(request: dict[str, Any]) -> Scripted:
    return Scripted(chat_body(HOSTILE))


@pytest.fixture(scope="module")
def audit(tmp_path_factory: Any) -> Path:
    """One audit of two scripted models on the bundled jailbreak suite (attacks, twins): its archive."""
    from auditor.run.serve import ChatServer

    tmp: Path = tmp_path_factory.mktemp("audit")
    servers = [ChatServer(safe, model_name="careful").start(), ChatServer(unsafe, model_name="careless").start()]
    try:
        targets = write_targets(
            tmp / "t.json",
            {"name": "careful", "base_url": servers[0].url, "model": "careful"},
            {"name": "careless", "base_url": servers[1].url, "model": "careless"},
        )
        archive = tmp / "audits"
        ran = invoke("run", str(ROOT / "suites" / "jailbreak.json"), "--targets", str(targets), "--archive",
                     str(archive), "--quiet")  # fmt: skip
        assert ran.exit_code == 0, ran.output
    finally:
        for s in servers:
            s.stop()
    return archive


def render(archive: Path, out: Path, *extra: str) -> tuple[str, Path]:
    """Render the archive's latest report; return the HTML text and the PDF path (when a PDF was asked for)."""
    result = invoke("report", "latest", "--archive", str(archive), "--out", str(out), *extra)
    assert result.exit_code == 0, result.output
    written = {p.suffix: p for p in map(Path, result.stdout.split())}
    return written[".html"].read_text(encoding="utf-8"), written.get(".pdf", out / "none.pdf")


def test_the_recommendation_comes_first_and_names_models(audit: Path, tmp_path: Path) -> None:
    summary = json.loads(invoke("run", "--resume", "latest", "--archive", str(audit), "--quiet", "--json").stdout)
    (high, internal) = summary["recommendations"]
    assert high["context"] == "high-stakes-user-facing"
    assert high["ranked"] == ["careful", "careless"] and "careless" in high["avoid"]
    assert any(s.startswith("Do not use careless: jailbreak: 0% passed") for s in high["sentences"])
    html, _ = render(audit, tmp_path / "r", "--format", "html")
    order = [html.index(f'<h2 id="{s}">') for s in ("recommendation", "decisions", "results", "findings")]
    assert order == sorted(order)


def test_attack_figures_cover_harmful_probes_only(audit: Path) -> None:
    summary = json.loads(invoke("run", "--resume", "latest", "--archive", str(audit), "--quiet", "--json").stdout)
    direct = [a for a in summary["attacks"] if a["attack"] == "direct"]
    assert [a["attempts"] for a in direct] == [16, 16]  # the 16 harmful behaviours, not their 16 benign twins
    careless = next(a for a in direct if a["target"] == "careless")
    assert careless["asr_decided"] == 1.0


def test_charts_are_inline_svg_with_captions_and_text_alternatives(audit: Path, tmp_path: Path) -> None:
    html, _ = render(audit, tmp_path / "r", "--format", "html")
    for chart in ("forest", "heatmap", "attacks", "balance"):
        figure = re.search(rf'<figure id="fig-{chart}"><svg .*?</svg><figcaption>(.+?)</figcaption>', html, re.S)
        assert figure is not None, chart
        assert f'<desc id="{chart}-d">' in figure.group(0)
    assert "careless 100% (" in re.search(r'<desc id="attacks-d">(.*?)</desc>', html, re.S).group(1)  # type: ignore[union-attr]


def test_the_pdf_is_a_deliverable(audit: Path, tmp_path: Path) -> None:
    from pypdf import PdfReader

    _, pdf = render(audit, tmp_path / "r", "--organisation", "Model Risk Office", "--classification", "Confidential",
                    "--report-version", "1.0")  # fmt: skip
    reader = PdfReader(str(pdf))
    meta = reader.metadata
    assert meta is not None and meta.title is not None and meta.title.startswith("LLM audit report: Jailbreak")
    assert meta.author == "Model Risk Office" and "careless" in str(meta.get("/Keywords"))
    titles = [o.title for o in reader.outline if not isinstance(o, list)]
    assert titles[:3] == ["Contents", "1. Recommendation", "2. Decisions by deployment context"]
    assert any(str(t).startswith("Appendix A.") for t in titles)
    pages = [p.extract_text() for p in reader.pages]
    contents = pages[1]
    assert re.search(r"1\. Recommendation\s*\.+\s*3\b", contents)  # the contents give page numbers
    run_id = next(Path(audit / "runs").iterdir()).name
    for n, text in enumerate(pages[1:], start=2):
        assert f"Page {n} of {len(pages)}" in text
        assert f"Run {run_id}" in text and "Confidential" in text  # the running head on every page but the cover


def test_settings_file_logo_and_language(audit: Path, tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(
        base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
        )
    )
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"organisation": "Risk", "logo": "logo.png", "language": "fr", "prepared_for": "B"}))
    html, _ = render(audit, tmp_path / "r", "--format", "html", "--settings", str(settings))
    assert '<img class="logo" src="data:image/png;base64,iVBOR' in html
    assert '<h2 id="recommendation"><span class="num">1.</span> Recommandation</h2>' in html
    assert '<html lang="fr">' in html
    bad = tmp_path / "bad.json"
    bad.write_text('{"colour": "red"}')
    result = invoke("report", "latest", "--archive", str(audit), "--settings", str(bad), "--out", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: {bad}: /colour: unknown setting; known: classification, language")


def test_insufficient_evidence_is_a_state_of_its_own(tmp_path: Path, server: Any) -> None:
    suite = {
        "format": "auditor-suite/1", "id": "few", "version": "1.0.0", "title": "Few trials",
        "challenges": [{"id": "c", "title": "C", "category": "behaviour", "severity": "high", "description": "d",
                        "probes": [{"id": f"p{i}", "prompt": f"Capital of France? ({i})",
                                    "pass_if": {"type": "contains", "values": ["Paris"]}} for i in range(3)]}],
        "policies": [{"id": "ctx", "title": "Context",
                      "rules": [{"id": "r", "select": {"ids": ["c"]}, "min_pass_rate": 0.8}]}],
    }  # fmt: skip
    path = tmp_path / "few.json"
    path.write_text(json.dumps(suite))
    url = server(lambda request: Scripted(chat_body("Paris"))).url
    result = invoke("run", str(path), "--target", f"name=t,base_url={url},model=m", "--archive",
                    str(tmp_path / "a"), "--json")  # fmt: skip
    (verdict,) = json.loads(result.stdout)["verdicts"]
    assert verdict["decision"] == "insufficient evidence"  # 3/3 passed, lower bound 44%: nothing fails, undecided
    (rec,) = json.loads(result.stdout)["recommendations"]
    assert rec["what_would_change"] == [
        "t, c: 3 trials at 100% cannot decide the minimum 80%; about 16 in all (13 more) would decide it if the rate "
        "held"
    ]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package chromium; .ci/run installs it)")
def test_the_web_page_filters_and_nothing_hostile_runs_or_loads(audit: Path, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    html, _ = render(audit, tmp_path / "r", "--format", "html")
    page_path = next((tmp_path / "r").glob("*.html"))
    assert "<script>alert('x')</script>" not in html  # escaped in the page source
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page()
        console: list[str] = []
        requests: list[str] = []
        dialogs: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("request", lambda r: requests.append(r.url))

        def dismiss(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", dismiss)
        page.goto(page_path.as_uri())
        page.wait_for_timeout(300)
        assert page.locator(".filters").is_visible()  # the script ran: the filter bar shows
        careless = page.locator('details.transcript[data-target="careless"]')
        careful_rows = page.locator('tr[data-target="careful"]')
        assert careless.count() > 0 and careless.first.is_visible()
        page.select_option('select[data-filter="target"]', "careful")
        assert not careless.first.is_visible() and careful_rows.first.is_visible()
        page.select_option('select[data-filter="target"]', "")
        assert careless.first.is_visible()
        page.locator('details.transcript[data-target="careless"]').first.locator("summary").click()
        page.wait_for_timeout(200)
        browser.close()
    assert console == []
    assert dialogs == []  # no script, handler or javascript: link from model output ran
    assert requests == [page_path.as_uri()]  # nothing fetched but the page itself


def many_probes(tmp_path: Path, url: str, n: int) -> Path:
    """A run of `n` probes of 5 samples each, every fourth failing every sample, with a rule decided per probe: its
    archive."""
    suite = {
        "format": "auditor-suite/1", "id": "many", "version": "1", "title": "Many probes",
        "defaults": {"samples": 5, "params": {"temperature": 0, "max_tokens": 4}},
        "challenges": [{"id": "c", "title": "Says ok", "category": "behaviour", "severity": "medium",
                        "description": "d",
                        "probes": [{"id": f"p{i:03d}", "prompt": f"Reply ok ({i}).",
                                    "pass_if": {"type": "contains", "values": ["nope" if i % 4 == 0 else "ok"]}}
                                   for i in range(n)]}],
        "policies": [{"id": "each", "title": "Each probe",
                      "rules": [{"id": "r", "select": {"ids": ["c"]}, "per": "probe", "min_pass_rate": 0.5}]}],
    }  # fmt: skip
    path = tmp_path / f"many-{n}.json"
    path.write_text(json.dumps(suite))
    archive = tmp_path / f"audits-{n}"
    ran = invoke("run", str(path), "--target", f"name=t,base_url={url},model=m", "--archive", str(archive), "--quiet")
    assert ran.exit_code == 0, ran.output
    return archive


def test_per_probe_detail_is_summarised_in_the_report_and_complete_in_a_csv(tmp_path: Path, server: Any) -> None:
    import csv

    from pypdf import PdfReader

    url = server(lambda request: Scripted(chat_body("ok"))).url
    pages = {}
    for n in (12, 120):
        out = tmp_path / f"r{n}"
        result = invoke("report", "latest", "--archive", str(many_probes(tmp_path, url, n)), "--out", str(out))
        assert result.exit_code == 0, result.output
        html_path, pdf_path, csv_path = map(Path, result.stdout.split())
        pages[n] = len(PdfReader(str(pdf_path)).pages)
        rows = list(csv.DictReader(csv_path.open()))
        assert len(rows) == n and sorted(r["probe_id"] for r in rows) == [f"p{i:03d}" for i in range(n)]
        p000, p001 = rows[0], rows[1]
        assert (p000["trials"], p000["passed"], p000["failed"], p000["each/r"]) == ("5", "0", "5", "fails")
        assert (p001["trials"], p001["passed"], p001["pass_rate"], p001["each/r"]) == ("5", "5", "1.0000", "holds")
        html = html_path.read_text()
        assert csv_path.name in html  # the report names the table beside it
        listed = re.findall(r"<li>probe p\d+: 0/5 passed", html)
        if n == 12:  # 3 failing probes: each listed, nothing summarised
            assert len(listed) == 3 and 'class="more"' not in html
        else:  # 30 failing probes: the gravest 10, and the rest counted exactly
            assert len(listed) == 10
            assert "… and 20 more probes short of the minimum, not listed here (of all 120: 30 fail, 0 undecided, " \
                "90 hold)." in html  # fmt: skip
            assert "2 of 150 failing replies shown, drawn at random (seed 0)" in html
        assert len(re.findall(r'<details class="transcript"', html)) == 2  # examples capped per cell
    assert pages[120] <= pages[12] + 1  # the PDF's length follows the suite's structure, not its size
