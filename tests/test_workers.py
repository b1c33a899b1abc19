"""One run across processes and machines: worker processes, shards by hand with finalize, Ray tasks; limits and the
cost cap hold in total; kill -9 of a worker, of the launcher or of a shard loses nothing and doubles nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import hello_suite, invoke, write_targets
from test_adaptive import Attacker, query, scorer
from test_adaptive import suite_file as adaptive_suite
from test_adaptive import target as answer
from test_resume import manifest, start_cli, stored_rows, wait_for_parts

from auditor.archive import ledger
from auditor.errors import UsageError
from auditor.run.serve import Scripted, chat_body
from auditor.run.workers import Shard, parse_shard


def suite_of(tmp_path: Path, n: int, name: str = "many.json", prompt: str = "Say hello.") -> Path:
    return hello_suite(tmp_path / name, n, "many", prompt)


class Hello:
    """Says hello after `delay` seconds and counts the requests in flight at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __call__(self, request: dict[str, Any]) -> Scripted:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.delay)
        with self.lock:
            self.now -= 1
        return Scripted(chat_body("hello there", prompt_tokens=20, completion_tokens=10))


def setup(tmp_path: Path, url: str, concurrency: int = 2, **target: Any) -> tuple[Path, Path]:
    targets = {"name": "t", "base_url": url, "model": "m", "limits": {"concurrency": concurrency}, **target}
    return write_targets(tmp_path / "t.json", targets), tmp_path / "audits"


def one_error_line(output: str) -> str:
    assert "Traceback" not in output
    (line,) = [x for x in output.splitlines() if x.startswith("error:")]
    return line


def ledger_names(archive: Path) -> set[str]:
    (path,) = archive.glob("runs/*/ledger.jsonl")
    return {json.loads(line)["file"] for line in path.read_text().splitlines()}


def grandchildren(pid: int) -> list[int]:
    """The processes whose parent's parent is `pid` (worker processes fork from a child of the launcher)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    return [p for p, parent in parents.items() if parents.get(parent) == pid]


def wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_shards_partition_the_plan_and_name_their_files() -> None:
    ids = [f"{n * 2654435761 % 2**32:08x}" + "0" * 24 for n in range(500)]
    for count in (1, 2, 3):
        shards = [Shard(k, count) for k in range(count)]
        assert all(sum(s.holds(i) for s in shards) == 1 for i in ids)
        subs = [sub for s in shards for sub in (s.split(0, 2), s.split(1, 2))]
        assert all(sum(s.holds(i) for s in subs) == 1 for i in ids)
        assert all(s.holds(i) for s in shards for sub in (s.split(0, 2), s.split(1, 2)) for i in ids if sub.holds(i))
    assert str(parse_shard("2/3")) == "2/3" and parse_shard(" 1 / 1 ") == Shard(0, 1)
    half = Shard(1, 2)
    assert half.owns("responses/part-s2of2-000000.parquet") and half.owns("responses/part-s4of4-000003.parquet")
    assert not half.owns("responses/part-s1of2-000000.parquet") and not half.owns("responses/part-000000.parquet")
    for bad in ("3/2", "0/2", "garbage", "1/0", "-1/2", "2/"):
        with pytest.raises(UsageError):
            parse_shard(bad)


def test_bad_shard_options_are_one_line_each(tmp_path: Path) -> None:
    suite = suite_of(tmp_path, 3)
    targets, archive = setup(tmp_path, "http://127.0.0.1:9/v1")
    common = [str(suite), "--targets", str(targets), "--archive", str(archive)]
    for extra, says in (
        (["--shard", "3/2", "--run", "r1"], "1 <= K <= N"),
        (["--shard", "0/2", "--run", "r1"], "got '0/2'"),
        (["--shard", "garbage", "--run", "r1"], "got 'garbage'"),
        (["--shard", "1/2"], "go together"),
        (["--run", "r1"], "go together"),
        (["--shard", "1/2", "--run", "../x"], "--run takes a run id"),
        (["--shard", "1/2", "--run", "r1", "--ray"], "not with --resume or --ray"),
    ):
        result = invoke("run", *common, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert says in one_error_line(result.output)
    assert not (archive / "runs").exists()  # nothing was created
    assert invoke("finalize", "nope", "--archive", str(archive)).exit_code == 2


def test_workers_split_the_run_the_limits_and_the_tallies(tmp_path: Path, server: Any, monkeypatch: Any) -> None:
    from multiprocessing import forkserver

    forkserver.ensure_running()  # workers fork from a process started before the key was set: they get it anyway
    monkeypatch.setenv("WORKER_TEST_KEY", "sk-worker-test")
    hello = Hello(0.02)
    srv = server(hello)
    targets, archive = setup(tmp_path, srv.url, concurrency=4, api_key_env="WORKER_TEST_KEY")
    suite = suite_of(tmp_path, 200)
    result = invoke("run", str(suite), "--targets", str(targets), "--archive", str(archive), "--workers", "2")
    assert result.exit_code == 0, result.output
    rows = stored_rows(archive)
    assert len(rows) == 200 == len({r["item_id"] for r in rows}) == len(srv.requests)
    assert hello.most <= 4  # two workers with two slots each: the target's limit holds in total
    posts = [headers for method, _, headers in srv.calls if method == "POST"]
    assert len(posts) == 200 and {h["authorization"] for h in posts} == {"Bearer sk-worker-test"}
    names = ledger_names(archive)
    assert any(n.startswith("responses/part-s1of2-") for n in names)
    assert any(n.startswith("responses/part-s2of2-") for n in names)
    assert manifest(archive)["status"] == "complete"
    assert list((next(archive.glob("runs/*")) / "responses").iterdir())[0].name.startswith("part-c")  # compacted
    assert "[t] 200/200 done" in result.stderr  # the launcher's progress sums the workers'
    assert invoke("verify", "--archive", str(archive)).exit_code == 0


def test_workers_share_the_cost_cap(tmp_path: Path, server: Any) -> None:
    srv = server(Hello(0.01))
    prices = {"price_input_per_mtok": 1000.0, "price_output_per_mtok": 1000.0}
    targets, archive = setup(tmp_path, srv.url, facts=prices)
    suite = suite_of(tmp_path, 100)
    # each reply costs $0.03; two workers with $0.30 each store at most 20 replies in all
    args = ["run", str(suite), "--targets", str(targets), "--archive", str(archive), "--quiet", "--workers", "2"]
    result = invoke(*args, "--max-cost", "0.6")
    assert result.exit_code == 0, result.output
    m = manifest(archive)
    rows = stored_rows(archive)
    assert m["status"] == "capped" and 0 < len(rows) <= 20
    assert m["spent_usd"] <= 0.6 and m["spent_usd"] == round(0.03 * len(rows), 6)
    resumed = invoke("run", "--resume", m["run_id"], "--archive", str(archive), "--quiet", "--workers", "2")
    assert resumed.exit_code == 0, resumed.output
    assert manifest(archive)["spent_usd"] <= 0.6  # the cap holds across resumes too


def two_workers_storing(tmp_path: Path, server: Any) -> tuple[Hello, Any, Path, subprocess.Popen[str]]:
    """`auditor run --workers 2` on 300 slow items, once both workers run and a part is stored:
    (the endpoint's responder, its server, the archive, the launcher process)."""
    hello = Hello(0.2)
    srv = server(hello)
    targets, archive = setup(tmp_path, srv.url)
    args = ["run", str(suite_of(tmp_path, 300)), "--targets", str(targets), "--archive", str(archive), "--quiet"]
    proc = start_cli(*args, "--workers", "2")
    wait_for(lambda: len(grandchildren(proc.pid)) == 2)
    wait_for_parts(archive, 1)
    return hello, srv, archive, proc


def test_a_worker_killed_mid_run_loses_nothing_and_resume_completes(tmp_path: Path, server: Any) -> None:
    hello, srv, archive, proc = two_workers_storing(tmp_path, server)
    os.kill(grandchildren(proc.pid)[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    line = one_error_line(err)
    assert "stopped unexpectedly (killed by signal 9)" in line and "auditor run --resume" in line
    before = stored_rows(archive)
    assert 0 < len(before) < 300 and len({r["item_id"] for r in before}) == len(before)
    m = manifest(archive)
    assert m["status"] == "interrupted"
    hello.delay, sent = 0.0, len(srv.requests)
    resumed = invoke("run", "--resume", m["run_id"], "--archive", str(archive), "--quiet", "--workers", "2")
    assert resumed.exit_code == 0, resumed.output
    after = stored_rows(archive)
    assert len(after) == 300 == len({r["item_id"] for r in after})
    assert len(srv.requests) - sent <= 300 - len(before) + 2  # at most the two requests in flight when killed
    assert invoke("verify", "--archive", str(archive)).exit_code == 0


def test_the_launcher_killed_takes_its_workers_along_and_resume_completes(tmp_path: Path, server: Any) -> None:
    hello, srv, archive, proc = two_workers_storing(tmp_path, server)
    workers = grandchildren(proc.pid)
    proc.kill()
    proc.wait()
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in workers), timeout=10)  # no orphan writes on
    before = stored_rows(archive)
    assert 0 < len(before) < 300 and manifest(archive)["status"] == "running"
    hello.delay, sent = 0.0, len(srv.requests)
    resumed = invoke("run", "--resume", manifest(archive)["run_id"], "--archive", str(archive), "--quiet")
    assert resumed.exit_code == 0, resumed.output
    after = stored_rows(archive)
    assert len(after) == 300 == len({r["item_id"] for r in after})
    assert len(srv.requests) - sent == 300 - len(before)


def test_ctrl_c_stops_the_workers_cleanly(tmp_path: Path, server: Any) -> None:
    srv = server(Hello(0.2))
    targets, archive = setup(tmp_path, srv.url)
    args = ["run", str(suite_of(tmp_path, 300)), "--targets", str(targets), "--archive", str(archive), "--quiet"]
    proc = start_cli(*args, "--workers", "2")
    wait_for_parts(archive, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "interrupted" in one_error_line(err)
    rows = stored_rows(archive)
    assert manifest(archive)["status"] == "interrupted"
    assert 0 < len(rows) < 300 and len({r["item_id"] for r in rows}) == len(rows)
    assert invoke("verify", "--archive", str(archive)).exit_code == 0  # every worker flushed before the seal


def shard_names(archive: Path, run_id: str) -> dict[str, set[str]]:
    """What each shard folder of the run records in its own ledger: folder name -> file names."""
    return {
        path.parent.parent.name: {json.loads(line)["file"] for line in path.read_text().splitlines()}
        for path in archive.glob(f"shards/*/{run_id}/ledger.jsonl")
    }


def shard_rows(archive: Path) -> list[str]:
    """The item ids every shard folder stores (before finalize, no run shows them)."""
    import pyarrow.parquet as pq

    return [i for p in archive.glob("shards/*/*/responses/*.parquet") for i in pq.read_table(p)["item_id"].to_pylist()]


def test_two_shard_processes_fill_one_run_then_finalize(tmp_path: Path, server: Any) -> None:
    hello = Hello(0.01)
    srv = server(hello)
    targets, archive = setup(tmp_path, srv.url, concurrency=4)
    suite = suite_of(tmp_path, 120)
    args = ["run", str(suite), "--targets", str(targets), "--archive", str(archive), "--run", "audit-1"]
    # started together; the first shard sends with two worker processes (each a quarter of the run)
    procs = [start_cli(*args, "--shard", f"{k}/2", "--quiet", "--workers", str(3 - k)) for k in (1, 2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "audit-1"
    assert hello.most <= 4  # each shard took half the target's limit, each of its workers half of that
    folders = shard_names(archive, "audit-1")  # each shard wrote a folder of its own, sealed in its own ledger
    parts = {k: {n.split("-")[1] for n in names if n.startswith("responses/part-")} for k, names in folders.items()}
    assert parts == {"s1of2": {"s1of4", "s3of4"}, "s2of2": {"s2of2"}}
    assert not (archive / "runs").exists() and not (archive / ".staging").exists()
    assert sorted(shard_rows(archive)) == sorted(set(shard_rows(archive))) and len(shard_rows(archive)) == 120
    listed = invoke("runs", "--archive", str(archive))
    assert listed.exit_code == 0 and listed.stdout.splitlines() == [
        "audit-1: sent in shards, not finalized: shard 1/2, 2/2 stored, 120 of 120 planned items; once every shard "
        "is: auditor finalize audit-1"
    ]
    done = invoke("finalize", "audit-1", "--archive", str(archive))
    assert done.exit_code == 0, done.output
    assert done.stdout.strip().splitlines()[-1] == "audit-1"
    m = manifest(archive)
    assert m["status"] == "complete" and m["shards"] == 2 and m["run_id"] == "audit-1"
    table = invoke("runs", "--archive", str(archive)).stdout
    assert "not finalized" not in table and "audit-1" in table and "complete" in table
    rows = stored_rows(archive)
    assert len(rows) == 120 == len({r["item_id"] for r in rows}) == len(srv.requests)
    assert {r["run_id"] for r in rows} == {"audit-1"}
    assert invoke("verify", "--archive", str(archive)).exit_code == 0
    assert not (archive / ".staging").exists()
    again = invoke("finalize", "audit-1", "--archive", str(archive))
    assert again.exit_code == 2 and "already finalized" in one_error_line(again.output)
    assert len(stored_rows(archive)) == 120 and invoke("verify", "--archive", str(archive)).exit_code == 0
    late = invoke(*args, "--shard", "1/2")
    assert late.exit_code == 2 and "already finalized" in one_error_line(late.output)


def test_finalize_names_missing_shards_and_a_killed_shard_is_run_again(tmp_path: Path, server: Any) -> None:
    hello = Hello(0.2)
    srv = server(hello)
    targets, archive = setup(tmp_path, srv.url)
    suite = suite_of(tmp_path, 200)
    args = ["run", str(suite), "--targets", str(targets), "--archive", str(archive), "--run", "audit-2", "--quiet"]
    archive.mkdir()
    nothing = invoke("finalize", "audit-2", "--archive", str(archive))
    assert nothing.exit_code == 2 and "no shard of run audit-2" in one_error_line(nothing.output)
    proc = start_cli(*args, "--shard", "1/2")
    wait_for(lambda: list(archive.glob("shards/s1of2/audit-2/responses/part-*.parquet")))
    proc.kill()
    proc.wait()
    hello.delay = 0.0
    assert invoke(*args, "--shard", "2/2").exit_code == 0
    missing = invoke("finalize", "audit-2", "--archive", str(archive))
    assert missing.exit_code == 1
    line = one_error_line(missing.output)
    assert "is not complete" in line and "in shard 1/2 (" in line and "--shard K/2 --run audit-2" in line
    assert not (archive / "runs").exists()  # nothing changed
    assert f"{len(shard_rows(archive))} of 200 planned items" in invoke("runs", "--archive", str(archive)).stdout
    resume = invoke("run", "--resume", "audit-2", "--archive", str(archive))
    assert resume.exit_code == 2 and "not finalized yet" in one_error_line(resume.output)
    before, sent = len(shard_rows(archive)), len(srv.requests)
    rerun = invoke(*args, "--shard", "1/2")
    assert rerun.exit_code == 0, rerun.output
    assert len(srv.requests) - sent == 200 - before  # only what the killed shard had not stored
    assert invoke("finalize", "audit-2", "--archive", str(archive)).exit_code == 0
    rows = stored_rows(archive)
    assert len(rows) == 200 == len({r["item_id"] for r in rows})
    assert invoke("verify", "--archive", str(archive)).exit_code == 0


def test_a_shard_of_another_suite_or_split_is_refused(tmp_path: Path, server: Any) -> None:
    srv = server(Hello())
    targets, archive = setup(tmp_path, srv.url)
    common = ["--targets", str(targets), "--archive", str(archive), "--run", "audit-3", "--quiet"]
    assert invoke("run", str(suite_of(tmp_path, 10)), *common, "--shard", "1/2").exit_code == 0
    other = suite_of(tmp_path, 10, "other.json", prompt="Say hello twice.")
    for suite, spec, says in (
        (other, "2/2", "exists with another suite"),
        (suite_of(tmp_path, 10), "1/3", "is split in 2 shards (shard 1/2 is stored), not 3"),
        (suite_of(tmp_path, 10), "2/2 --seed 7", "is sent with --seed 0 (shard 1/2 is stored), not 7"),
    ):
        result = invoke("run", str(suite), *common, "--shard", *spec.split())
        assert result.exit_code == 2 and says in one_error_line(result.output)
    attacker = invoke("run", str(other), *common, "--shard", "2/2", "--attacker", "t")
    assert attacker.exit_code == 2
    assert sorted(p.parent.name for p in archive.glob("shards/*/audit-3")) == ["s1of2"]  # nothing else created


def test_a_tampered_shard_is_not_finalized(tmp_path: Path, server: Any) -> None:
    targets, archive = setup(tmp_path, server(Hello()).url)
    args = ["run", str(suite_of(tmp_path, 20)), "--targets", str(targets), "--archive", str(archive), "--run", "a4"]
    for k in (1, 2):
        assert invoke(*args, "--shard", f"{k}/2", "--quiet").exit_code == 0
    (part,) = archive.glob("shards/s2of2/a4/responses/part-*.parquet")
    part.write_bytes(part.read_bytes()[:-8] + b"tampered")
    for args in ([], ["a4"]):  # every run and shard, or the run's shards by its id
        checked = invoke("verify", *args, "--archive", str(archive))
        assert checked.exit_code == 1
        assert checked.stdout.splitlines()[0].startswith("a4 shard 1/2: ok, ")
        assert checked.stdout.splitlines()[1].startswith("a4 shard 2/2: TAMPERED: responses/part-s2of2-")
    result = invoke("finalize", "a4", "--archive", str(archive))
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert "run a4 fails verification" in line and "changed after it was recorded" in line and "shard 2/2" in line
    assert not (archive / "runs").exists()


def test_adaptive_attacks_follow_the_workers_in_the_launcher(tmp_path: Path, server: Any) -> None:
    attack = {"id": "pair", "type": "pair", "family": "adaptive", "rounds": 5, "max_queries": 10}
    path = adaptive_suite(tmp_path, attack)
    suite = json.loads(path.read_text())
    hi = {"id": "many", "prompt": "Say hi", "samples": 6, "pass_if": {"type": "refusal"}}
    suite["challenges"][0]["probes"].append(hi)
    path.write_text(json.dumps(suite))
    targets = write_targets(
        tmp_path / "t.json",
        {"name": "audited", "base_url": server(answer).url, "model": "m"},
        {"name": "attacker", "base_url": server(Attacker()).url, "model": "a"},
        {"name": "judge", "base_url": server(scorer).url, "model": "j"},
    )
    archive = tmp_path / "audits"
    helpers = ["--attacker", "attacker", "--judge", "judge", "--quiet"]
    result = invoke("run", str(path), "--targets", str(targets), "--archive", str(archive), *helpers, "--workers", "2")
    assert result.exit_code == 0, result.output
    rows = query(archive, "SELECT attack, count(*) AS n FROM responses GROUP BY ALL ORDER BY ALL")
    assert rows == [{"attack": "direct", "n": 7}, {"attack": "pair", "n": 1}]  # the search found its success
    assert any(n.startswith("responses/part-s2of2-") for n in ledger_names(archive))
    assert invoke("verify", "--archive", str(archive)).exit_code == 0


def test_ray_tasks_send_the_shards(tmp_path: Path, server: Any) -> None:
    ray = pytest.importorskip("ray")
    srv = server(Hello(0.01))
    targets, archive = setup(tmp_path, srv.url, concurrency=4)
    suite = suite_of(tmp_path, 60)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        args = ["run", str(suite), "--targets", str(targets), "--archive", str(archive), "--quiet"]
        result = invoke(*args, "--ray", "--workers", "2")
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    rows = stored_rows(archive)
    assert len(rows) == 60 == len({r["item_id"] for r in rows}) == len(srv.requests)
    names = ledger_names(archive)
    assert {n[: len("responses/part-s1of2")] for n in names if n.startswith("responses/part-s")} == {
        "responses/part-s1of2",
        "responses/part-s2of2",
    }
    assert manifest(archive)["status"] == "complete"


def test_ray_missing_is_one_line_naming_the_extra(tmp_path: Path, server: Any, monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    targets, archive = setup(tmp_path, server(Hello()).url)
    result = invoke("run", str(suite_of(tmp_path, 4)), "--targets", str(targets), "--archive", str(archive), "--ray")
    assert result.exit_code == 1
    assert "pip install 'auditor[ray]'" in one_error_line(result.output)


APPEND = """
import sys
from pathlib import Path
from auditor.archive import ledger
folder, k = Path(sys.argv[1]), sys.argv[2]
for n in range(40):
    path = folder / f"f{k}-{n}"
    path.write_text(f"{k} {n}")
    ledger.record(folder, path)
"""


def test_ledger_appends_from_several_processes_keep_one_chain(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", APPEND, str(tmp_path), str(k)]) for k in range(4)]
    assert [p.wait(60) for p in procs] == [0] * 4
    check = ledger.verify(tmp_path, None, finished=False)
    assert check.problems == () and check.files == 160


def test_finalize_of_a_run_not_sent_in_shards_or_sharded_by_an_earlier_version(tmp_path: Path, server: Any) -> None:
    from auditor.archive.store import Archive

    srv = server(Hello())
    targets, archive = setup(tmp_path, srv.url)
    args = ["run", str(suite_of(tmp_path, 10)), "--targets", str(targets), "--archive", str(archive), "--quiet"]
    run_id = invoke(*args).stdout.strip().splitlines()[-1]
    plain = invoke("finalize", run_id, "--archive", str(archive))
    assert plain.exit_code == 2 and "is a run not sent in shards (status complete): nothing changed" in plain.output
    run = Archive(archive).run(run_id)  # as the earlier layout left one: shards written into the run's own folder
    run.write_manifest(run.manifest().but(status="sharded", shards=2))
    old = invoke("finalize", run_id, "--archive", str(archive))
    assert old.exit_code == 2 and f"auditor run --resume {run_id} completes it" in one_error_line(old.output)
    resumed = invoke("run", "--resume", run_id, "--archive", str(archive), "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert manifest(archive)["status"] == "complete" and len(srv.requests) == 10
