"""Open WebUI's own RAG flow against `strata serve` on the embedded default model: Open WebUI
(pinned in scripts/setup.sh, `setup_openwebui`, in its own virtualenv) is set to embed with
its Ollama engine and to chat through its Ollama connection, both pointed at strata. A file
uploaded to it is chunked and embedded by strata, its retrieval endpoint ranks the chunks by
strata's vectors, and a chat with the file attached reaches strata with the chunks in its
prompt.

Between the two sits a relay that passes every request through unchanged and keeps its body:
strata never logs a prompt, and what Open WebUI sent is what these tests check. The model is tiny,
so no answer's wording is asserted."""

import http.client
import http.server
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import httpx
import ollama
import pytest

from conftest import MODEL

VENV = os.environ.get("STRATA_OPENWEBUI_VENV") or os.path.expanduser("~/.cache/strata/openwebui-venv")

# One topic a line, each line longer than half of CHUNK_SIZE: every line is a chunk of its own.
LINES = [
    "The Zorblat lighthouse stands on Quillon Island; its keeper, Mirela Osk, lights the lamp every evening at seven and writes the passing ships into a blue ledger.",
    "Sourdough bread needs a lively starter, flour, water and salt; the dough rests overnight in a cool kitchen before it is shaped and baked in a very hot oven.",
    "The quarterly report shows revenue rising eight percent while operating costs stayed flat, and the board approved a dividend for shareholders in March.",
]
CHUNK_SIZE = 200
QUESTION = "Who is the keeper of the Zorblat lighthouse?"

# Headers that belong to one connection, never forwarded by the relay.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "host", "content-length"}


class Relay:
    """An HTTP relay to `upstream` that keeps (method, path, JSON body) of every request and
    streams every response back as it comes (Ollama's NDJSON streams included)."""

    def __init__(self, upstream):
        target = urllib.parse.urlsplit(upstream)
        self.requests = []
        lock = threading.Lock()
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = body
                with lock:
                    relay.requests.append({"method": self.command, "path": self.path, "body": parsed})
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                conn.request(self.command, self.path, body=body if body else None, headers=headers)
                resp = conn.getresponse()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                length = resp.getheader("Content-Length")
                if length is not None or self.command == "HEAD":
                    self.send_header("Content-Length", length or "0")
                    self.end_headers()
                    self.wfile.write(resp.read())
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    while chunk := resp.read1(65536):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                conn.close()

            do_GET = do_POST = do_HEAD = do_DELETE = relay

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class OpenWebUI:
    """Open WebUI from the virtualenv in STRATA_OPENWEBUI_VENV on a loopback socket bound here
    (handed to uvicorn as a file descriptor, as conftest's Server hands strata its own), with a
    temporary DATA_DIR, ready once its readiness route answers 200; then the first user signs up
    and becomes its admin."""

    def __init__(self, ollama_url, data_dir, ready_timeout=180):
        python = os.path.join(VENV, "bin", "python")
        if not os.access(python, os.X_OK):
            pytest.fail(f"no Open WebUI virtualenv at {VENV} (scripts/setup.sh `setup_openwebui` creates it; STRATA_OPENWEBUI_VENV names another)")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        env = dict(os.environ)
        env.update(
            {
                "DATA_DIR": str(data_dir),
                # What `open-webui serve` sets before it starts uvicorn: the version from the
                # package's metadata, the frontend from the package.
                "FROM_INIT_PY": "true",
                "WEBUI_SECRET_KEY": secrets.token_hex(16),
                "ENABLE_OLLAMA_API": "true",
                "OLLAMA_BASE_URL": ollama_url,
                "ENABLE_OPENAI_API": "false",
                # Embeddings from Ollama's /api/embed rather than a local sentence-transformers
                # model (which would be downloaded at startup).
                "RAG_EMBEDDING_ENGINE": "ollama",
                "RAG_EMBEDDING_MODEL": MODEL,
                "RAG_OLLAMA_BASE_URL": ollama_url,
                "CHUNK_SIZE": str(CHUNK_SIZE),
                "CHUNK_OVERLAP": "0",
                # Open WebUI first asks the model for search queries; from a 135M model they are
                # arbitrary text. Off, it searches with the user's message, which is checkable.
                "ENABLE_RETRIEVAL_QUERY_GENERATION": "false",
                # Nothing fetched from a model hub, no telemetry, no update check, loopback
                # never through a proxy.
                "OFFLINE_MODE": "true",
                "HF_HUB_OFFLINE": "1",
                "ANONYMIZED_TELEMETRY": "false",
                "SCARF_NO_ANALYTICS": "true",
                "DO_NOT_TRACK": "true",
                "ENABLE_VERSION_UPDATE_CHECK": "false",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        self.log = open(os.path.join(str(data_dir), "open-webui.log"), "w+")
        self.proc = subprocess.Popen(
            [python, "-m", "uvicorn", "open_webui.main:app", "--fd", str(listener.fileno()), "--workers", "1"],
            env=env,
            cwd=str(data_dir),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
        )
        listener.close()
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Open WebUI exited with {self.proc.returncode}: {self.logs()}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Open WebUI not ready after {ready_timeout}s: {self.logs()}")
            time.sleep(0.2)
        r = httpx.post(
            self.url + "/api/v1/auths/signup",
            json={"name": "Admin", "email": "admin@example.com", "password": secrets.token_hex(12)},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["role"] == "admin"
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": "Bearer " + r.json()["token"]}, timeout=180)

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def strata(make_server_module):
    return make_server_module(["--model", MODEL])


@pytest.fixture(scope="module")
def relay(strata):
    r = Relay(strata.url)
    yield r
    r.close()


@pytest.fixture(scope="module")
def webui(relay, tmp_path_factory):
    w = OpenWebUI(relay.url, tmp_path_factory.mktemp("open-webui"))
    yield w
    w.stop()


class Upload:
    def __init__(self, file_id, requests):
        self.id = file_id
        self.requests = requests  # what reached strata while Open WebUI processed the file


@pytest.fixture(scope="module")
def uploaded(webui, relay):
    """The document, uploaded as a browser does, once Open WebUI says it is processed."""
    before = len(relay.requests)
    r = webui.client.post("/api/v1/files/", files={"file": ("lighthouse.txt", "\n".join(LINES) + "\n", "text/plain")})
    assert r.status_code == 200, r.text
    file_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        status = webui.client.get(f"/api/v1/files/{file_id}/process/status").json()
        if status.get("status") == "completed":
            return Upload(file_id, relay.requests[before:])
        assert status.get("status") in ("pending", "processing"), (status, webui.logs()[-5000:])
        assert time.monotonic() < deadline, ("file not processed in time", status, webui.logs()[-5000:])
        time.sleep(0.2)


def strata_requests(strata):
    """(route, status) of every request strata logged (its access log, one JSON line each)."""
    found = []
    for line in strata.logs().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        fields = entry.get("fields", entry)
        if fields.get("message") == "request":
            found.append((fields.get("route"), int(fields.get("status", 0))))
    return found


def check_strata_answered_everything(strata):
    requests = strata_requests(strata)
    assert requests and all(status == 200 for _, status in requests), requests


def posts(requests, path):
    return [r["body"] for r in requests if r["method"] == "POST" and r["path"] == path]


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def strata_scores(strata, query):
    """Open WebUI's score of each line for `query` from strata's own vectors: its Chroma store
    scores a chunk (1 + cos) / 2. One text a request, as Open WebUI sends them (a batch's
    vectors differ from single ones in the fourth digit)."""
    client = ollama.Client(host=strata.url)
    vectors = [client.embed(model=MODEL, input=[text]).embeddings[0] for text in LINES + [query]]
    return {line: (1 + cosine(v, vectors[-1])) / 2 for line, v in zip(LINES, vectors)}


def check_ranking(documents, distances, strata):
    assert sorted(documents) == sorted(LINES), documents
    scores = strata_scores(strata, QUESTION)
    assert distances == pytest.approx([scores[d] for d in documents], abs=1e-4)
    assert distances == sorted(distances, reverse=True)
    # The model is small, but the lighthouse line is the nearest to a question about it.
    assert documents[0] == LINES[0], documents


def test_the_upload_is_chunked_and_embedded_by_strata(uploaded, strata):
    embeds = posts(uploaded.requests, "/api/embed")
    assert sorted(text for body in embeds for text in body["input"]) == sorted(LINES), embeds
    assert {body["model"] for body in embeds} == {MODEL}
    assert ("/api/embed", 200) in strata_requests(strata)
    check_strata_answered_everything(strata)


def test_retrieval_ranks_the_chunks_by_strata_vectors(uploaded, webui, strata):
    r = webui.client.post("/api/v1/retrieval/query/doc", json={"collection_name": f"file-{uploaded.id}", "query": QUESTION, "k": 3})
    assert r.status_code == 200, r.text
    found = r.json()
    check_ranking(found["documents"][0], found["distances"][0], strata)


def ask(stream, source):
    return {
        "model": MODEL,
        "stream": stream,
        "params": {"max_tokens": 16, "temperature": 0},
        "messages": [{"role": "user", "content": QUESTION}],
        "files": [source],
    }


def check_what_reached_strata(requests, source_id, stream):
    """The question embedded once, then one chat whose prompt holds every chunk as a source."""
    assert posts(requests, "/api/embed") == [{"input": [QUESTION], "model": MODEL, "truncate": True}], requests
    chats = posts(requests, "/api/chat")
    assert len(chats) == 1, chats
    chat = chats[0]
    assert chat["model"] == MODEL and chat["stream"] is stream
    assert chat["options"] == {"num_predict": 16, "temperature": 0}
    assert chat["messages"][-1]["role"] == "user"
    prompt = chat["messages"][-1]["content"]
    assert QUESTION in prompt and f'resource-id="{source_id}"' in prompt, prompt
    for line in LINES:
        assert f">{line}</source>" in prompt, prompt


def check_sources(sources, source_id, strata):
    assert [s["source"]["id"] for s in sources] == [source_id], sources
    check_ranking(sources[0]["document"], sources[0]["distances"], strata)


def test_a_chat_with_the_file_attached_puts_its_chunks_in_strata_prompt(uploaded, webui, relay, strata):
    before = len(relay.requests)
    r = webui.client.post("/api/chat/completions", json=ask(False, {"type": "file", "id": uploaded.id}))
    assert r.status_code == 200, r.text
    body = r.json()
    check_sources(body["sources"], uploaded.id, strata)
    assert body["model"] == MODEL
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["usage"]["prompt_tokens"] > 300, "the prompt strata counted holds the chunks"
    check_what_reached_strata(relay.requests[before:], uploaded.id, stream=False)
    assert ("/api/chat", 200) in strata_requests(strata)
    check_strata_answered_everything(strata)


def test_a_streamed_chat_as_the_browser_makes_it(uploaded, webui, relay, strata):
    before = len(relay.requests)
    events = []
    with webui.client.stream("POST", "/api/chat/completions", json=ask(True, {"type": "file", "id": uploaded.id})) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: ") :])
    assert events[-1] == "[DONE]", events
    events = [json.loads(e) for e in events[:-1]]
    check_sources(events[0]["sources"], uploaded.id, strata)
    chunks = [e for e in events[1:] if e.get("object") == "chat.completion.chunk"]
    assert len(chunks) > 1, events
    assert all(c["model"] == MODEL for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length"), chunks[-1]
    check_what_reached_strata(relay.requests[before:], uploaded.id, stream=True)
    check_strata_answered_everything(strata)


def test_a_knowledge_collection_is_embedded_and_searched_by_strata(uploaded, webui, relay, strata):
    r = webui.client.post("/api/v1/knowledge/create", json={"name": "Lighthouse", "description": "Notes on the island"})
    assert r.status_code == 200, r.text
    knowledge = r.json()["id"]
    before = len(relay.requests)
    r = webui.client.post(f"/api/v1/knowledge/{knowledge}/file/add", json={"file_id": uploaded.id})
    assert r.status_code == 200, r.text
    # Adding a file embeds its chunks again, into the collection's own store.
    embedded = [text for body in posts(relay.requests[before:], "/api/embed") for text in body["input"]]
    assert set(LINES) <= set(embedded), embedded
    r = webui.client.post("/api/v1/retrieval/query/collection", json={"collection_names": [knowledge], "query": QUESTION, "k": 3})
    assert r.status_code == 200, r.text
    check_ranking(r.json()["documents"][0], r.json()["distances"][0], strata)
    before = len(relay.requests)
    r = webui.client.post("/api/chat/completions", json=ask(False, {"type": "collection", "id": knowledge}))
    assert r.status_code == 200, r.text
    check_sources(r.json()["sources"], knowledge, strata)
    check_what_reached_strata(relay.requests[before:], knowledge, stream=False)
    check_strata_answered_everything(strata)
