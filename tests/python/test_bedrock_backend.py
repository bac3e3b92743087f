"""An Ollama client in front of Bedrock: `strata serve --backend bedrock` pointed at
`strata bedrock-emulator`, all real processes, the official `ollama` client on top."""

import os
import signal
import time

import ollama
import pytest

MODEL = "smollm2:135m"
MODEL_ID = "strata.smollm2-135m-instruct-v1:0"
AWS = {"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def chain(make_server_module, tmp_path_factory):
    emulator = make_server_module(["--generator", "instant"], command="bedrock-emulator",
                                  env={"STRATA_BEDROCK_EMULATOR__INSTANT__REPLY": "Hello from the emulated Bedrock."})
    config = tmp_path_factory.mktemp("bedrock") / "strata.toml"
    config.write_text(f'[bedrock]\nendpoint_url = "{emulator.url}"\n\n[bedrock.model_ids]\n"{MODEL}" = "{MODEL_ID}"\n')
    server = make_server_module(["--backend", "bedrock", "--config", str(config)], env=AWS)
    return ollama.Client(host=server.url)


def test_chat_through_bedrock(chain):
    r = chain.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert r.message.content == "Hello from the emulated Bedrock."
    assert r.eval_count == 5 and r.done_reason == "stop"


def test_streaming_through_bedrock(chain):
    parts = list(chain.generate(model=MODEL, prompt="hi", stream=True))
    assert "".join(p.response for p in parts) == "Hello from the emulated Bedrock."
    assert len(parts) > 3 and parts[-1].done


def test_models_are_the_configured_ones(chain):
    # The configured generation model, then the default embedding names.
    names = [m.model for m in chain.list().models]
    assert names == [MODEL, "cohere-embed-english-v3", "cohere-embed-multilingual-v3", "titan-embed-text-v2"]


def test_unknown_bedrock_model_is_404(chain):
    with pytest.raises(ollama.ResponseError) as e:
        chain.chat(model="vendor.unknown-v1:0", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404


CHUNK_TIMEOUT_SECS = 2  # [bedrock] chunk_timeout_secs
SLACK = 3.0  # scheduling slack on a busy two-core machine


@pytest.fixture(scope="module")
def slow_chain(make_server_module, tmp_path_factory):
    """The emulator streams one word every 50 ms, long enough to be stopped mid-stream."""
    reply = " ".join(f"w{i}" for i in range(400))
    emulator = make_server_module(["--generator", "instant"], command="bedrock-emulator",
                                  env={"STRATA_BEDROCK_EMULATOR__INSTANT__REPLY": reply, "STRATA_BEDROCK_EMULATOR__INSTANT__WORD_DELAY_MS": "50"})
    config = tmp_path_factory.mktemp("bedrock-slow") / "strata.toml"
    config.write_text(f'[bedrock]\nendpoint_url = "{emulator.url}"\nchunk_timeout_secs = {CHUNK_TIMEOUT_SECS}\n\n'
                      f'[bedrock.model_ids]\n"{MODEL}" = "{MODEL_ID}"\n')
    server = make_server_module(["--backend", "bedrock", "--config", str(config)], env=AWS)
    return emulator, ollama.Client(host=server.url)


def test_a_bedrock_stream_that_goes_silent_ends_with_a_timeout_error(slow_chain):
    """The emulator stopped (SIGSTOP) mid-stream: the client gets an error line within the
    chunk timeout (the server's request timeout is 600 s), never a `done`; once resumed, the
    next request is answered."""
    emulator, client = slow_chain
    words, stopped, done = [], None, False
    try:
        with pytest.raises(ollama.ResponseError) as e:
            for part in client.generate(model=MODEL, prompt="hi", stream=True):
                words.append(part.response)
                done = done or part.done
                if stopped is None:
                    stopped = time.monotonic()
                    os.kill(emulator.proc.pid, signal.SIGSTOP)
    finally:
        os.kill(emulator.proc.pid, signal.SIGCONT)
    assert "timed out waiting for the next event" in e.value.error, e.value
    assert time.monotonic() - stopped < CHUNK_TIMEOUT_SECS + SLACK
    assert words and not done
    r = client.generate(model=MODEL, prompt="hi", options={"num_predict": 3})
    assert r.response.split() == ["w0", "w1", "w2"], r.response
