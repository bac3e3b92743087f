"""`strata bench soak`: the whole chain under load for a bounded time, its pass criteria
enforced by the exit status. A short run must pass; a run during which a hop is killed must
fail and say why."""

import json
import os
import signal
import subprocess
import time

from conftest import strata_bin


def soak(tmp_path, *args, **kw):
    out = tmp_path / "soak.md"
    # The chain's run directory goes under TMPDIR, where the test can watch it.
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [strata_bin(), "bench", "soak", "--out", str(out), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )
    return proc, out


def read_report(out):
    report = json.loads(out.with_suffix(".json").read_text())
    (section,) = report["sections"]
    assert section["title"].startswith("Soak")
    return section


def test_thirty_seconds_of_mixed_load_pass(tmp_path):
    proc, out = soak(tmp_path, "--duration", "30s", "--concurrency", "8")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr + stdout
    section = read_report(out)
    data = section["data"]
    assert data["passed"] is True
    assert all(met for _, met in section["targets"]), section["targets"]
    assert data["requests"]["errors"] == 0, data["error_messages"]
    # Every kind of request was answered completely, many times.
    assert len(data["per_kind"]) == 4
    assert all(k["complete"] > 10 for k in data["per_kind"]), data["per_kind"]
    # Every hop and the function's environments were measured.
    roles = {p["role"] for p in data["processes"]}
    assert {"up", "llm-server", "gateway", "main-service", "lambda-service", "bedrock-emulator", "function"} <= roles, roles
    for p in data["processes"]:
        assert p["rss_bytes_after_warmup"] > 0 and p["fds_after_warmup"] > 0, p
        assert p["rss_growth"] <= data["rss_growth_limit"], p
        assert p["fds_at_end"] - p["fds_after_warmup"] <= data["fd_tolerance"], p
    assert "## Soak" in out.read_text()


def descendants(pid):
    """Every process below `pid`, as (pid, command line)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append((int(entry), [c.decode() for c in cmd if c]))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


def test_a_hop_killed_during_the_soak_fails_it(tmp_path):
    proc, out = soak(tmp_path, "--duration", "20s", "--warmup", "4s", "--concurrency", "8")
    try:
        # Once the soak's load is running (the gateway has logged many requests), kill the
        # gateway outright; `up` restarts it, but requests fail meanwhile.
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the load never started"
            logs = list(tmp_path.glob("strata-soak-*/gateway.log"))
            if logs and logs[0].read_text(errors="replace").count('"message":"request"') > 200:
                break
            time.sleep(0.05)
        (gateway,) = [p for p, cmd in descendants(proc.pid) if cmd[1:2] == ["gateway"]]
        os.kill(gateway, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, stdout
    assert "the soak failed" in stderr
    data = read_report(out)["data"]
    assert data["passed"] is False
    assert data["requests"]["errors"] > 0
    assert data["error_messages"], data
