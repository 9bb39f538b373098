"""The static file handler over real sockets, in both run modes: files under ``document_root`` answered without the
Request callback (by the reactor in PROCESS mode, even while every worker is busy), locations, index files,
autoindex, 304, Range and 206, HEAD; and no path that leaves the root, however it is spelled, is ever served."""

from __future__ import annotations

import email.utils
import os
from pathlib import Path

import httpx
import pytest

from httpkit import connect, curl, read_response, start_http_server, url
from serverkit import wait_until

SECRET = b"the secret outside the root"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A document root with files, folders and symlinks, beside a secret that must never be served."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "static" / "css").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "index.html").write_bytes(b"<h1>home</h1>")
    (root / "docs" / "index.html").write_bytes(b"<h1>docs</h1>")
    (root / "docs" / "guide.txt").write_bytes(b"0123456789" * 1000)
    (root / "static" / "css" / "site.css").write_bytes(b"body { color: black }")
    (root / "static" / "notes.unknownext").write_bytes(b"typed by nothing")
    (root / "data.unknownext").write_bytes(b"not a static type")
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "linkdir").symlink_to(outside)
    (root / "inner.txt").symlink_to(root / "docs" / "guide.txt")  # a symlink that stays inside is fine
    return root


def static_server(start_server, mode: str, site: Path, **settings):
    settings.setdefault("http_index_files", ["index.html"])
    return start_http_server(
        start_server, mode, document_root=str(site), enable_static_handler=True, task_worker_num=0, **settings
    )


def test_files_index_files_and_autoindex_are_served_without_the_request_callback(start_server, mode, site):
    server = static_server(start_server, mode, site, http_autoindex=True)
    with httpx.Client(timeout=10) as client:
        guide = client.get(url(server, "/docs/guide.txt"))
        assert guide.content == (site / "docs" / "guide.txt").read_bytes()
        assert guide.headers["content-type"].startswith("text/plain")
        assert guide.headers["accept-ranges"] == "bytes"
        assert client.get(url(server, "/")).content == b"<h1>home</h1>"
        assert client.get(url(server, "/docs/")).content == b"<h1>docs</h1>"
        assert client.get(url(server, "/inner.txt")).content == guide.content
        listing = client.get(url(server, "/empty/"))
        assert listing.status_code == 200 and "Index of /empty/" in listing.text
        listing = client.get(url(server, "/static/"))
        assert 'href="/static/css/"' in listing.text and 'href="/static/notes.unknownext"' in listing.text
        # A file of no known type is not static (as Swoole): the callback answers it.
        assert client.get(url(server, "/data.unknownext")).text == "hello world"
        assert client.get(url(server, "/missing.txt")).text == "hello world"
    assert [event["path"] for event in server.events("request")] == ["/data.unknownext", "/missing.txt"]


def test_static_handler_locations_limit_the_static_paths(start_server, mode, site):
    server = static_server(start_server, mode, site, static_handler_locations=["/static"])
    with httpx.Client(timeout=10) as client:
        assert client.get(url(server, "/static/css/site.css")).content == b"body { color: black }"
        notes = client.get(url(server, "/static/notes.unknownext"))  # under a location any file is static
        assert (notes.content, notes.headers["content-type"]) == (b"typed by nothing", "application/octet-stream")
        assert client.get(url(server, "/docs/guide.txt")).text == "hello world"
        assert client.get(url(server, "/staticx/css/site.css")).text == "hello world"


def test_if_modified_since_gets_304_and_range_gets_206(start_server, mode, site):
    server = static_server(start_server, mode, site)
    guide = (site / "docs" / "guide.txt").read_bytes()
    with httpx.Client(timeout=10) as client:
        first = client.get(url(server, "/docs/guide.txt"))
        modified = first.headers["last-modified"]
        assert email.utils.parsedate_to_datetime(modified).timestamp() == int(os.stat(site / "docs/guide.txt").st_mtime)
        cached = client.get(url(server, "/docs/guide.txt"), headers={"If-Modified-Since": modified})
        assert (cached.status_code, cached.content) == (304, b"")
        since_1998 = {"If-Modified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"}
        assert client.get(url(server, "/docs/guide.txt"), headers=since_1998).status_code == 200
        part = client.get(url(server, "/docs/guide.txt"), headers={"Range": "bytes=10-24"})
        assert (part.status_code, part.content) == (206, guide[10:25])
        assert part.headers["content-range"] == f"bytes 10-24/{len(guide)}"
        tail = client.get(url(server, "/docs/guide.txt"), headers={"Range": "bytes=-7"})
        assert (tail.status_code, tail.content) == (206, guide[-7:])
        past = client.get(url(server, "/docs/guide.txt"), headers={"Range": "bytes=20000-"})
        assert (past.status_code, past.headers["content-range"]) == (416, f"bytes */{len(guide)}")
        stale = client.get(url(server, "/docs/guide.txt"), headers={"Range": "bytes=0-1", "If-Range": "yesterday"})
        assert (stale.status_code, stale.content) == (200, guide)
    assert curl("--range", "100-199", url(server, "/docs/guide.txt")).stdout == guide[100:200]
    with connect(server.port) as sock:  # HEAD: the headers of the GET, no body; the connection goes on
        buffer = bytearray()
        sock.sendall(b"HEAD /docs/guide.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
        _, headers, _ = read_response(sock, buffer, head=True)
        assert headers["content-length"] == str(len(guide))
        assert read_response(sock, buffer)[2] == b"<h1>home</h1>"
    assert server.events("request") == []


TRAVERSALS = [
    b"/../outside/secret.txt",
    b"/docs/../../outside/secret.txt",
    b"/%2e%2e/outside/secret.txt",
    b"/%2E%2E/outside/secret.txt",
    b"/docs/%2e%2e/%2e%2e/outside/secret.txt",
    b"/..%2foutside%2fsecret.txt",
    b"/%2e%2e%2foutside%2fsecret.txt",
    b"/..%5coutside%5csecret.txt",
    b"/%252e%252e/outside/secret.txt",
    b"/%252e%252e%252foutside%252fsecret.txt",
    b"/..\\outside\\secret.txt",
    b"/.%2e/outside/secret.txt",
    b"/static/../../outside/secret.txt",
    b"/link.txt",
    b"/linkdir/secret.txt",
    b"/linkdir/",
    b"//outside/secret.txt",
    b"/docs/guide.txt%00.html",
    b"http://x/../outside/secret.txt",
]


def test_no_path_outside_the_root_is_ever_served(start_server, mode, site):
    server = static_server(start_server, mode, site, http_autoindex=True)
    for target in TRAVERSALS:
        with connect(server.port) as sock:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = read_response(sock)
        assert SECRET not in body and b"secret.txt" not in body, (target, status, body)
        assert status.split()[1] in (b"200", b"400", b"404"), (target, status)
        if status.split()[1] == b"200":
            assert body == b"hello world", target  # the Request callback, not a file
    # And with real clients, which normalize some of these spellings before they send them.
    assert SECRET not in curl("--path-as-is", url(server, "/../outside/secret.txt"), check=False).stdout
    assert SECRET not in httpx.get(url(server, "/linkdir/secret.txt"), timeout=10).content


def test_static_files_are_served_by_the_reactor_while_every_worker_is_busy(start_server, site):
    server = static_server(start_server, "PROCESS", site, worker_num=1)
    blocked = connect(server.port)
    blocked.sendall(b"GET /block?gate=go HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_event("blocking")
    with httpx.Client(timeout=10) as client:
        assert client.get(url(server, "/docs/guide.txt")).content == (site / "docs" / "guide.txt").read_bytes()
        assert client.get(url(server, "/")).content == b"<h1>home</h1>"
    server.release("go")
    assert read_response(blocked)[2] == b"unblocked"
    blocked.close()


def copies_open(pid: int, path: Path) -> int:
    """How many descriptors of process ``pid`` have ``path`` open."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
        except OSError:
            pass  # closed meanwhile
    return count


def test_a_client_pipelining_file_requests_without_reading_holds_only_a_few_files_open(start_server, mode, site):
    """Each answered file request queues an open file behind the one being sent; the connection stops serving
    its next requests at FILES_WAITING_MAX, so a client cannot make the server hold a descriptor per request."""
    big = site / "big.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    server = static_server(start_server, mode, site)  # one process: the master, or BASE's only worker
    requests = 40
    with connect(server.port) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n" * requests)
        wait_until(lambda: copies_open(server.pid, big) >= 3, 10, "the server never started sending the files")
        held = [copies_open(server.pid, big)]
        buffer = bytearray()
        for _ in range(requests):
            status, _, body = read_response(sock, buffer)
            assert status.startswith(b"HTTP/1.1 200") and len(body) == 2 * 1024 * 1024
            held.append(copies_open(server.pid, big))
    # The one being sent, FILES_WAITING_MAX (4) waiting, and one request served as the limit is checked.
    assert max(held) <= 6, held
    wait_until(lambda: copies_open(server.pid, big) == 0, 10, "the files were not all closed")
