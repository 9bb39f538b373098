"""The examples of the repository, served as their docstrings say: ``examples/fastapi_app.py`` (task workers
through ``task_co``, and pushes to every WebSocket client through pyswoole's ASGI extension) and
``examples/flask_app.py``."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest
from hostkit import REPO, http_client
from websockets.sync.client import connect as ws_connect

from programs import need

pytestmark = pytest.mark.timeout(90)

EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def fastapi_example(serve_module):
    return serve_module("fastapi_app:app", "--workers", "2", "--task-workers", "2",
                        "--task-handler", "fastapi_app:checksum_task", app_dir=EXAMPLES)  # fmt: skip


def test_the_fastapi_example_hands_work_to_the_task_workers_with_task_co(fastapi_example):
    with http_client(base_url=fastapi_example.url) as client:
        item = client.get("/items/3", params={"q": "pen"}).json()
        answer = client.post("/checksums", json={"texts": ["a", "b", "c"]}).json()

    digest = b"a"
    for _ in range(10_000):
        digest = hashlib.sha256(digest).digest()
    assert item == {"item_id": 3, "q": "pen"}
    assert [result["text"] for result in answer["checksums"]] == ["a", "b", "c"]
    assert answer["checksums"][0]["sha256x10000"] == digest.hex()
    assert all(result["task_worker_pid"] != answer["worker_pid"] for result in answer["checksums"])


def test_the_fastapi_example_pushes_to_every_websocket_client_whichever_worker_holds_it(fastapi_example):
    url = fastapi_example.url.replace("http", "ws") + "/ws"
    with ws_connect(url, proxy=None) as first, ws_connect(url, proxy=None) as second:
        with http_client(base_url=fastapi_example.url) as client:
            delivered = client.post("/broadcast", json={"text": "hello, all"}).json()
        received = [first.recv(timeout=5), second.recv(timeout=5)]
        first.send("from the first")
        chat = [first.recv(timeout=5), second.recv(timeout=5)]

    assert delivered == {"delivered": 2}
    assert received == ["hello, all", "hello, all"]
    assert chat == ["from the first", "from the first"]


def test_the_flask_example(serve, tmp_path):
    served = serve("flask_app:app", "--workers", "2", app_dir=EXAMPLES)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"0123456789" * 1000)

    with http_client(base_url=served.url) as client:
        hello = client.get("/").json()
        greeting = client.get("/greet/ada").text
    by_curl = subprocess.run([need("curl"), "-s", "-F", f"file=@{upload}", served.url + "/upload"],
                             capture_output=True, timeout=20)  # fmt: skip

    assert hello["hello"] == "from pyswoole" and greeting == "Hello, ada!\n"
    assert json.loads(by_curl.stdout) == {"filename": "upload.bin", "size": 10000,
                                          "sha256": hashlib.sha256(upload.read_bytes()).hexdigest()}  # fmt: skip
