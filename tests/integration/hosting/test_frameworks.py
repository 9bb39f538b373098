"""Real applications served by ``pyswoole serve`` in a subprocess and used with real clients (httpx, curl, the
``websockets`` client): FastAPI, Starlette, Flask, and Django as ASGI and as WSGI. Each framework's server starts
once for its tests, in the default mode (PROCESS)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid

import pytest
from hostkit import http_client
from websockets.sync.client import connect as ws_connect

from programs import need
from serverkit import wait_until

pytestmark = pytest.mark.timeout(90)

UPLOAD = os.urandom(200_000)


def curl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([need("curl"), "-s", "-S", *args], input=data, capture_output=True, timeout=20)


def curl_upload(url: str) -> dict:
    """A multipart form with a field and a file (UPLOAD), posted by curl; the JSON answer."""
    result = curl("-F", "note=hello", "-F", "file=@-;filename=data.bin;type=application/octet-stream", url,
                  data=UPLOAD)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# FastAPI --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def framework_log(tmp_path_factory):
    return tmp_path_factory.mktemp("frameworks") / "log.txt"


@pytest.fixture(scope="module")
def fastapi_server(serve_module, framework_log):
    return serve_module("fastapi_app:app", "--workers", "2", env={"FRAMEWORK_LOG": str(framework_log)})


def test_fastapi_json_and_path_and_query_parameters(fastapi_server):
    with http_client(base_url=fastapi_server.url) as client:
        item = client.get("/items/42", params={"q": "search", "limit": 3}).json()
        created = client.post("/items", json={"name": "pen", "price": 1.5, "tags": ["a"]})
        invalid = client.get("/items/not-a-number")
        missing = client.get("/nowhere")

    assert item == {"item_id": 42, "q": "search", "limit": 3}
    assert created.status_code == 200
    assert created.json() == {"created": {"name": "pen", "price": 1.5, "tags": ["a"]}, "double": 3.0}
    assert invalid.status_code == 422 and missing.status_code == 404


def test_fastapi_file_upload_with_curl(fastapi_server):
    answer = curl_upload(fastapi_server.url + "/upload")

    assert answer == {"filename": "data.bin", "content_type": "application/octet-stream", "size": len(UPLOAD),
                      "sha256": hashlib.sha256(UPLOAD).hexdigest(), "note": "hello"}  # fmt: skip


def test_fastapi_streaming_response_with_httpx_and_curl(fastapi_server):
    with http_client(base_url=fastapi_server.url) as client, client.stream("GET", "/stream", params={"n": 4}) as r:
        lines = list(r.iter_lines())
    by_curl = curl("-N", fastapi_server.url + "/stream?n=3")

    assert r.headers["transfer-encoding"] == "chunked"
    assert lines == ["line 0", "line 1", "line 2", "line 3"]
    assert by_curl.stdout == b"line 0\nline 1\nline 2\n"


def test_fastapi_background_task_runs_after_the_response(fastapi_server, framework_log):
    token = uuid.uuid4().hex
    with http_client(base_url=fastapi_server.url) as client:
        answer = client.post("/background", params={"token": token}).json()

    assert answer == {"queued": token}
    wait_until(lambda: framework_log.exists() and f"background {token}" in framework_log.read_text(), 5)


def test_fastapi_websocket_route_with_the_websockets_client(fastapi_server):
    pids = set()
    for round_number in range(4):  # new connections: both workers serve WebSocket sessions
        with ws_connect(fastapi_server.url.replace("http", "ws") + "/ws", proxy=None) as ws:
            for i in range(3):
                ws.send(json.dumps({"n": i, "round": round_number}))
                answer = json.loads(ws.recv())
                assert answer["echo"] == {"n": i, "round": round_number}
                pids.add(answer["pid"])

    assert pids


# Starlette ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def starlette_server(serve_module):
    return serve_module("starlette_app:app")


def test_starlette_lifespan_state_routes_and_forms(starlette_server):
    with http_client(base_url=starlette_server.url) as client:
        home = client.get("/").json()
        user = client.get("/users/ada", params={"page": 2}).text
        form = client.post("/form", data={"a": "1", "b": "two words"}).json()

    assert home["greeting"] == "hello from the lifespan" and home["started_by"] == home["pid"]
    assert home["pathsend"] is True
    assert user == "user ada page 2"
    assert form == {"a": "1", "b": "two words"}


def test_starlette_streaming_and_a_file_response(starlette_server, tmp_path):
    data = os.urandom(150_000)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    with http_client(base_url=starlette_server.url) as client:
        streamed = client.get("/stream").text
        file = client.get("/file", params={"path": str(path)})
    by_curl = curl(starlette_server.url + "/file?path=" + str(path))

    assert streamed == "part 0\npart 1\npart 2\n"
    assert file.content == data and file.headers["content-length"] == str(len(data))
    assert by_curl.stdout == data


def test_starlette_websocket_with_a_subprotocol(starlette_server):
    with ws_connect(starlette_server.url.replace("http", "ws") + "/ws", subprotocols=["echo"], proxy=None) as ws:
        ws.send("shout")
        text = ws.recv()
        ws.send(b"\x01\x02\x03")
        data = ws.recv()

    assert ws.subprotocol == "echo"
    assert (text, data) == ("SHOUT", b"\x03\x02\x01")


# Flask ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flask_server(serve_module):
    return serve_module("flask_app:app")


def test_flask_json_parameters_and_errors(flask_server):
    with http_client(base_url=flask_server.url) as client:
        item = client.get("/items/7", params={"q": "x"}).json()
        created = client.post("/items", json={"name": "cup", "price": 2})
        moved = client.get("/old")
        followed = client.get("/old", follow_redirects=True).json()
        missing = client.get("/nowhere")
        boom = client.get("/boom")

    assert item == {"item_id": 7, "q": "x", "scheme": "http", "remote": "127.0.0.1"}
    assert created.status_code == 201 and created.json() == {"created": {"name": "cup", "price": 2}, "double": 4}
    assert moved.status_code == 301 and moved.headers["location"] == "/items/1?q=moved"
    assert followed["q"] == "moved"
    assert missing.status_code == 404 and missing.json() == {"error": "nothing here"}
    assert boom.status_code == 500
    wait_until(lambda: "flask view failed on purpose" in flask_server.output(), 5)


def test_flask_file_upload_with_curl_and_a_streamed_response(flask_server):
    answer = curl_upload(flask_server.url + "/upload")
    with http_client(base_url=flask_server.url) as client:
        streamed = client.get("/stream", params={"name": "n"})

    assert answer == {"filename": "data.bin", "size": len(UPLOAD), "sha256": hashlib.sha256(UPLOAD).hexdigest(),
                      "note": "hello"}  # fmt: skip
    assert streamed.text == "".join(f"row {i} of n\n" for i in range(4))


# Django, as ASGI and as WSGI ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["djsite.asgi:application", "djsite.wsgi:application"])
def django_server(request, serve_module):
    return serve_module(request.param, "--root-path", "/site")


def test_django_views_with_path_and_query_parameters(django_server):
    with http_client(base_url=django_server.url) as client:
        index = client.get("/").json()
        item = client.get("/items/5/", params={"q": "z"}).json()
        slash = client.get("/items/5")
        missing = client.get("/nowhere/")

    assert index["framework"] == "django" and index["secure"] is False
    assert item == {"item_id": 5, "q": "z", "path": "/site/items/5/", "script_name": "/site"}
    assert slash.status_code == 301 and slash.headers["location"] == "/site/items/5/"  # APPEND_SLASH
    assert missing.status_code == 404


def test_django_file_upload_with_curl_streaming_and_an_async_view(django_server):
    answer = curl_upload(django_server.url + "/upload/")
    with http_client(base_url=django_server.url) as client:
        streamed = client.get("/stream/").text
        hello = client.get("/async/").text

    assert answer == {"filename": "data.bin", "size": len(UPLOAD), "sha256": hashlib.sha256(UPLOAD).hexdigest(),
                      "note": "hello"}  # fmt: skip
    assert streamed == "chunk 0\nchunk 1\nchunk 2\n"
    assert hello == "hello, asynchronously"
