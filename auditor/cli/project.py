"""Commands that start a project: `suites` lists, shows and copies the bundled suites; `init` writes a targets
file, a starter suite and the next commands into a folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click

from auditor.cli.console import format_rows, printable
from auditor.errors import UsageError


@click.group("suites", invoke_without_command=True)
@click.pass_context
def suites(ctx: click.Context) -> None:
    """List the bundled suites, one line each; every command that takes a suite file also takes these names.

    \b
    auditor suites
    auditor suites show jailbreak
    auditor suites copy jailbreak my-jailbreak.json
    auditor plan jailbreak --targets targets.json
    """
    if ctx.invoked_subcommand is not None:
        return
    from auditor.suite.bundled import bundled

    rows = [(b.name, b.version, b.probes, b.title) for b in bundled().values()]
    click.echo(format_rows(["name", "version", "probes", "title"], rows, "table"), nl=False)
    click.echo(f"Starters for `auditor init --domain`: {', '.join(starters())}")


@suites.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Print what a bundled suite covers: its challenges, probes, deployment contexts and rules.

    \b
    auditor suites show sixteen-challenges
    """
    from auditor.run.plan import requests_per_target
    from auditor.suite.bundled import resolve
    from auditor.suite.load import load_suite

    suite = load_suite(resolve(name))
    click.echo(f"{suite.title} ({suite.id} {suite.version}), {requests_per_target(suite)} requests per target")
    click.echo(printable(suite.description))
    rows = [(c.id, c.severity, len(c.probes), c.title) for c in suite.challenges]
    click.echo("")
    click.echo(format_rows(["challenge", "severity", "probes", "title"], rows, "table"), nl=False)
    for policy in suite.policies:
        click.echo(f"\ncontext {policy.id}: {policy.title}")
        for rule in policy.rules:
            selects = ", ".join([*rule.ids, *rule.categories, *rule.severities]) or "every challenge"
            click.echo(f"  rule {rule.id}: {selects} at least {rule.min_pass_rate:.0%} (else {rule.on_fail})")


@suites.command("copy")
@click.argument("name")
@click.argument("dest", required=False, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
def copy(name: str, dest: Path | None, force: bool) -> None:
    """Copy a bundled suite to DEST (default: NAME.json here) to edit it.

    \b
    auditor suites copy jailbreak
    auditor suites copy bias suites/our-bias.json
    """
    from auditor.suite.bundled import bundled

    found = bundled()
    if name.removesuffix(".json") not in found:
        raise UsageError(f"no bundled suite '{name}'; bundled: {', '.join(found)}")
    source = found[name.removesuffix(".json")].path
    target = dest if dest is not None else Path(source.name)
    if target.is_dir():
        target = target / source.name
    _refuse_overwrite([target], force)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    click.echo(str(target))


def starters() -> list[str]:
    """The starter suites `init` can write, by domain."""
    from auditor.resources import data_dir

    return sorted(p.stem for p in (data_dir("suites") / "starters").glob("*.json"))


@click.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--domain", default="customer-support", show_default=True, help="The starter suite to write.")
@click.option("--force", is_flag=True, help="Replace files that exist.")
def init(folder: Path, domain: str, force: bool) -> None:
    """Start an audit project in FOLDER: a commented targets file, a starter suite with a judge rubric, harmless
    twins and labelled examples, report settings, and NEXT-STEPS.md with the commands to run.

    \b
    auditor init my-audit
    cd my-audit && auditor validate --strict customer-support.json
    auditor init my-audit --domain customer-support --force
    """
    from auditor.resources import data_dir

    if domain not in starters():
        raise UsageError(f"no starter suite for domain '{domain}'; starters: {', '.join(starters())}")
    suite_file = folder / f"{domain}.json"
    files = {
        folder / "targets.json": json.dumps(TARGETS, indent=2, ensure_ascii=False) + "\n",
        suite_file: (data_dir("suites") / "starters" / f"{domain}.json").read_text(encoding="utf-8"),
        folder / "report-settings.json": json.dumps(SETTINGS, indent=2) + "\n",
        folder / "NEXT-STEPS.md": NEXT_STEPS.format(suite=suite_file.name),
    }
    _refuse_overwrite(list(files), force)
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        click.echo(str(path))
    click.echo(f"next: cd {folder} && auditor validate --strict {suite_file.name}  (NEXT-STEPS.md has the rest)")


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise UsageError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; --force replaces")


TARGETS: dict[str, Any] = {
    "$comment": [
        "The models to audit and the helper models (judge, attacker). Keys are never written here: api_key_env",
        "names the environment variable that holds one. Keep the entries you use and delete the rest; pick some",
        "with --target NAME, name the judge with --judge NAME. Schema: auditor schema targets.",
    ],
    "targets": [
        {
            "$comment": "The bundled model: runs here with no key and no network (needs the 'local' extra).",
            "name": "smollm2",
            "base_url": "embedded:smollm2",
            "model": "SmolLM2-135M-Instruct",
            "limits": {"concurrency": 1, "timeout_s": 300},
        },
        {
            "$comment": "OpenAI. Prices in USD per million tokens let `auditor plan` and `--max-cost` price a run.",
            "name": "gpt-4o-mini",
            "base_url": "https://api.openai.com/v1",
            "model": "gpt-4o-mini",
            "api_key_env": "OPENAI_API_KEY",
            "limits": {"concurrency": 8, "requests_per_minute": 500},
            "facts": {
                "vendor": "OpenAI",
                "open_weights": False,
                "price_input_per_mtok": 0.15,
                "price_output_per_mtok": 0.6,
            },
        },
        {
            "$comment": [
                "Azure OpenAI, deployment URL: base_url ends with /openai/deployments/YOUR-DEPLOYMENT, api_version is",
                "required and the key goes in the api-key header. For the v1 endpoint use",
                "https://RESOURCE.openai.azure.com/openai/v1 without api_version. For Entra ID, put a token in",
                "AZURE_OPENAI_AD_TOKEN, set api_key_env to it and drop auth (a bearer token is the default).",
            ],
            "name": "azure-gpt-4o",
            "base_url": "https://RESOURCE.openai.azure.com/openai/deployments/YOUR-DEPLOYMENT",
            "model": "gpt-4o",
            "api_key_env": "AZURE_OPENAI_API_KEY",
            "auth": "api-key",
            "api_version": "2024-10-21",
            "facts": {"vendor": "Microsoft Azure OpenAI", "open_weights": False},
        },
        {
            "$comment": [
                "A vLLM server (vllm serve MODEL): base_url ends in /v1, and model must be the served model name",
                "(GET /v1/models lists it). No key unless the server was started with --api-key.",
            ],
            "name": "vllm-model",
            "base_url": "http://localhost:8000/v1",
            "model": "Qwen/Qwen2.5-7B-Instruct",
            "limits": {"concurrency": 16},
            "facts": {"open_weights": True},
        },
        {
            "$comment": "Ollama's OpenAI-compatible API: model is the tag you pulled (ollama list).",
            "name": "ollama-model",
            "base_url": "http://localhost:11434/v1",
            "model": "llama3.1:8b",
            "limits": {"concurrency": 2, "timeout_s": 300},
            "facts": {"open_weights": True},
        },
        {
            "$comment": [
                "A judge grades the suite's judge criteria (auditor run ... --judge judge); it is not audited. A",
                "gateway needs headers; secret ones go in headers_env (header name to environment variable).",
            ],
            "name": "judge",
            "base_url": "https://api.openai.com/v1",
            "model": "gpt-4o",
            "api_key_env": "OPENAI_API_KEY",
            "params": {"temperature": 0, "max_tokens": 16},
            "facts": {"vendor": "OpenAI", "price_input_per_mtok": 2.5, "price_output_per_mtok": 10},
        },
    ],
}

SETTINGS: dict[str, Any] = {
    "organisation": "Your organisation",
    "prepared_for": "Who commissioned the audit",
    "classification": "INTERNAL",
    "version": "draft 1",
    "language": "en",
}

NEXT_STEPS = """# Next steps

1. Edit `targets.json`: keep the models you audit and a judge; set their API keys in the environment
   (`export OPENAI_API_KEY=...`). Edit `{suite}`: the system prompt, probes and thresholds of your deployment.
2. Check the suite and its labelled examples:

       auditor validate --strict {suite}

3. See what the audit sends, costs and can decide before sending anything:

       auditor plan {suite} --targets targets.json --target gpt-4o-mini --judge judge

4. Run it (every reply is stored under audits/; `--resume RUN` continues a stopped run):

       auditor run {suite} --targets targets.json --target gpt-4o-mini --target vllm-model --judge judge

   With no key and no network, the bundled model works as is:

       auditor run {suite} --targets targets.json --target smollm2

5. Render the report, or browse every run:

       auditor report latest --settings report-settings.json
       auditor view

A bundled suite can be run by name (`auditor suites` lists them), e.g. `auditor run jailbreak --targets targets.json`.
"""
