"""Embeddings the Bedrock way: boto3 `invoke_model` with Titan Text Embeddings V2 and Cohere
Embed v3 bodies against `strata bedrock-emulator`, answered by the embedded model."""

import json
import math

import boto3
import botocore.config
import botocore.exceptions
import pytest

TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
CREDS = {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "test-secret", "region_name": "us-east-1"}
NO_RETRY = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="module")
def bedrock(make_server_module):
    emulator = make_server_module(["--generator", "embedded"], command="bedrock-emulator")
    return boto3.client("bedrock-runtime", endpoint_url=emulator.url, config=NO_RETRY, **CREDS)


def invoke(client, model, body):
    r = client.invoke_model(modelId=model, body=json.dumps(body), contentType="application/json", accept="application/json")
    return json.loads(r["body"].read())


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_titan_v2(bedrock):
    full = invoke(bedrock, TITAN, {"inputText": "The cat sat on the mat."})
    v = full["embedding"]
    assert len(v) > 100 and math.isclose(dot(v, v), 1.0, abs_tol=1e-3)
    assert full["embeddingsByType"]["float"] == v and full["inputTextTokenCount"] > 3
    small = invoke(bedrock, TITAN, {"inputText": "The cat sat on the mat.", "dimensions": 256, "normalize": True, "embeddingTypes": ["float"]})
    assert len(small["embedding"]) == 256


def test_cohere_v3(bedrock):
    texts = ["The cat sat on the mat.", "A cat was sitting on a rug.", "Stock markets fell sharply."]
    r = invoke(bedrock, COHERE, {"texts": texts, "input_type": "search_document"})
    assert r["response_type"] == "embeddings_floats" and r["texts"] == texts and r["id"]
    e = r["embeddings"]
    assert len(e) == 3 and dot(e[0], e[1]) > dot(e[0], e[2])
    by_type = invoke(bedrock, COHERE, {"texts": texts[:1], "input_type": "search_query", "embedding_types": ["float"]})
    assert by_type["response_type"] == "embeddings_by_type"
    assert dot(by_type["embeddings"]["float"][0], e[0]) > 0.9999


@pytest.mark.parametrize(
    "model,body,kind,says",
    [
        (TITAN, {"dimensions": 256}, "ValidationException", "inputText"),
        (TITAN, {"inputText": "x", "dimensions": 300}, "ValidationException", "dimensions"),
        (TITAN, {"inputText": "x", "dimensions": 1024}, "ValidationException", "dimensions"),
        (TITAN, {"inputText": "x", "color": "red"}, "ValidationException", "extraneous key [color]"),
        (COHERE, {"texts": ["a"]}, "ValidationException", "input_type"),
        (COHERE, {"texts": ["a"] * 97, "input_type": "clustering"}, "ValidationException", "96"),
        (COHERE, {"texts": ["word " * 5000], "input_type": "clustering"}, "ValidationException", "truncate"),
        ("amazon.titan-embed-text-v9:0", {"inputText": "x"}, "ValidationException", "embedding models"),
        ("strata.smollm2-135m-instruct-v1:0", {"inputText": "x"}, "ValidationException", "Converse"),
        ("cohere.embed-multilingual-v9", {"texts": ["a"]}, "ValidationException", "embedding models"),
    ],
)
def test_bad_bodies_get_bedrocks_errors(bedrock, model, body, kind, says):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        invoke(bedrock, model, body)
    assert e.value.response["Error"]["Code"] == kind
    assert says in e.value.response["Error"]["Message"], e.value.response["Error"]["Message"]


def test_an_embedding_model_the_emulator_does_not_serve_is_not_found(bedrock):
    # A Titan V2 id, but one not in `bedrock_emulator.embedding_models`.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        invoke(bedrock, "eu." + TITAN, {"inputText": "x"})
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


# ---- `strata serve --backend bedrock`: Ollama and OpenAI clients, Bedrock's embedding models ----

AWS = {"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def serve(make_server_module, tmp_path_factory):
    emulator = make_server_module(["--generator", "embedded"], command="bedrock-emulator")
    config = tmp_path_factory.mktemp("bedrock-embed") / "strata.toml"
    config.write_text(f'[bedrock]\nendpoint_url = "{emulator.url}"\n\n[bedrock.embedding_model_ids]\n"embedder" = "{TITAN}"\n"cohere" = "{COHERE}"\n')
    return make_server_module(["--backend", "bedrock", "--config", str(config)], env=AWS)


def test_ollama_and_openai_clients_embed_through_bedrock(serve):
    import ollama
    import openai

    texts = ["The cat sat on the mat.", "A cat was sitting on a rug.", "Stock markets fell sharply."]
    for model in ["embedder", "cohere", TITAN]:
        r = ollama.Client(host=serve.url).embed(model=model, input=texts)
        e = r.embeddings
        assert len(e) == 3 and math.isclose(dot(e[0], e[0]), 1.0, abs_tol=1e-3), model
        assert dot(e[0], e[1]) > dot(e[0], e[2]), model
    oai = openai.OpenAI(base_url=serve.url + "/v1", api_key="unused", max_retries=0)
    r = oai.embeddings.create(model="embedder", input=texts, dimensions=256)
    assert [len(d.embedding) for d in r.data] == [256, 256, 256] and r.usage.prompt_tokens > 5
    assert "embedding" in ollama.Client(host=serve.url).show("embedder").capabilities


@pytest.mark.parametrize(
    "body,says",
    [
        ({"model": "smollm2:135m", "input": "a"}, "not a Bedrock embedding model"),
        ({"model": "embedder", "input": "a", "dimensions": 300}, "256, 512 or 1024"),
        ({"model": "cohere", "input": "a", "dimensions": 256}, "fixed 1024"),
    ],
)
def test_requests_bedrock_would_refuse_are_refused_before_a_call(serve, body, says):
    import httpx

    r = httpx.post(serve.url + "/api/embed", json=body, timeout=60)
    assert r.status_code == 400 and says in r.json()["error"], r.text
    r = httpx.post(serve.url + "/v1/embeddings", json={**body, "input": [[1, 2, 3]]}, timeout=60)
    assert r.status_code == 400, r.text
