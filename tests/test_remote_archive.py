"""An archive on object storage: run, grade, report, query and verify through s3:// against a local S3-compatible
server (moto's server mode on 127.0.0.1), a run killed with kill -9 and resumed from the bucket, an interrupted
upload finished (or undone) by the next command, tampering noticed, no credential stored, and bad buckets,
credentials and URLs as one line each."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import s3fs
from conftest import MINI_SUITE, hello_suite, invoke, one_error, write_targets
from moto.server import ThreadedMotoServer

from auditor.archive import remote
from auditor.run.serve import Scripted, chat_body
from auditor.run.workers import Shard

KEY_ID = "AKIAAUDITORTEST0KEY7"
SECRET = "auditor-test-secret-Zq8WmP3vT6yB1nK4"
N = 300


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for the module's tests (each uses a bucket of its own)."""
    quiet = logging.getLogger("werkzeug")
    quiet.setLevel(logging.ERROR)
    quiet.addHandler(logging.NullHandler())
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Bucket:
    name: str
    url: str  # s3://NAME/team
    fs: Any

    def keys(self) -> list[str]:
        self.fs.invalidate_cache()
        return sorted(k.split("/", 1)[1] for k in self.fs.find(self.name))

    def read(self, key: str) -> bytes:
        return bytes(self.fs.cat_file(f"{self.name}/{key}"))


def aws_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_path: Path) -> None:
    for name in (
        *("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"),
        *("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        *("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"),
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))  # this machine's own AWS setup
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))  # plays no part
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("AUDITOR_ARCHIVE", raising=False)


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_path: Path) -> Bucket:
    aws_environment(monkeypatch, endpoint, tmp_path)
    name = f"audits-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(name)
    return Bucket(name, f"s3://{name}/team", fs)


def new_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Another machine: an empty working-copy cache, so everything comes from the bucket."""
    folder = tmp_path / f"cache-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


def rows(url: str, sql: str = "SELECT run_id, item_id, cached FROM responses") -> list[dict[str, Any]]:
    out = invoke("query", "--archive", url, "--format", "json", sql)
    assert out.exit_code == 0, out.output
    return list(json.loads(out.stdout))


def mini(tmp_path: Path, url: str) -> tuple[Path, Path]:
    suite = tmp_path / "mini.json"
    suite.write_text(json.dumps(MINI_SUITE), encoding="utf-8")
    return suite, write_targets(tmp_path / "t.json", {"name": "t", "base_url": url, "model": "m"})


def run_mini(tmp_path: Path, srv_url: str, archive: str) -> str:
    suite, targets = mini(tmp_path, srv_url)
    result = invoke("run", str(suite), "--targets", str(targets), "--archive", archive, "--quiet")
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


# --- a whole audit through the bucket -----------------------------------------------------------------------


def test_run_grade_report_query_verify_through_the_bucket(
    tmp_path: Path, bucket: Bucket, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = server()
    run_id = run_mini(tmp_path, srv.url, bucket.url)
    keys = bucket.keys()
    base = f"team/runs/{run_id}"
    for name in ("manifest.json", "ledger.jsonl", "suite.json", "run.parquet", "grades.parquet"):
        assert f"{base}/{name}" in keys
    assert any(k.startswith(f"{base}/responses/part-") for k in keys)
    assert not [k for k in keys if k.endswith(".tmp") or remote.MARKER in k]  # no push left half done
    manifest = json.loads(bucket.read(f"{base}/manifest.json"))
    assert manifest["status"] == "complete"

    # query reads the bucket in place: no working copy is made for it
    shutil.rmtree(tmp_path / "cache")
    assert len(rows(bucket.url)) == 7
    assert not (tmp_path / "cache").exists()

    graded = invoke("grade", run_id, "--archive", bucket.url)
    assert graded.exit_code == 0, graded.output
    assert "7 graded: 6 pass, 1 fail" in graded.stdout
    report = invoke("report", "latest", "--format", "html", "--out", str(tmp_path / "reports"), "--archive", bucket.url)
    assert report.exit_code == 0, report.output
    assert run_id in (tmp_path / "reports" / f"audit-mini-{run_id}.html").read_text(encoding="utf-8")

    new_cache(monkeypatch, tmp_path)  # another machine sees the run, graded, and verifies it from the bucket alone
    verified = invoke("verify", "--archive", bucket.url)
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith(f"{run_id}: ok,")
    listed = invoke("runs", "--archive", bucket.url)
    assert listed.exit_code == 0 and run_id in listed.stdout and "complete" in listed.stdout
    outcomes = rows(bucket.url, "SELECT outcome, count(*) AS n FROM grades GROUP BY ALL ORDER BY outcome")
    assert outcomes == [{"outcome": "fail", "n": 1}, {"outcome": "pass", "n": 6}]
    assert len(srv.requests) == 7  # grading, report and verify called no model

    # no credential anywhere: not in any object of the bucket, not in the working copies
    stored = [bucket.read(k) for k in bucket.keys()]
    cached = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "cache" in p.parts[len(tmp_path.parts)]]
    assert stored and cached
    for blob in stored + cached:
        assert KEY_ID.encode() not in blob and SECRET.encode() not in blob


def test_a_tampered_object_fails_verify_and_report(
    tmp_path: Path, bucket: Bucket, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = run_mini(tmp_path, server().url, bucket.url)
    (part,) = [k for k in bucket.keys() if "/responses/part-" in k]
    bucket.fs.pipe_file(f"{bucket.name}/{part}", bucket.read(f"team/runs/{run_id}/run.parquet"))
    for cache in ("same", "fresh"):  # the working copy follows the bucket, wherever it was pulled before
        if cache == "fresh":
            new_cache(monkeypatch, tmp_path)
        verified = invoke("verify", "--archive", bucket.url)
        assert verified.exit_code == 1, verified.output
        assert f"{run_id}: TAMPERED: responses/" in verified.stdout
        line = one_error(invoke("report", "--out", str(tmp_path / "r"), "--archive", bucket.url), 1)
        assert f"run {run_id} fails verification: responses/" in line


# --- kill -9 mid-run and resume ------------------------------------------------------------------------------


class Hello:
    """Says hello after `delay` seconds: slow at first (300 items at concurrency 2 take 30 s, so the kill lands
    mid-run), fast once the test sets `delay` to 0."""

    def __init__(self) -> None:
        self.delay = 0.2

    def __call__(self, request: dict[str, Any]) -> Scripted:
        return Scripted(chat_body("hello there", prompt_tokens=20, completion_tokens=10), delay_s=self.delay)


def big_suite(tmp_path: Path) -> Path:
    return hello_suite(tmp_path / "big.json", N)


def killed_mid_run(tmp_path: Path, bucket: Bucket, srv_url: str, when: Any = lambda: True) -> None:
    """Start `auditor run` in a real process on the bucket, wait until the bucket holds a part of it (pushed while
    the run goes on) and `when()` holds while the process is stopped, then kill -9 its whole process group."""
    targets = write_targets(
        tmp_path / "t.json", {"name": "t", "base_url": srv_url, "model": "m", "limits": {"concurrency": 2}}
    )
    args = ["run", str(big_suite(tmp_path)), "--targets", str(targets), "--archive", bucket.url, "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "auditor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never pushed a part to the bucket"
            if bucket_parts(bucket):
                os.killpg(proc.pid, signal.SIGSTOP)  # frozen while the bucket and the working copy are compared
                if when():
                    break
                os.killpg(proc.pid, signal.SIGCONT)
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def bucket_parts(bucket: Bucket) -> set[str]:
    """The response parts in the bucket that its ledger records (a part uploaded before its ledger is not yet)."""
    keys = bucket.keys()
    recorded = set()
    for key in [k for k in keys if k.endswith("/ledger.jsonl")]:
        for line in bucket.read(key).decode().splitlines():
            recorded.add(f"{key.rsplit('/', 1)[0]}/{json.loads(line)['file']}")
    return {k.rsplit("/", 1)[1] for k in keys if "/responses/part-" in k and k in recorded}


def bucket_manifest(bucket: Bucket) -> dict[str, Any]:
    (key,) = [k for k in bucket.keys() if k.endswith("/manifest.json")]
    return dict(json.loads(bucket.read(key)))


def test_kill_9_mid_run_then_resume_from_the_bucket(
    tmp_path: Path, bucket: Bucket, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hello = Hello()
    srv = server(hello)
    killed_mid_run(tmp_path, bucket, srv.url)
    manifest = bucket_manifest(bucket)
    assert manifest["status"] == "running"  # killed: no chance to mark anything
    assert manifest["argv"][manifest["argv"].index("--archive") + 1] == bucket.url  # the URL, and no secret
    new_cache(monkeypatch, tmp_path)  # resumed on another machine: only the bucket counts
    run_id = bucket_manifest(bucket)["run_id"]
    verified = invoke("verify", run_id, "--archive", bucket.url)
    assert verified.exit_code == 0, verified.output  # the bucket held a consistent prefix of the run
    before = rows(bucket.url)
    assert 0 < len(before) < N
    assert len({r["item_id"] for r in before}) == len(before)
    sent_before = len(srv.requests)
    hello.delay = 0.0

    resumed = invoke("run", "--resume", run_id, "--archive", bucket.url, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.strip().splitlines()[-1] == run_id
    after = rows(bucket.url)
    assert len(after) == N and len({r["item_id"] for r in after}) == N  # nothing lost, nothing doubled
    assert len(srv.requests) - sent_before == N - len(before)  # only what the bucket lacked was sent
    assert bucket_manifest(bucket)["status"] == "complete"
    keys = bucket.keys()
    parts = [k for k in keys if "/responses/" in k]
    assert parts == [f"team/runs/{run_id}/responses/part-c0000.parquet"]  # compacted; the parts removed remotely
    assert not [k for k in keys if k.endswith(".tmp") or remote.MARKER in k]
    new_cache(monkeypatch, tmp_path)
    verified = invoke("verify", run_id, "--archive", bucket.url)
    assert verified.exit_code == 0, verified.output


def test_kill_9_then_resume_on_the_same_machine_uploads_what_the_bucket_missed(
    tmp_path: Path, bucket: Bucket, server: Any
) -> None:
    hello = Hello()
    srv = server(hello)
    cache = tmp_path / "cache" / "auditor" / "archives"

    def local_parts() -> set[str]:
        return {p.name for p in cache.glob("*/archive/runs/*/responses/part-*.parquet")}

    # killed when the working copy holds a part the bucket does not (stored after the last push)
    killed_mid_run(tmp_path, bucket, srv.url, when=lambda: local_parts() > bucket_parts(bucket))
    in_bucket = len(rows(bucket.url))
    (copy,) = cache.glob("*/archive")
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in copy.glob("runs/*/responses/part-*.parquet"))
    pending = sum(pq.ParquetFile(p).metadata.num_rows for p in copy.glob("runs/*/responses/part-*.parquet.tmp"))
    assert 0 < in_bucket < kept < N
    sent_before = len(srv.requests)
    hello.delay = 0.0

    run_id = bucket_manifest(bucket)["run_id"]
    resumed = invoke("run", "--resume", run_id, "--archive", bucket.url, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    after = rows(bucket.url)
    assert len(after) == N and len({r["item_id"] for r in after}) == N
    assert N - kept - pending <= len(srv.requests) - sent_before <= N - kept  # the copy's replies were not resent
    assert bucket_manifest(bucket)["status"] == "complete"


# --- a push interrupted half way ---------------------------------------------------------------------------


FIXED = {
    **MINI_SUITE,
    "challenges": [
        {**c, "probes": [{**p, "pass_if": {**p["pass_if"], "values": ["Paris"]}} for p in c["probes"]]}
        if c["id"] == "facts"
        else c
        for c in MINI_SUITE["challenges"]
    ],
}


@pytest.mark.parametrize("cache", ["same", "fresh"])
@pytest.mark.parametrize("stop_at", ["copy", "ledger"])
def test_an_interrupted_push_is_finished_or_undone_by_the_next_command(
    tmp_path: Path, bucket: Bucket, server: Any, monkeypatch: pytest.MonkeyPatch, stop_at: str, cache: str
) -> None:
    run_id = run_mini(tmp_path, server().url, bucket.url)
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps(FIXED), encoding="utf-8")
    real = remote.open_fs

    def failing(url: str) -> tuple[Any, str]:
        fs, root = real(url)
        if stop_at == "copy":  # after the ledger: the push is committed, its replaced files still NAME.tmp
            fs.copy = lambda *a, **k: (_ for _ in ()).throw(ConnectionError("connection lost"))
        else:  # before the ledger: nothing is committed
            upload = fs.pipe_file

            def pipe_file(path: str, data: bytes, **kwargs: Any) -> Any:
                if path.endswith("/ledger.jsonl"):
                    raise ConnectionError("connection lost")
                return upload(path, data, **kwargs)

            fs.pipe_file = pipe_file
        return fs, root

    monkeypatch.setattr(remote, "open_fs", failing)
    line = one_error(invoke("grade", run_id, "--suite", str(fixed), "--archive", bucket.url), 1)
    assert "cannot reach the object store" in line and "uploaded by the next command" in line
    monkeypatch.setattr(remote, "open_fs", real)
    keys = bucket.keys()
    assert f"team/runs/{run_id}/grades.parquet.tmp" in keys  # the new grades went up under a temporary name
    plan = json.loads(bucket.read(f"team/runs/{run_id}/{remote.MARKER}"))
    in_bucket = hashlib.sha256(bucket.read(f"team/runs/{run_id}/ledger.jsonl")).hexdigest()
    assert (in_bucket == plan["ledger_sha256"]) == (stop_at == "copy")  # the ledger went up, or not

    passes = "SELECT count(*) AS n FROM grades WHERE outcome = 'pass'"
    expected = 7 if stop_at == "copy" else 6  # a reader sees the push whole, or not at all
    assert rows(bucket.url, passes) == [{"n": expected}]
    if cache == "fresh":  # the next command on another machine; else on this one, whose copy holds the new grades
        new_cache(monkeypatch, tmp_path)
    verified = invoke("verify", run_id, "--archive", bucket.url)
    assert verified.exit_code == 0, verified.output
    assert not [k for k in bucket.keys() if k.endswith(".tmp") or remote.MARKER in k]  # and it was tidied
    if cache == "same":
        expected = 7  # the copy that failed to upload the new grades uploaded them this time
    assert rows(bucket.url, passes) == [{"n": expected}]
    new_cache(monkeypatch, tmp_path)
    assert invoke("verify", run_id, "--archive", bucket.url).exit_code == 0


# --- bad input -----------------------------------------------------------------------------------------------


def test_a_bucket_that_does_not_exist(bucket: Bucket, tmp_path: Path, server: Any) -> None:
    suite, targets = mini(tmp_path, server().url)
    url = f"s3://no-such-{bucket.name}/x"
    for args in (["run", str(suite), "--targets", str(targets), "--quiet"], ["verify"], ["query", "SELECT 1"]):
        line = one_error(invoke(*args, "--archive", url), 2)
        assert line == f"error: {url}: the bucket does not exist (create it first, or check its name)"


def test_an_empty_prefix_is_no_archive(bucket: Bucket, tmp_path: Path) -> None:
    for args in (["report"], ["verify"], ["query", "SELECT 1"], ["runs"]):
        line = one_error(invoke(*args, "--archive", bucket.url), 2)
        assert line.startswith(f"error: {bucket.url}: no archive here"), line
        assert str(tmp_path) not in line  # named by its URL, not its working copy


def test_an_archive_without_runs_is_named_by_its_url(bucket: Bucket) -> None:
    bucket.fs.pipe_file(f"{bucket.name}/team/notes.txt", b"audits of the support assistant go here")
    result = invoke("runs", "--archive", bucket.url)
    assert (result.exit_code, result.stdout) == (0, f"no runs in {bucket.url}\n")


def test_missing_credentials(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for args in (["verify"], ["query", "SELECT 1"]):
        line = one_error(invoke(*args, "--archive", bucket.url), 1)
        assert "no credentials for the object store" in line and "AWS_ACCESS_KEY_ID" in line


def test_a_misconfigured_profile(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    for args in (["verify"], ["query", "SELECT 1"]):
        line = one_error(invoke(*args, "--archive", bucket.url), 1)
        assert "the AWS configuration is incomplete" in line and "no-such-profile" in line


def test_an_unreachable_endpoint(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    started = time.monotonic()
    line = one_error(invoke("verify", "--archive", bucket.url), 1)
    assert line.startswith(f"error: {bucket.url}: cannot reach the object store")
    assert time.monotonic() - started < 20


def test_bad_archive_urls(bucket: Bucket) -> None:
    cases = {
        "s3://Not_A_Bucket!/x": "not a valid bucket or object name",
        f"s3://{KEY_ID}:{SECRET}@{bucket.name}/x": "credentials or options in the archive URL are refused",
        f"s3://{bucket.name}/x?endpoint=y": "credentials or options in the archive URL are refused",
        "s3://": "name a bucket",
        "nosuchfs://bucket/x": "unknown storage 'nosuchfs://'",
        "file://relative/path": "a file:// archive names an absolute folder",
    }
    for url, expected in cases.items():
        line = one_error(invoke("verify", "--archive", url), 2)
        assert expected in line, line
        assert SECRET not in line


def test_without_s3fs_the_extra_is_named(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "s3fs" or m.startswith("s3fs.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "s3fs", None)  # import s3fs now fails, as where it is not installed
    registry = importlib.import_module("fsspec.registry")._registry
    for protocol in ("s3", "s3a"):  # and fsspec forgets the class it imported earlier
        monkeypatch.delitem(registry, protocol, raising=False)
    for args in (["verify"], ["query", "SELECT 1"]):
        line = one_error(invoke(*args, "--archive", bucket.url), 1)
        assert line == f"error: {bucket.url}: s3:// archives need the 's3' extra: pip install 'auditor[s3]'"


def test_file_urls_are_folders(tmp_path: Path, server: Any) -> None:
    folder = tmp_path / "audits"
    run_id = run_mini(tmp_path, server().url, f"file://{folder}")
    assert (folder / "runs" / run_id / "manifest.json").is_file()
    assert invoke("verify", "--archive", f"file://{folder}").exit_code == 0


def test_memory_urls_work_in_process(tmp_path: Path, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = f"memory://audits-{uuid.uuid4().hex[:8]}/x"
    run_id = run_mini(tmp_path, server().url, url)
    assert len(rows(url)) == 7
    new_cache(monkeypatch, tmp_path)
    verified = invoke("verify", "--archive", url)
    assert verified.exit_code == 0 and verified.stdout.startswith(f"{run_id}: ok")


def test_a_run_changed_by_another_writer_is_not_overwritten(
    tmp_path: Path, bucket: Bucket, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditor.archive.store import Archive
    from auditor.errors import ArchiveError

    run_id = run_mini(tmp_path, server().url, bucket.url)
    with pytest.raises(ArchiveError, match="changed in the store by another writer"):
        with remote.working_copy(bucket.url) as mine:
            new_cache(monkeypatch, tmp_path)  # meanwhile, another machine re-grades the run
            assert invoke("grade", run_id, "--archive", bucket.url).exit_code == 0
            Archive(mine).run(run_id).write_grades([])  # and this copy writes into the same run
    new_cache(monkeypatch, tmp_path)
    assert invoke("verify", run_id, "--archive", bucket.url).exit_code == 0
    assert len(rows(bucket.url, "SELECT * FROM grades")) == 7  # the other writer's grades stand


def test_a_second_command_meanwhile_uses_a_working_copy_of_its_own(
    tmp_path: Path, bucket: Bucket, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = run_mini(tmp_path, server().url, bucket.url)
    copies: list[Path] = []
    real = remote.WorkingCopy.__init__

    def spy(self: remote.WorkingCopy, url: str, folder: Path, fs: Any, root: str) -> None:
        copies.append(folder)
        real(self, url, folder, fs, root)

    monkeypatch.setattr(remote.WorkingCopy, "__init__", spy)
    with remote.working_copy(bucket.url) as busy:  # a long command holds the machine's working copy
        listed = invoke("runs", "--archive", bucket.url)
        assert listed.exit_code == 0 and run_id in listed.stdout
        assert copies[0] == busy.parent and copies[1].parent == busy.parent and copies[1].name.startswith("busy-")
        assert not copies[1].exists()  # tidied away
    assert invoke("verify", "--archive", bucket.url).exit_code == 0


# --- one run sent in shards from several machines through the bucket -----------------------------------------


def machine(tmp_path: Path, name: str, *args: str) -> subprocess.Popen[str]:
    """`auditor ARGS` as another machine would run it: a process with a working-copy cache of its own."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / f"machine-{name}")}
    return subprocess.Popen(
        [sys.executable, "-m", "auditor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def test_shards_on_several_machines_through_one_bucket(
    tmp_path: Path, bucket: Bucket, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hello = Hello()
    srv = server(hello)
    targets = write_targets(
        tmp_path / "t.json", {"name": "t", "base_url": srv.url, "model": "m", "limits": {"concurrency": 4}}
    )
    args = ["run", str(big_suite(tmp_path)), "--targets", str(targets), "--archive", bucket.url, "--run", "r7"]
    first, second = (machine(tmp_path, k, *args, "--shard", f"{k}/2", "--quiet") for k in ("1", "2"))
    try:  # machine 1 is killed once the bucket holds a part of its shard; machine 2 runs to the end
        deadline = time.monotonic() + 60
        while not committed_rows(bucket, "team/shards/s1of2/r7"):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    hello.delay = 0.0
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert out.strip() == "r7"
    keys = bucket.keys()
    assert not [k for k in keys if k.startswith("team/runs/")]  # nothing is a run before finalize
    assert {k.split("/")[2] for k in keys if k.startswith("team/shards/")} == {"s1of2", "s2of2"}

    new_cache(monkeypatch, tmp_path)  # a third machine: shard 1 is incomplete, so finalize names it
    missing = invoke("finalize", "r7", "--archive", bucket.url)
    assert missing.exit_code == 1 and "in shard 1/2 (" in one_error(missing, 1)
    sent = len(srv.requests)
    assert rows(bucket.url, "SELECT 1 FROM responses") == []  # no run holds them before finalize
    pushed = pushed_rows(bucket, "team/shards/s1of2/r7")  # what the killed machine's pushes committed
    taken_over = machine(tmp_path, "3", *args, "--shard", "1/2", "--quiet")  # another machine takes shard 1 over
    out, err = taken_over.communicate(timeout=120)
    assert taken_over.returncode == 0, err
    resent = len(srv.requests) - sent

    new_cache(monkeypatch, tmp_path)  # a fourth machine finalizes
    done = invoke("finalize", "r7", "--archive", bucket.url, "--quiet")
    assert done.exit_code == 0, done.output
    assert done.stdout.strip().splitlines()[-1] == "r7"
    after = rows(bucket.url)
    assert len(after) == N == len({r["item_id"] for r in after})  # nothing lost, nothing doubled
    assert {r["run_id"] for r in after} == {"r7"}
    assert 0 < pushed and resent == sum(Shard(0, 2).holds(r["item_id"]) for r in after) - pushed  # only the rest
    assert bucket_manifest_of(bucket, "runs/r7")["status"] == "complete"
    assert [k for k in bucket.keys() if k.startswith("team/runs/r7/responses/")] == [
        "team/runs/r7/responses/part-c0000.parquet"
    ]
    new_cache(monkeypatch, tmp_path)
    verified = invoke("verify", "r7", "--archive", bucket.url)
    assert verified.exit_code == 0, verified.output
    late = invoke(*args, "--shard", "2/2", "--quiet")
    assert late.exit_code == 2 and "already finalized" in one_error(late, 2)


def committed_rows(bucket: Bucket, folder: str) -> int:
    """`pushed_rows`, or 0 while the folder has no ledger in the bucket yet."""
    return pushed_rows(bucket, folder) if f"{folder}/ledger.jsonl" in bucket.keys() else 0


def pushed_rows(bucket: Bucket, folder: str) -> int:
    """The rows of the response parts the folder's ledger in the bucket records (what a push committed)."""
    import pyarrow as pa

    latest = {}
    for line in bucket.read(f"{folder}/ledger.jsonl").decode().splitlines():
        entry = json.loads(line)
        latest[entry["file"]] = entry["sha256"]
    parts = [name for name, digest in latest.items() if name.startswith("responses/") and digest != "removed"]
    return sum(pq.read_table(pa.BufferReader(bucket.read(f"{folder}/{name}"))).num_rows for name in parts)


def bucket_manifest_of(bucket: Bucket, folder: str) -> dict[str, Any]:
    return dict(json.loads(bucket.read(f"team/{folder}/manifest.json")))


def test_ray_tasks_send_their_shards_through_the_bucket(
    tmp_path: Path, bucket: Bucket, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray")
    hello = Hello()
    hello.delay = 0.01
    srv = server(hello)
    targets = write_targets(
        tmp_path / "t.json", {"name": "t", "base_url": srv.url, "model": "m", "limits": {"concurrency": 4}}
    )
    suite = hello_suite(tmp_path / "s.json", 60)
    # the tasks run in Ray's worker processes, each pulling a working copy of its own from the bucket (the
    # driver's is locked), as tasks on other nodes would
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        args = ["run", str(suite), "--targets", str(targets), "--archive", bucket.url, "--quiet"]
        result = invoke(*args, "--ray", "--workers", "2")
        dead = write_targets(tmp_path / "dead.json", {"name": "t", "base_url": "http://127.0.0.1:9/v1", "model": "m"})
        failed = invoke("run", str(suite), "--targets", str(dead), "--archive", bucket.url, "--ray", "--workers", "2")
    finally:
        ray.shutdown()
    line = one_error(failed, 1)
    assert "connection" in line and "--shard K/2 --run " in line and "then auditor finalize" in line
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    assert len(srv.requests) == 60
    keys = bucket.keys()
    shard_parts = {k.split("/")[2] for k in keys if k.startswith("team/shards/") and "/responses/part-" in k}
    assert shard_parts == {"s1of2", "s2of2"}  # each task wrote its own folder through the bucket
    assert [k for k in keys if k.startswith(f"team/runs/{run_id}/responses/")] == [
        f"team/runs/{run_id}/responses/part-c0000.parquet"
    ]
    manifest = bucket_manifest_of(bucket, f"runs/{run_id}")
    assert manifest["status"] == "complete" and manifest["shards"] == 2
    new_cache(monkeypatch, tmp_path)
    after = rows(bucket.url)
    assert len(after) == 60 == len({r["item_id"] for r in after})
    assert len(rows(bucket.url, "SELECT * FROM grades")) == 60  # graded as any run
    assert invoke("verify", run_id, "--archive", bucket.url).exit_code == 0


def test_a_run_left_half_built_is_never_uploaded(tmp_path: Path, bucket: Bucket, server: Any) -> None:
    from auditor.archive.objects import cache_folder

    run_mini(tmp_path, server().url, bucket.url)
    left = cache_folder(bucket.url) / "archive" / ".staging" / "0a1b" / "r1"  # a finalize killed while building
    (left / "responses").mkdir(parents=True)
    (left / "ledger.jsonl").write_text("{}\n")
    (left / "responses" / "part-s1of2-000000.parquet").write_bytes(b"half")
    assert invoke("runs", "--archive", bucket.url).exit_code == 0
    keys = bucket.keys()
    assert keys and not [k for k in keys if ".staging" in k]


def test_ray_through_the_bucket_refuses_an_attacker_and_names_a_missing_extra(
    tmp_path: Path, bucket: Bucket, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server().url
    suite, _ = mini(tmp_path, url)
    pair = [{"name": name, "base_url": url, "model": "m"} for name in ("t", "a")]
    targets = write_targets(tmp_path / "two.json", *pair)
    args = ["run", str(suite), "--targets", str(targets), "--target", "t", "--archive", bucket.url, "--ray"]
    attacker = invoke(*args, "--attacker", "a")
    assert "not as Ray tasks: run without --ray" in one_error(attacker, 2)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    assert "pip install 'auditor[ray]'" in one_error(invoke(*args), 1)
    assert not [k for k in bucket.keys() if "/runs/" in k or "/shards/" in k]  # nothing was stored
