"""An Ollama client in front of Bedrock: `strata serve --backend bedrock` pointed at
`strata bedrock-emulator`, all real processes, the official `ollama` client on top."""

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
    assert [m.model for m in chain.list().models] == [MODEL]


def test_unknown_bedrock_model_is_404(chain):
    with pytest.raises(ollama.ResponseError) as e:
        chain.chat(model="vendor.unknown-v1:0", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404
