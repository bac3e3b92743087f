"""Fixtures that start real strata processes on free loopback ports.

The binary comes from STRATA_BIN (scripts/test.sh sets it); every server is stopped at the
end of its scope. Readiness is polled with a deadline, never assumed after a sleep.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

MODEL = "smollm2:135m"


def strata_bin():
    path = os.environ.get("STRATA_BIN")
    if not path:
        pytest.fail("STRATA_BIN must point at the strata binary (scripts/test.sh sets it)")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`strata <command> --listen 127.0.0.1:PORT args...`, ready once it answers HTTP.

    The socket is bound here and handed to the process as `strata up` hands each hop its own
    (STRATA_LISTEN_FD), so no other process can take the port before the server starts."""

    def __init__(self, args, env=None, ready_timeout=120, command="serve"):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        self.port = listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["STRATA_LISTEN_FD"] = str(listener.fileno())
        self.log = open(os.path.join(os.environ.get("STRATA_TEST_LOGS", "/tmp"), f"strata-serve-{self.port}.log"), "w+")
        self.proc = subprocess.Popen(
            [strata_bin(), command, "--listen", f"127.0.0.1:{self.port}", *args],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
        )
        # The server holds the socket now; with this copy closed, a server that dies refuses
        # connections instead of leaving them waiting in the backlog.
        listener.close()
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"strata serve exited with {self.proc.returncode}: {self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer means the server is up
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"strata serve not ready after {ready_timeout}s: {self.logs()}")
            time.sleep(0.05)

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server():
    """`strata serve` on the embedded default model."""
    s = Server(["--model", MODEL])
    yield s
    s.stop()


@pytest.fixture(scope="session")
def instant_server():
    """`strata serve --backend instant` with a small body limit, for limit tests."""
    s = Server(["--backend", "instant"], env={"STRATA_SERVER__MAX_BODY_BYTES": "4096"})
    yield s
    s.stop()


def _server_factory():
    started = []

    def make(args, env=None, command="serve"):
        s = Server(args, env, command=command)
        started.append(s)
        return s

    return make, started


@pytest.fixture
def make_server():
    """Starts servers for one test; they are killed at its end."""
    make, started = _server_factory()
    yield make
    for s in started:
        s.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def make_server_module():
    """Starts servers shared by a test module; stopped gracefully at its end."""
    make, started = _server_factory()
    yield make
    for s in started:
        s.stop()
