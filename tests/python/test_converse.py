"""`strata converse` against a real `strata serve`: the output files field by field, the time
limit, resume after a kill, and errors that name the side."""

import csv
import datetime
import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from conftest import MODEL, free_port, strata_bin

SEED = "Why is the sky blue?"
# Short answers keep the tests quick; a threshold above 1 turns the repetition stop off so
# the turn count is deterministic.
ENV = {
    "STRATA_CONVERSE__ANSWER_MAX_TOKENS": "24",
    "STRATA_CONVERSE__FOLLOW_UP_MAX_TOKENS": "16",
    "STRATA_CONVERSE__REPETITION_THRESHOLD": "1.01",
}


def converse(server_url, *args, timeout=600, **kw):
    env = dict(os.environ, **ENV)
    return subprocess.run(
        [strata_bin(), "converse", "--server", server_url, "--model", MODEL, *args],
        env=env, capture_output=True, text=True, timeout=timeout, **kw,
    )


def read_jsonl(path):
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    assert lines[-1]["type"] == "summary"
    assert all(line["type"] == "turn" for line in lines[:-1])
    return lines[:-1], lines[-1]


def check_turn(turn, index, seed=None):
    assert turn["index"] == index
    assert isinstance(turn["question"], str) and turn["question"].strip()
    assert isinstance(turn["answer"], str) and turn["answer"].strip()
    if index == 1:
        assert turn["template"] == "seed"
        assert turn["follow_up_latency_ms"] is None
        if seed is not None:
            assert turn["question"] == seed
    else:
        assert turn["template"] == "respond"
        assert turn["follow_up_latency_ms"] > 0
    started = turn["started_at"]
    if not isinstance(started, datetime.datetime):  # YAML readers already give a datetime
        started = datetime.datetime.fromisoformat(started.replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()) < 3600
    assert turn["latency_ms"] > 0
    assert 0 < turn["ttft_ms"] <= turn["latency_ms"]
    assert turn["tokens_in"] > 0
    assert 0 < turn["tokens_out"] <= 24
    assert turn["tokens_per_sec"] > 0
    assert turn["server_timing"]["llm-server"] > 0


def test_three_turns_jsonl_field_by_field(server, tmp_path):
    out = tmp_path / "c.jsonl"
    r = converse(server.url, "--seed", SEED, "--turns", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "3 turns, stopped: turn_limit" in r.stdout
    turns, summary = read_jsonl(out)
    assert len(turns) == 3
    for i, t in enumerate(turns, 1):
        check_turn(t, i, SEED)
    # Each question after the seed was written from the previous answer.
    assert summary["seed"] == SEED
    assert summary["turns"] == 3
    assert summary["stop_reason"] == "turn_limit"
    assert summary["tokens_in"] == sum(t["tokens_in"] for t in turns)
    assert summary["tokens_out"] == sum(t["tokens_out"] for t in turns)
    lat = sorted(t["latency_ms"] for t in turns)
    assert abs(summary["latency_ms"]["mean"] - sum(lat) / 3) < 0.01
    assert summary["latency_ms"]["p50"] == lat[1]
    assert summary["latency_ms"]["p95"] == lat[2]
    assert summary["total_time_ms"] >= sum(lat)
    assert summary["answering"] == {"server": server.url, "model": MODEL}
    # By default the follow-up questions come from the engine inside the converse process.
    assert summary["follow_up"] == {"server": "embedded", "model": MODEL}
    assert summary["config"]["turn_limit"] == 3
    assert summary["config"]["template"] == "respond"
    assert summary["config"]["template_text"] == "How can you respond to the statement: {answer}?"
    assert not list(tmp_path.glob(".tmp*")), "no temporary files are left"


def test_csv_parses_with_the_csv_module_and_yaml_is_the_default(server, tmp_path):
    out = tmp_path / "c.csv"
    r = converse(server.url, "--seed", SEED, "--turns", "2", "--out", str(out), "--template", "comment")
    assert r.returncode == 0, r.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["index"] for row in rows] == ["1", "2"]
    assert rows[0]["question"] == SEED
    assert rows[1]["template"] == "comment"
    for row in rows:
        assert float(row["latency_ms"]) >= float(row["ttft_ms"]) > 0
        assert int(row["tokens_out"]) > 0
        assert "llm-server=" in row["server_timing"]
    summary = (tmp_path / "c.csv.summary.yaml").read_text()
    assert "stop_reason: turn_limit" in summary

    r = converse(server.url, "--seed", SEED, "--turns", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "conversation.yaml").read_text()
    assert text.startswith("summary:\n")
    doc = yaml.safe_load(text)
    assert [t["index"] for t in doc["turns"]] == [1, 2, 3]
    for i, t in enumerate(doc["turns"], 1):
        check_turn(t, i, SEED)
    summary = doc["summary"]
    assert (summary["turns"], summary["stop_reason"]) == (3, "turn_limit")
    assert summary["tokens_out"] == sum(t["tokens_out"] for t in doc["turns"])
    assert summary["answering"] == {"server": server.url, "model": MODEL}


def test_time_limit_is_respected(server, tmp_path):
    out = tmp_path / "t.jsonl"
    start = time.monotonic()
    r = converse(server.url, "--seed", SEED, "--turns", "1000", "--time-limit", "4s", "--out", str(out))
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    assert elapsed < 4 + 2, elapsed
    turns, summary = read_jsonl(out)
    assert summary["stop_reason"] == "time_limit"
    assert summary["turns"] == len(turns) < 1000
    assert [t["index"] for t in turns] == list(range(1, len(turns) + 1))


def test_resume_after_kill_neither_loses_nor_duplicates_a_turn(server, tmp_path):
    out = tmp_path / "r.jsonl"
    env = dict(os.environ, **ENV)
    proc = subprocess.Popen(
        [strata_bin(), "converse", "--server", server.url, "--model", MODEL, "--seed", SEED, "--turns", "4", "--out", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    first = None
    try:
        while time.monotonic() < deadline:
            if out.exists():
                turns, _ = read_jsonl(out)
                if turns:
                    first = turns
                    break
            assert proc.poll() is None, "converse finished before it could be killed"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert first, "no turn was written in time"
    killed_turns, killed_summary = read_jsonl(out)
    assert killed_summary["stop_reason"] is None  # still running when killed
    assert len(killed_turns) < 4

    r = converse(server.url, "--resume", "--turns", "4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    turns, summary = read_jsonl(out)
    assert [t["index"] for t in turns] == [1, 2, 3, 4]
    assert turns[: len(killed_turns)] == killed_turns, "finished turns are kept unchanged"
    for i, t in enumerate(turns, 1):
        check_turn(t, i, SEED)
    assert summary["stop_reason"] == "turn_limit"
    assert summary["seed"] == SEED


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_keeps_every_finished_turn(server, tmp_path, sig):
    out = tmp_path / "s.jsonl"
    env = dict(os.environ, **ENV)
    proc = subprocess.Popen(
        [strata_bin(), "converse", "--server", server.url, "--model", MODEL, "--seed", SEED, "--turns", "50", "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no turn was written in time"
            if out.exists() and read_jsonl(out)[0]:
                break
            time.sleep(0.05)
        before = len(read_jsonl(out)[0])
        proc.send_signal(sig)
        # The turn in flight is abandoned, not waited for.
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, stderr
    assert "interrupted" in stderr
    turns, summary = read_jsonl(out)
    assert summary["stop_reason"] == "interrupted"
    assert before <= len(turns) < 50
    assert summary["turns"] == len(turns)
    for i, t in enumerate(turns, 1):
        check_turn(t, i, SEED)
    # Only the conversation file is left: no temporary file from an interrupted write.
    assert [p.name for p in tmp_path.iterdir()] == ["s.jsonl"]

    # An interrupted conversation resumes where it stopped.
    r = converse(server.url, "--resume", "--turns", str(len(turns) + 1), "--out", str(out))
    assert r.returncode == 0, r.stderr
    resumed, summary = read_jsonl(out)
    assert resumed[: len(turns)] == turns
    assert len(resumed) == len(turns) + 1
    assert summary["stop_reason"] == "turn_limit"


def test_unreachable_answering_side_is_named(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "e.jsonl"
    r = converse(url, "--seed", SEED, "--turns", "2", "--out", str(out))
    assert r.returncode != 0
    assert f"answering side ({url})" in r.stderr
    assert "cannot reach" in r.stderr
    turns, summary = read_jsonl(out)
    assert turns == [] and summary["stop_reason"] == "error"


def test_unknown_model_is_named(server, tmp_path):
    out = tmp_path / "m.jsonl"
    env = dict(os.environ, **ENV)
    r = subprocess.run(
        [strata_bin(), "converse", "--server", server.url, "--model", "no-such-model:1b", "--seed", SEED, "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode != 0
    assert f"answering side ({server.url})" in r.stderr
    assert "no-such-model:1b" in r.stderr


def test_follow_up_side_failure_keeps_the_finished_turn(server, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "f.jsonl"
    r = converse(server.url, "--seed", SEED, "--turns", "3", "--follow-up-server", url, "--out", str(out))
    assert r.returncode != 0
    assert f"follow-up side ({url})" in r.stderr
    turns, summary = read_jsonl(out)
    assert len(turns) == 1
    check_turn(turns[0], 1, SEED)
    assert summary["stop_reason"] == "error"
    assert url in summary["stop_detail"]


def test_malformed_response_is_named(tmp_path):
    import http.server
    import threading

    class NotOllama(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>hello</html>\n")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotOllama)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        out = tmp_path / "x.jsonl"
        r = converse(url, "--seed", SEED, "--out", str(out), timeout=60)
        assert r.returncode != 0
        assert f"answering side ({url})" in r.stderr
        assert "malformed response" in r.stderr
        assert read_jsonl(out)[1]["stop_reason"] == "error"
    finally:
        httpd.shutdown()


def test_three_turns_down_the_chain_carry_every_hops_timing(make_server_module, tmp_path):
    from test_chain import HOPS, start_up

    chain = start_up(make_server_module, ["--run-dir", str(tmp_path / "run")])
    out = tmp_path / "chain.jsonl"
    r = converse(chain.url, "--seed", SEED, "--turns", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    turns, summary = read_jsonl(out)
    assert summary["stop_reason"] == "turn_limit"
    assert len(turns) == 3
    for i, t in enumerate(turns, 1):
        check_turn(t, i, SEED)
        assert set(HOPS) <= set(t["server_timing"]), t["server_timing"]
        # Outer hops include the inner ones.
        assert t["server_timing"]["llm-server"] >= t["server_timing"]["bedrock"] > 0


def test_many_seeds_in_parallel_each_get_a_file(server, tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("# questions\nWhat is rain?\n\nWhat is snow?\nWhat is hail?\n")
    r = converse(server.url, "--seeds", str(seeds), "--parallel", "2", "--turns", "2", "--out", str(tmp_path / "many.jsonl"))
    assert r.returncode == 0, r.stderr
    for n, seed in enumerate(["What is rain?", "What is snow?", "What is hail?"], 1):
        turns, summary = read_jsonl(tmp_path / f"many-{n:03}.jsonl")
        assert summary["seed"] == seed and summary["stop_reason"] == "turn_limit"
        assert [t["index"] for t in turns] == [1, 2]
        check_turn(turns[0], 1, seed)


def test_compare_writes_a_report_with_csv_and_svg_charts(server, tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("What is rain?\nWhat is snow?\n")
    out = tmp_path / "report"
    r = converse(server.url, "compare", "--templates", "respond,comment", "--seeds", str(seeds), "--turns", "2", "--parallel", "2", "--out-dir", str(out))
    assert r.returncode == 0, r.stderr
    with open(out / "templates.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["template"] for row in rows] == ["respond", "comment"]
    for row in rows:
        assert row["conversations"] == "2"
        assert float(row["mean_turns"]) == 2
        assert 0 < float(row["distinct_1"]) <= 1 and 0 < float(row["distinct_2"]) <= 1
        assert row["stop_reasons"] == "turn_limit=2"
    with open(out / "conversations.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4
    for chart in ["turns.svg", "answer-words.svg", "distinct-2.svg", "repetition.svg", "latency.svg"]:
        svg = (out / chart).read_text()
        assert svg.startswith("<svg") and "respond" in svg and "comment" in svg
    report = (out / "report.md").read_text()
    assert "| `respond` | 2 | 2.00 |" in report
    assert sorted(p.name for p in (out / "conversations").iterdir()) == ["comment-001.jsonl", "comment-002.jsonl", "respond-001.jsonl", "respond-002.jsonl"]
