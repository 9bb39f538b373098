"""``pyswoole serve MODULE:APP``: the options, the refusals before anything starts (exit 2 for usage, 1 for an
application that cannot be loaded or a port in use), and the operator's commands on what it serves."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

import httpx
import pytest
from hostkit import APPS, free_port, http_client, pyswoole
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from programs import need
from serverkit import wait_until
from tlscerts import make_test_certificates

pytestmark = pytest.mark.timeout(90)


def serve_now(*args: str, cwd=None):
    """``pyswoole serve`` that is expected to end by itself at once."""
    return pyswoole("serve", "--app-dir", str(APPS), "--port", str(free_port()), *args, timeout=60, cwd=cwd)


# Refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module:app", 'Could not import module "no_such_module".'),
        ("asgi_probe:nothing", 'Attribute "nothing" not found in module "asgi_probe".'),
        ("asgi_probe", 'Import string "asgi_probe" must be in format "<module>:<attribute>".'),
        ("broken_app:app", "RuntimeError: broken on purpose"),
        ("missing_dependency_app:app", "No module named 'no_such_dependency_xyz'"),
        ("not_an_app:app", '"not_an_app:app" is not callable (int), so it is not an application.'),
        ("not_an_app:three", "cannot tell whether"),
        ("not_an_app:app", "not callable, so it cannot be an application factory"),
    ],
)
def test_an_application_that_cannot_be_loaded_exits_1_with_the_reason_and_starts_nothing(tmp_path, app, message):
    extra = ["--factory"] if "factory" in message else []
    result = serve_now("--pid-file", str(tmp_path / "server.pid"), *extra, app)

    assert result.returncode == 1, result.stderr
    assert "error loading the application" in result.stderr and message in result.stderr
    assert not (tmp_path / "server.pid").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--mode", "fast"], "invalid choice: 'fast'"),
        (["--workers", "0"], "--workers 0: at least 1"),
        (["--workers", "two"], "invalid int value: 'two'"),
        (["--set", "no_such_setting=1"], "no_such_setting"),
        (["--set", "worker_num=many"], "worker_num"),
        (["--set", "worker_num"], "expected KEY=VALUE"),
        (["--task-workers", "1"], "task workers need a Task callback"),
        (["--task-handler", "tasks:handle"], "--task-handler needs task workers"),
        (["--ssl-certfile", "cert.pem"], "--ssl-certfile and --ssl-keyfile go together"),
        (["--ssl-certfile", "no.pem", "--ssl-keyfile", "no.key"], "--ssl-certfile no.pem: no such file"),
        (["--app-dir", "/no/such/dir"], "--app-dir /no/such/dir: no such directory"),
        (["--forwarded-allow-ips", "not-an-address"], "'not-an-address' is neither an IP address nor a network"),
        (["--log-level", "loud"], "invalid choice: 'loud'"),
        (["--lifespan", "maybe"], "invalid choice: 'maybe'"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["--set", "dispatch_mode=1"], "dispatch_mode: 1"),
    ],
)
def test_a_wrong_option_exits_2_with_the_usage_and_the_reason(tmp_path, options, message):
    result = serve_now("--pid-file", str(tmp_path / "server.pid"), *options, "asgi_probe:app")

    assert result.returncode == 2, result.stderr
    assert "usage: pyswoole" in result.stderr and message in result.stderr
    assert not (tmp_path / "server.pid").exists()


def test_a_port_in_use_exits_1_with_the_bind_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = pyswoole("serve", "--app-dir", str(APPS), "--port", str(port), "asgi_probe:app")

    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "Address already in use" in result.stderr


# Options --------------------------------------------------------------------------------------------------------


def test_the_options_become_the_servers_settings_and_the_task_handler_serves_task_co(serve, tmp_path):
    log_file = tmp_path / "pyswoole.log"
    served = serve(
        "asgi_probe:app",
        "--workers", "2", "--reactors", "1", "--task-workers", "1", "--task-handler", "tasks:handle",
        "--max-requests", "1000", "--max-requests-jitter", "10", "--timeout", "30", "--graceful-timeout", "7",
        "--log-level", "warning", "--log-file", str(log_file), "--set", "package_max_length=2M",
        "--set", "dispatch_mode=4", "--no-access-log",
    )  # fmt: skip
    with http_client(base_url=served.url) as client:
        setting = client.get("/scope").json()["setting"]
        task = client.get("/task", params={"data": "abc"}).json()
        too_big = client.post("/body", content=b"x" * (2 * 1024 * 1024 + 1))
        client.get("/raise-before")

    assert setting == {
        "worker_num": 2, "reactor_num": 1, "task_worker_num": 1, "max_request": 1000, "max_request_grace": 10,
        "worker_timeout": 30, "max_wait_time": 7, "log_level": 4, "log_file": str(log_file),
        "pid_file": str(served.pid_file), "http_access_log": False, "package_max_length": 2 * 1024 * 1024,
        "dispatch_mode": 4, "ssl_verify_peer": None, "ssl_client_cert_file": None,
    }  # fmt: skip
    assert len(task) == 1 and task[0].startswith("done:abc:")
    assert too_big.status_code == 413
    wait_until(lambda: log_file.exists() and "raised before the response started" in log_file.read_text(), 5)


def test_the_defaults_are_uvicorns_where_they_overlap(serve):
    served = serve("asgi_probe:app")

    with http_client(base_url=served.url) as client:
        setting = client.get("/scope").json()["setting"]

    assert (setting["worker_num"], setting["log_level"], setting["http_access_log"]) == (1, 2, True)
    assert (setting["task_worker_num"], setting["max_request"], setting["worker_timeout"]) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["process", "base"])
def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(serve, tmp_path, mode):
    log = tmp_path / "probe.txt"
    served = serve("wsgi_probe:app", "--mode", mode, "--workers", "2", env={"PROBE_LOG": str(log)})
    answers = []

    def call() -> None:
        with http_client(base_url=served.url) as client:
            answers.append(client.get("/sleep", params={"s": "0.5"}).text)

    thread = threading.Thread(target=call)
    thread.start()
    wait_until(lambda: log.exists() and "begin" in log.read_text(), 5)
    status = served.stop(signal.SIGTERM)
    thread.join(10)

    assert status == 0
    assert answers == ["slept"]


def test_a_unix_socket_with_uds(serve, short_dir):
    curl = need("curl")
    path = str(short_dir / "app.sock")
    serve("asgi_probe:app", "--uds", path)

    result = subprocess.run([curl, "-s", "--unix-socket", path, "http://localhost/scope"], capture_output=True,
                            text=True, timeout=10)  # fmt: skip

    scope = json.loads(result.stdout)
    assert scope["path"] == "/scope" and scope["server"] == [path, None]


def test_tls_with_the_ssl_options_and_client_certificates_with_ssl_ca_certs(serve, tmp_path):
    need("openssl")
    files = make_test_certificates(tmp_path)
    served = serve("asgi_probe:app", "--ssl-certfile", files["server.pem"], "--ssl-keyfile", files["server.key"],
                   "--ssl-ca-certs", files["ca.pem"], start=False)  # fmt: skip
    served.launch()
    url = f"https://127.0.0.1:{served.port}"
    trusting = ssl.create_default_context(cafile=files["ca.pem"])
    with_certificate = ssl.create_default_context(cafile=files["ca.pem"])
    with_certificate.load_cert_chain(files["client.pem"], files["client.key"])

    def answers() -> bool:
        try:
            return httpx.get(url + "/", verify=with_certificate, trust_env=False).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, 30, served.describe)
    scope = httpx.get(url + "/scope", verify=with_certificate, trust_env=False).json()
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/", verify=trusting, trust_env=False)  # no client certificate: refused
    with ws_connect(f"wss://127.0.0.1:{served.port}/ws/echo", ssl=with_certificate, proxy=None) as ws:
        ws.send("scope")
        ws_scope = json.loads(ws.recv())

    assert scope["scheme"] == "https" and ws_scope["scheme"] == "wss"
    assert scope["setting"]["ssl_verify_peer"] is True


@pytest.mark.parametrize("path", ["/api/scope", "/scope"])
def test_root_path_prefixes_the_asgi_path_whether_the_proxy_stripped_it_or_not(serve_module, path):
    served = serve_module("asgi_probe:app", "--root-path", "/api")

    with http_client(base_url=served.url) as client:
        scope = client.get(path).json()

    assert (scope["root_path"], scope["path"], scope["raw_path"]) == ("/api", "/api/scope", "/api/scope")


@pytest.mark.parametrize("path", ["/api/environ", "/environ"])
def test_root_path_is_the_wsgi_script_name(serve_module, path):
    served = serve_module("wsgi_probe:app", "--root-path", "/api")

    with http_client(base_url=served.url) as client:
        environ = client.get(path).json()

    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/api", "/environ")


PROXIED = {"X-Forwarded-For": "203.0.113.7, 10.1.2.3", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize(
    ("options", "client_host", "scheme"),
    [
        ([], "10.1.2.3", "https"),  # uvicorn's default: 127.0.0.1 trusted, the right-most other address
        (["--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8"], "203.0.113.7", "https"),
        (["--forwarded-allow-ips", "*"], "203.0.113.7", "https"),
        (["--forwarded-allow-ips", "10.9.9.9"], "127.0.0.1", "http"),  # the peer is not trusted
        (["--no-proxy-headers"], "127.0.0.1", "http"),
    ],
)
def test_proxy_headers_from_trusted_addresses_set_the_client_and_the_scheme(serve, options, client_host, scheme):
    asgi = serve("asgi_probe:app", *options)
    wsgi = serve("wsgi_probe:app", *options)

    with http_client() as client:
        scope = client.get(asgi.url + "/scope", headers=PROXIED).json()
        environ = client.get(wsgi.url + "/environ", headers=PROXIED).json()

    assert (scope["client"][0], scope["scheme"]) == (client_host, scheme)
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == (client_host, scheme)


def test_factory_calls_the_function_for_the_application(serve):
    served = serve("factory_app:create_app", "--factory")

    with http_client(base_url=served.url) as client:
        assert client.get("/").text == "probe"


def test_ws_none_serves_no_websocket(serve):
    served = serve("asgi_probe:app", "--ws", "none")

    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"ws://127.0.0.1:{served.port}/ws/echo", proxy=None)

    assert refused.value.response.status_code == 404  # the upgrade reached the application as plain HTTP


def test_max_requests_recycles_the_worker(serve):
    served = serve("asgi_probe:app", "--workers", "1", "--max-requests", "5")

    with http_client(base_url=served.url) as client:
        pids = [client.get("/scope").json()["pid"] for _ in range(12)]

    assert len(set(pids)) >= 2


def test_pid_file_with_status_reload_and_stop(serve):
    served = serve("asgi_probe:app", "--workers", "2", "--set", "stats_timer_interval=100")
    pid_file = str(served.pid_file)

    def workers() -> set[int]:
        with http_client(base_url=served.url) as client:
            return {client.get("/scope", headers={"Connection": "close"}).json()["pid"] for _ in range(10)}

    status = wait_until(lambda: (r := pyswoole("status", "--json", pid_file)).returncode == 0 and json.loads(r.stdout))
    before = served.group_pids()
    reload = pyswoole("reload", pid_file)
    wait_until(lambda: len(served.group_pids() - before) >= 2, 20, "the workers were never replaced")
    after = workers()
    stop = pyswoole("stop", pid_file)

    assert status["server"]["worker_num"] == 2 and status["master_pid"] == served.proc.pid
    assert reload.returncode == 0 and not after & before
    assert stop.returncode == 0 and served.wait() == 0


def test_daemonize_detaches_and_stop_ends_it(tmp_path):
    pid_file = tmp_path / "server.pid"
    port = free_port()
    started = pyswoole("serve", "--app-dir", str(APPS), "--port", str(port), "--pid-file", str(pid_file),
                       "--daemonize", "--log-file", str(tmp_path / "log.txt"), "asgi_probe:app")  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/") == "probe", 20)
    finally:
        if pid_file.exists():
            stopped = pyswoole("stop", str(pid_file))
            assert stopped.returncode == 0, stopped.stderr


def _get(url: str) -> str | None:
    try:
        return httpx.get(url, trust_env=False).text
    except httpx.TransportError:
        return None


def test_a_sigterm_as_soon_as_the_pid_file_exists_stops_the_server_cleanly(serve):
    # The master's loop installs its handlers after starting its reactor threads; a stop asked before that
    # (here, or by a worker whose application fails at once) must still be a clean stop, not the default action.
    served = serve("asgi_probe:app", "--workers", "2", "--mode", "process", "--no-access-log", start=False)
    served.launch()
    deadline = time.monotonic() + 30
    while not served.pid_file.exists() and served.proc.poll() is None and time.monotonic() < deadline:
        pass  # as soon as it exists: the window this test is about lasts milliseconds
    os.kill(served.proc.pid, signal.SIGTERM)

    assert served.wait(30) == 0, served.describe()
