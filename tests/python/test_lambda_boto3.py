"""boto3's `lambda` client against `strata lambda-service` running the real `bootstrap`, which
calls `strata bedrock-emulator` on the embedded model: the serverless half of the chain."""

import json
import os
import sys
import pathlib
import signal
import time

import boto3
import botocore.config
import pytest

from conftest import strata_bin

CREDS = {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "test-secret", "region_name": "us-east-1"}
EVENTS = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "aws" / "events"


def bootstrap():
    path = pathlib.Path(strata_bin()).with_name("bootstrap")
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it with cargo build --bins")
    return str(path)


def function_config(directory, path, env, **settings):
    """lambda-service's configuration of the function `strata`. A function sees only its own
    configuration, as on AWS (none of the service's environment), so the emulator's address
    goes in its `env` and the credentials it calls Bedrock with are its role's."""
    lines = ["[lambda_service.functions.strata]", f'path = "{path}"', *(f"{k} = {v}" for k, v in settings.items()),
             "", "[lambda_service.functions.strata.role_credentials]",
             f'access_key_id = "{CREDS["aws_access_key_id"]}"', f'secret_access_key = "{CREDS["aws_secret_access_key"]}"',
             "", "[lambda_service.functions.strata.env]", *(f'{k} = "{v}"' for k, v in env.items())]
    config = pathlib.Path(directory) / "lambda-service.toml"
    config.write_text("\n".join(lines) + "\n")
    return str(config)


@pytest.fixture(scope="module")
def lambda_url(make_server_module, tmp_path_factory):
    emulator = make_server_module(["--generator", "embedded"], command="bedrock-emulator")
    config = function_config(tmp_path_factory.mktemp("lambda"), bootstrap(), {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator.url})
    service = make_server_module(["--config", config], command="lambda-service")
    return service.url


def client(url):
    return boto3.client("lambda", endpoint_url=url, config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}), **CREDS)


def event(name, **changes):
    e = json.loads((EVENTS / name).read_text())
    e.update(changes)
    return e


def decode_stream(payload_chunks):
    """The function's streamed bytes: Lambda's metadata prelude (JSON + 8 NUL bytes), then
    one contract StreamChunk per line."""
    data = b"".join(payload_chunks)
    prelude, sep, body = data.partition(b"\0" * 8)
    assert sep, "the stream starts with the http-integration-response prelude"
    assert json.loads(prelude)["statusCode"] == 200
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_invoke_returns_the_contract_response(lambda_url):
    r = client(lambda_url).invoke(FunctionName="strata", Payload=json.dumps(event("generate.json", stream=False)))
    assert r["StatusCode"] == 200
    assert "FunctionError" not in r
    assert r["ExecutedVersion"] == "$LATEST"
    body = json.loads(r["Payload"].read())
    assert body["message"]["content"].strip()
    assert body["usage"]["completionTokens"] > 0
    assert r["ResponseMetadata"]["RequestId"]


def test_invoke_with_response_stream_delivers_chunks_as_generated(lambda_url):
    r = client(lambda_url).invoke_with_response_stream(FunctionName="strata", Payload=json.dumps(event("generate-stream.json")))
    assert r["StatusCode"] == 200
    chunks, arrivals, complete = [], [], None
    for e in r["EventStream"]:
        if "PayloadChunk" in e:
            chunks.append(e["PayloadChunk"]["Payload"])
            arrivals.append(time.monotonic())
        elif "InvokeComplete" in e:
            complete = e["InvokeComplete"]
    assert complete is not None and not complete.get("ErrorCode")
    lines = decode_stream(chunks)
    deltas = [c["kind"]["delta"]["content"] for c in lines if "delta" in c["kind"]]
    assert len(deltas) > 3 and "".join(deltas).strip()
    done = lines[-1]["kind"]["done"]
    assert done["usage"]["completionTokens"] >= len(deltas)
    # Several events, spread over the generation: not one buffered blob at the end.
    assert len(arrivals) > 3 and arrivals[-1] - arrivals[0] > 0.05


def test_an_unknown_model_is_a_function_error(lambda_url):
    r = client(lambda_url).invoke(FunctionName="strata", Payload=json.dumps(event("generate.json", model="vendor.none-v1:0", stream=False)))
    assert r["StatusCode"] == 200
    assert r["FunctionError"] == "Unhandled"
    body = json.loads(r["Payload"].read())
    assert body["errorType"] == "ModelNotFound"
    assert "vendor.none-v1:0" in body["errorMessage"]


def test_service_errors_are_lambdas(lambda_url):
    c = client(lambda_url)
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.invoke(FunctionName="nope", Payload=b"{}")
    with pytest.raises(c.exceptions.InvalidRequestContentException):
        c.invoke(FunctionName="strata", Payload=b"{not json")
    names = [f["FunctionName"] for f in c.list_functions()["Functions"]]
    assert names == ["strata"]
    assert c.get_function(FunctionName="strata")["Configuration"]["FunctionArn"].endswith(":function:strata")


@pytest.fixture(scope="module")
def instant_emulator(make_server_module):
    return make_server_module(["--generator", "instant"], command="bedrock-emulator")


def wait_for_port(port, proc, timeout=60):
    """Until something accepts connections on the port (cargo lambda's server answers a plain
    GET only once a function takes it, so HTTP cannot be the probe)."""
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not open after {timeout}s")


def test_cargo_lambdas_emulator_gets_the_same_payload_shape(make_server, instant_emulator, tmp_path):
    """Cross-check: the same bootstrap under `cargo lambda watch --only-lambda-apis` and under
    lambda-service answers the same event with the same payload."""
    import subprocess

    from conftest import free_port

    cargo_lambda = pathlib.Path(os.environ.get("STRATA_VENV", "")) / "bin" / "cargo-lambda"
    if not cargo_lambda.is_file():
        cargo_lambda = pathlib.Path(sys.executable).with_name("cargo-lambda")
    port = free_port()
    aws_env = {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": instant_emulator.url, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "test-secret"}
    log = open(tmp_path / "cargo-lambda.log", "w+")
    watch = subprocess.Popen([str(cargo_lambda), "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(port)],
                             cwd=EVENTS.parents[2] / "crates" / "lambda", stdout=log, stderr=subprocess.STDOUT)
    function = None
    try:
        wait_for_port(port, watch)
        env = dict(os.environ, **aws_env, AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{port}/.rt", AWS_LAMBDA_FUNCTION_NAME="_",
                   AWS_LAMBDA_FUNCTION_VERSION="1", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024")
        function = subprocess.Popen([bootstrap()], env=env, stdout=log, stderr=subprocess.STDOUT)
        e = event("generate.json", stream=False)
        theirs = client(f"http://127.0.0.1:{port}").invoke(FunctionName="_", Payload=json.dumps(e))
        ours_service = make_server(["--config", function_config(tmp_path, bootstrap(), {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": instant_emulator.url})], command="lambda-service")
        ours = client(ours_service.url).invoke(FunctionName="strata", Payload=json.dumps(e))
        assert theirs["StatusCode"] == ours["StatusCode"] == 200
        assert "FunctionError" not in theirs and "FunctionError" not in ours
        a, b = json.loads(theirs["Payload"].read()), json.loads(ours["Payload"].read())
        for body in (a, b):
            del body["timings"]  # durations differ run to run
        assert a == b
    finally:
        for p in (function, watch):
            if p is not None:
                p.kill()
                p.wait()


def test_stopping_the_service_kills_waiting_environments_without_a_panic(make_server, instant_emulator, tmp_path):
    """Environments long-polling `/next` when the service stops are killed, as on AWS: none
    is answered with something other than an event first (the Rust runtime panics on that)."""
    config = function_config(tmp_path, bootstrap(), {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": instant_emulator.url})
    service = make_server(["--config", config], command="lambda-service")
    r = client(service.url).invoke(FunctionName="strata", Payload=json.dumps(event("generate.json", stream=False)))
    assert r["StatusCode"] == 200 and "FunctionError" not in r
    # Every environment has asked for its next event by now (the one that answered asked again).
    deadline = time.monotonic() + 20
    while service.logs().count("function environment ready") < 4:
        assert time.monotonic() < deadline, service.logs()
        time.sleep(0.05)
    assert service.stop(signal.SIGTERM) == 0
    assert "panicked" not in service.logs(), service.logs()[-3000:]


def alive(pid):
    """Whether the process exists and is not a zombie awaiting its reaper."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_timeout_or_a_stop_ends_everything_the_environment_started(make_server, tmp_path):
    """A function started through a wrapper that does not `exec` (a shell bootstrap running the
    real one as its child): a timeout ends the whole environment, the child too, as AWS ends the
    sandbox; a survivor would finish its work and then panic on the Runtime API's 410."""
    # Eight words, three seconds apart: the invocation outlives its 300 ms timeout by far.
    emulator = make_server(["--generator", "instant"], env={"STRATA_BEDROCK_EMULATOR__INSTANT__WORD_DELAY_MS": "3000"}, command="bedrock-emulator")
    pids = tmp_path / "pids"
    wrapper = tmp_path / "bootstrap"
    wrapper.write_text('#!/bin/sh\n"$STRATA_TEST_BOOTSTRAP" &\necho $! >> "$STRATA_TEST_PIDS"\nwait\n')
    wrapper.chmod(0o755)
    env = {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator.url, "STRATA_TEST_BOOTSTRAP": bootstrap(), "STRATA_TEST_PIDS": str(pids)}
    config = function_config(tmp_path, wrapper, env, concurrency=1, timeout_ms=300)
    service = make_server(["--config", config], command="lambda-service")

    r = client(service.url).invoke(FunctionName="strata", Payload=json.dumps(event("generate.json", stream=False)))
    assert r["FunctionError"] == "Unhandled"
    assert "Task timed out" in r["Payload"].read().decode()
    first = int(pids.read_text().split()[0])
    deadline = time.monotonic() + 10  # far less than the 21 s the timed-out generation would run on
    while alive(first):
        assert time.monotonic() < deadline, "the timed-out environment's child is still running"
        time.sleep(0.05)

    # The restarted environment's child goes at shutdown as well.
    deadline = time.monotonic() + 20
    while len(pids.read_text().split()) < 2:
        assert time.monotonic() < deadline, service.logs()[-3000:]
        time.sleep(0.05)
    second = int(pids.read_text().split()[1])
    assert alive(second)
    assert service.stop(signal.SIGTERM) == 0
    deadline = time.monotonic() + 10
    while alive(second):
        assert time.monotonic() < deadline, "the environment's child outlived the service"
        time.sleep(0.05)
    assert "panicked" not in service.logs(), service.logs()[-3000:]
