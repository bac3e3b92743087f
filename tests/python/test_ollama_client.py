"""The official `ollama` Python client against a real `strata serve`."""

import json

import ollama
import pytest

from conftest import MODEL

OPTS = {"num_predict": 16, "temperature": 0, "seed": 1}


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.url)


def test_list_shows_the_default_model(client):
    models = client.list().models
    names = [m.model for m in models]
    assert MODEL in names
    m = next(m for m in models if m.model == MODEL)
    assert m.size == 98_362_432
    assert m.digest.startswith("sha256:b179c952")
    assert m.details.format == "gguf"


def test_show_reports_template_and_details(client):
    info = client.show(MODEL)
    assert "<|im_start|>" in info.template
    assert info.details.family == "llama"
    assert info.details.quantization_level == "Q4_1"
    assert info.modelinfo["general.architecture"] == "llama"


def test_generate_not_streaming_has_measured_counters(client):
    r = client.generate(model=MODEL, prompt="Why is the sky blue?", options=OPTS, stream=False)
    assert r.done is True
    assert r.response.strip()
    assert r.done_reason in ("stop", "length")
    assert 0 < r.eval_count <= 16
    assert r.prompt_eval_count > 5
    assert r.eval_duration > 0 and r.prompt_eval_duration > 0
    assert r.total_duration >= r.eval_duration


def test_generate_streaming_yields_pieces_then_done(client):
    parts = list(client.generate(model=MODEL, prompt="Count to five.", options=OPTS, stream=True))
    assert len(parts) > 2
    assert all(not p.done for p in parts[:-1])
    last = parts[-1]
    assert last.done and last.done_reason in ("stop", "length")
    assert last.eval_count == len([p for p in parts[:-1] if p.response]) or last.eval_count >= 1
    text = "".join(p.response for p in parts)
    whole = client.generate(model=MODEL, prompt="Count to five.", options=OPTS, stream=False).response
    assert text == whole, "streamed and non-streamed answers differ at temperature 0"


def test_chat_streaming_and_not(client):
    messages = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Say hello."}]
    r = client.chat(model=MODEL, messages=messages, options=OPTS)
    assert r.message.role == "assistant" and r.message.content.strip()
    chunks = list(client.chat(model=MODEL, messages=messages, options=OPTS, stream=True))
    assert chunks[-1].done
    assert "".join(c.message.content for c in chunks) == r.message.content


def test_ps_lists_the_loaded_model(client):
    client.generate(model=MODEL, prompt="hi", options={"num_predict": 1})
    running = client.ps().models
    assert MODEL in [m.model for m in running]


def test_unknown_model_is_404(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="no-such-model:1b", prompt="hi")
    assert e.value.status_code == 404
    assert 'model "no-such-model:1b" not found' in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404


def test_format_json_returns_json(client):
    r = client.generate(model=MODEL, prompt="Give a JSON object with a key name.", format="json", options={"num_predict": 48, "temperature": 0})
    if r.done_reason == "stop":
        json.loads(r.response)
    else:
        assert r.response.lstrip().startswith("{")


def test_stop_sequence_is_honoured(client):
    full = client.generate(model=MODEL, prompt="List three animals.", options={"num_predict": 30, "temperature": 0}).response
    word = full.split()[2]
    cut = client.generate(model=MODEL, prompt="List three animals.", options={"num_predict": 30, "temperature": 0, "stop": [word]})
    assert word not in cut.response
    assert cut.done_reason == "stop"
    assert full.startswith(cut.response)


def test_empty_prompt_loads_the_model(client):
    r = client.generate(model=MODEL, prompt="")
    assert r.done and r.done_reason == "load"


def test_pull_known_model_reports_success(client):
    statuses = [p.status for p in client.pull(MODEL, stream=True)]
    assert statuses[-1] == "success"
    with pytest.raises(ollama.ResponseError) as e:
        client.pull("no-such-model:1b")
    assert e.value.status_code == 404


def test_keep_alive_zero_unloads_the_model(client):
    client.generate(model=MODEL, prompt="hi", options={"num_predict": 1})
    assert MODEL in [m.model for m in client.ps().models]
    r = client.generate(model=MODEL, prompt="", keep_alive=0)  # what `ollama stop` sends
    assert r.done_reason == "unload"
    assert MODEL not in [m.model for m in client.ps().models]
    # The next request loads it again, and says so in load_duration.
    r = client.generate(model=MODEL, prompt="hi", options={"num_predict": 1})
    assert r.load_duration > 1_000_000
    assert MODEL in [m.model for m in client.ps().models]
