"""How requests reach a target: gateway headers, secret headers, Azure OpenAI (api-version, api-key, Entra ID
token), proxies and private CAs from the environment, a base_url that is not the API root, inline --target
limits and prices, and helpers named as audited targets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import refuse_or_answer, write_targets

from auditor.cli import cli
from auditor.run.serve import ChatServer, Scripted, error_body


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def run(tmp_path: Path, suite: Path, *targets: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    tmp_path.mkdir(exist_ok=True)
    file = write_targets(tmp_path / "targets.json", *targets)
    return invoke("run", str(suite), "--targets", str(file), "--archive", str(tmp_path / "a"), "--quiet", env=env)


def manifest(tmp_path: Path) -> dict[str, Any]:
    (path,) = (tmp_path / "a" / "runs").glob("*/manifest.json")
    return dict(json.loads(path.read_text()))


def posts(srv: ChatServer) -> list[tuple[str, str, dict[str, str]]]:
    return [c for c in srv.calls if c[0] == "POST"]


def test_gateway_headers_are_sent_and_secret_ones_never_stored(tmp_path: Path, mini_suite: Path) -> None:
    with ChatServer(refuse_or_answer) as srv:
        target = {
            "name": "gw",
            "base_url": srv.url,
            "model": "m",
            "headers": {"X-Team": "risk-office"},
            "headers_env": {"X-Gateway-Token": "GW_TOKEN"},
        }
        result = run(tmp_path, mini_suite, target, env={"GW_TOKEN": "gw-secret-4242"})
        assert result.exit_code == 0, result.output
        sent = posts(srv)
    assert sent and all(h.get("x-team") == "risk-office" and h.get("x-gateway-token") == "gw-secret-4242"
                        for _, _, h in sent)  # fmt: skip
    assert all("gw-secret" not in h.get("authorization", "") for _, _, h in sent)
    stored = manifest(tmp_path)
    assert stored["targets"][0]["headers"] == {"X-Team": "risk-office"}
    assert stored["targets"][0]["headers_env"] == {"X-Gateway-Token": "GW_TOKEN"}
    every_byte = b"".join(p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert b"gw-secret-4242" not in every_byte


def test_a_secret_header_echoed_back_is_redacted_from_errors(tmp_path: Path, mini_suite: Path) -> None:
    def echo(request: dict[str, Any]) -> Scripted:
        return Scripted(error_body(400, "bad request from token gw-secret-4242"), status=400)

    with ChatServer(echo) as srv:
        target = {"name": "gw", "base_url": srv.url, "model": "m", "headers_env": {"X-Gateway-Token": "GW_TOKEN"}}
        result = run(tmp_path, mini_suite, target, env={"GW_TOKEN": "gw-secret-4242"})
    assert "gw-secret-4242" not in result.output
    every_byte = b"".join(p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert b"gw-secret-4242" not in every_byte
    assert b"bad request from token" in b"".join(p.read_bytes() for p in (tmp_path / "a").rglob("*.parquet"))


def test_missing_secret_header_variable_is_one_line(tmp_path: Path, mini_suite: Path) -> None:
    target = {"name": "gw", "base_url": "http://127.0.0.1:9/v1", "model": "m", "headers_env": {"X-Key": "NOPE_VAR"}}
    result = run(tmp_path, mini_suite, target, env={"NOPE_VAR": ""})
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: target 'gw' needs header X-Key in the environment variable NOPE_VAR, which is not set"
    )


def test_azure_deployment_url_gets_api_version_and_api_key_header(tmp_path: Path, mini_suite: Path) -> None:
    with ChatServer(refuse_or_answer) as srv:
        target = {
            "name": "azure",
            "base_url": srv.url.removesuffix("/v1") + "/openai/deployments/gpt-4o-audit",
            "model": "gpt-4o",
            "api_key_env": "AZURE_OPENAI_API_KEY",
            "auth": "api-key",
            "api_version": "2024-10-21",
        }
        result = run(tmp_path, mini_suite, target, env={"AZURE_OPENAI_API_KEY": "az-key-777"})
        assert result.exit_code == 0, result.output
        sent = posts(srv)
        gets = [c for c in srv.calls if c[0] == "GET"]
    assert sent and {path for _, path, _ in sent} == {
        "/openai/deployments/gpt-4o-audit/chat/completions?api-version=2024-10-21"
    }
    assert all(h.get("api-key") == "az-key-777" and "authorization" not in h for _, _, h in sent)
    assert gets == []  # a deployment URL serves no model list: nothing is checked there
    assert manifest(tmp_path)["targets"][0]["auth"] == "api-key"


def test_entra_id_token_goes_as_bearer(tmp_path: Path, mini_suite: Path) -> None:
    with ChatServer(refuse_or_answer) as srv:
        target = {"name": "azure-v1", "base_url": srv.url.removesuffix("/v1") + "/openai/v1", "model": "gpt-4o",
                  "api_key_env": "AZURE_OPENAI_AD_TOKEN"}  # fmt: skip
        result = run(tmp_path, mini_suite, target, env={"AZURE_OPENAI_AD_TOKEN": "eyJ.token.sig"})
        assert result.exit_code == 0, result.output
        sent = posts(srv)
    assert {path for _, path, _ in sent} == {"/openai/v1/chat/completions"}
    assert all(h.get("authorization") == "Bearer eyJ.token.sig" and "api-key" not in h for _, _, h in sent)


def test_a_base_url_that_is_not_the_api_root_is_warned_about(tmp_path: Path, mini_suite: Path) -> None:
    with ChatServer(refuse_or_answer).without_models() as srv:
        result = run(tmp_path, mini_suite, {"name": "vllm", "base_url": srv.url.removesuffix("/v1"), "model": "m"})
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "answers 404" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: target 'vllm': http://127.0.0.1:")
    assert "under /v1" in warnings[0]


def test_a_good_base_url_gets_no_warning(tmp_path: Path, mini_suite: Path) -> None:
    with ChatServer(refuse_or_answer) as srv:
        result = run(tmp_path, mini_suite, {"name": "vllm", "base_url": srv.url, "model": "m"})
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_requests_go_through_the_proxy_the_environment_names(tmp_path: Path, mini_suite: Path) -> None:
    with ChatServer(refuse_or_answer) as proxy:  # a forward proxy sees absolute URLs; this one answers itself
        target = {"name": "remote", "base_url": "http://models.internal.invalid/v1", "model": "m"}
        result = run(tmp_path, mini_suite, target, env={"HTTP_PROXY": proxy.url.removesuffix("/v1"), "NO_PROXY": ""})
        assert result.exit_code == 0, result.output
        paths = {path for method, path, _ in posts(proxy)}
    assert paths == {"http://models.internal.invalid/v1/chat/completions"}


def test_no_proxy_and_loopback_bypass_the_proxy(tmp_path: Path, mini_suite: Path) -> None:
    with ChatServer(refuse_or_answer) as proxy, ChatServer(refuse_or_answer) as local:
        env = {"HTTP_PROXY": proxy.url.removesuffix("/v1"), "NO_PROXY": ""}
        result = run(tmp_path, mini_suite, {"name": "local", "base_url": local.url, "model": "m"}, env=env)
        assert result.exit_code == 0, result.output
        assert proxy.calls == [] and posts(local)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("ca")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_a_private_ca_is_trusted_only_through_ssl_cert_file(
    tmp_path: Path, mini_suite: Path, certificate: tuple[str, str]
) -> None:
    with ChatServer(refuse_or_answer).with_tls(*certificate) as srv:
        assert srv.url.startswith("https://")
        target = {"name": "tls", "base_url": srv.url, "model": "m", "limits": {"max_retries": 0, "timeout_s": 10}}
        untrusted = run(tmp_path / "one", mini_suite, target)
        trusted = run(tmp_path / "two", mini_suite, target, env={"SSL_CERT_FILE": certificate[0]})
        assert trusted.exit_code == 0, trusted.output
        assert len(posts(srv)) == 7
    assert untrusted.exit_code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.output or "certificate" in untrusted.output.lower()


def test_inline_target_takes_limits_and_prices(tmp_path: Path, mini_suite: Path) -> None:
    inline = "name=inl,base_url=http://127.0.0.1:9/v1,model=m,concurrency=3,max_retries=0,price_input_per_mtok=2.5,price_output_per_mtok=10"  # noqa: E501
    result = invoke("plan", str(mini_suite), "--target", inline)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("inl "))
    assert "no prices declared" not in row
    bad = invoke("plan", str(mini_suite), "--target", "name=x,base_url=http://h/v1,model=m,concurrency=many")
    assert bad.exit_code == 2
    assert bad.output.strip() == "error: --target concurrency=many: not an integer"
    unknown = invoke("plan", str(mini_suite), "--target", "name=x,base_url=http://h/v1,model=m,colour=red")
    assert unknown.exit_code == 2 and "price_input_per_mtok" in unknown.output


def test_a_credential_in_plain_headers_is_refused_with_its_pointer(tmp_path: Path, mini_suite: Path) -> None:
    target = {"name": "gw", "base_url": "http://h/v1", "model": "m", "headers": {"Authorization": "Bearer abc"}}
    file = write_targets(tmp_path / "t.json", target)
    result = invoke("plan", str(mini_suite), "--targets", str(file))
    assert result.exit_code == 2
    assert "/targets/0/headers/Authorization" in result.output and "headers_env" in result.output
    assert "Bearer abc" not in result.output


def test_api_key_auth_needs_a_key(tmp_path: Path, mini_suite: Path) -> None:
    file = write_targets(
        tmp_path / "t.json", {"name": "az", "base_url": "http://h/v1", "model": "m", "auth": "api-key"}
    )
    result = invoke("plan", str(mini_suite), "--targets", str(file))
    assert result.exit_code == 2
    assert "/targets/0/auth" in result.output


def test_a_helper_named_as_audited_target_is_an_error(tmp_path: Path, mini_suite: Path) -> None:
    file = write_targets(
        tmp_path / "t.json",
        {"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        {"name": "b", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
    )
    result = invoke("run", str(mini_suite), "--targets", str(file), "--target", "a", "--target", "b", "--judge", "b",
                    "--archive", str(tmp_path / "a"))  # fmt: skip
    assert result.exit_code == 2
    assert "named both as audited and as the judge" in result.output
