"""examples/http_server.py runs and serves what its docstring promises."""

from __future__ import annotations

from pathlib import Path

import httpx

from httpkit import curl, url

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "http_server.py"

RUN_EXAMPLE = """
import importlib.util
os.environ["PORT"] = "0"
spec = importlib.util.spec_from_file_location("http_example", example)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
report_port(module.server)
serve(module.server)
"""


def test_the_http_example_serves_its_static_files_and_routes(start_server, connect, tmp_path):
    server = start_server(RUN_EXAMPLE, example=str(EXAMPLE))
    connect(server).close()  # waits until it listens: the port is reported once bound, before start()
    with httpx.Client(timeout=10) as client:
        home = client.get(url(server, "/"))
        assert home.status_code == 200 and "pyswoole HTTP demo" in home.text
        assert client.get(url(server, "/style.css")).headers["content-type"].startswith("text/css")
        assert client.get(url(server, "/hello?name=reader")).text == "hello reader\n"
        assert client.get(url(server, "/form")).text.count("<form") == 1
        countdown = client.get(url(server, "/countdown"))
        assert countdown.headers["transfer-encoding"] == "chunked"
        assert countdown.text == "3...\n2...\n1...\nliftoff\n"
        assert client.get(url(server, "/stats")).json()["worker_num"] == 2
        assert client.get(url(server, "/nowhere")).status_code == 404
    upload = tmp_path / "notes.txt"
    upload.write_text("some notes\n")
    page = curl("-F", "note=hi there", "-F", f"file=@{upload}", url(server, "/form")).stdout.decode()
    assert "&quot;note&quot;: &quot;hi there&quot;" in page and "&quot;size&quot;: 11" in page
