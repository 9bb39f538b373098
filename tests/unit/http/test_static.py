"""The static handler's decisions, on a real folder: what is served, with which status, and what never is."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pyswoole.http.headers import http_date
from pyswoole.http.static import FileRange, StaticFiles, StaticReply

MTIME = 1_700_000_000


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """``tmp/root`` (the document root) and ``tmp/outside`` (a secret next to it), with symlinks both ways."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "static").mkdir()
    outside.mkdir()
    files = {
        root / "index.html": b"<h1>home</h1>",
        root / "style.css": b"0123456789",
        root / "data.unknownext": b"??",
        root / "sub" / "a.txt": b"a",
        root / "sub" / "<b>&.txt": b"b",
        root / "static" / "blob.unknownext": b"blob",
        root / "staticx.txt": b"x",
        outside / "secret.txt": b"SECRET",
    }
    for path, content in files.items():
        path.write_bytes(content)
        os.utime(path, (MTIME, MTIME))
    (root / "link_out").symlink_to(outside / "secret.txt")
    (root / "link_dir_out").symlink_to(outside)
    (root / "link_in.css").symlink_to(root / "style.css")
    return root


def serve(
    handler: StaticFiles, path: bytes, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> StaticReply | None:
    return handler.serve(method, path, headers or [], True)


def lines_of(reply: StaticReply) -> list[bytes]:
    return reply.head.split(b"\r\n")


def test_a_file_is_answered_with_its_type_length_and_date_and_sent_zero_copy(site: Path) -> None:
    reply = serve(StaticFiles(str(site)), b"/style.css")

    assert reply is not None
    assert reply.status == 200
    lines = lines_of(reply)
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Type: text/css" in lines
    assert b"Content-Length: 10" in lines
    assert b"Last-Modified: " + http_date(MTIME).encode() in lines
    assert b"Accept-Ranges: bytes" in lines and b"Server: pyswoole" in lines and b"Connection: keep-alive" in lines
    assert reply.head.endswith(b"\r\n\r\n") and reply.body == b""
    assert reply.file == FileRange(str(site / "style.css"), 0, 10)
    assert reply.keep_alive


def test_head_gets_the_headers_without_the_file(site: Path) -> None:
    reply = serve(StaticFiles(str(site)), b"/style.css", "HEAD")

    assert reply is not None and reply.file is None and b"Content-Length: 10" in lines_of(reply)


def test_keep_alive_false_answers_with_connection_close(site: Path) -> None:
    reply = StaticFiles(str(site)).serve("GET", b"/style.css", [], False)

    assert reply is not None and not reply.keep_alive and b"Connection: close" in lines_of(reply)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", b"/style.css"),
        ("GET", b"/missing.css"),
        ("GET", b"/data.unknownext"),  # no known type and no locations: maybe a script, not static
        ("GET", b"/empty/"),  # a folder without index file nor autoindex
        ("GET", b"style.css"),  # not origin form
    ],
)
def test_what_is_not_static_falls_through_to_the_application(site: Path, method: str, path: bytes) -> None:
    assert serve(StaticFiles(str(site)), path, method) is None


def test_a_percent_encoded_name_is_decoded_once(site: Path) -> None:
    reply = serve(StaticFiles(str(site), autoindex=True), b"/sub/%3Cb%3E%26.txt")

    assert reply is not None and reply.file is not None and reply.file.path.endswith("<b>&.txt")


def test_locations_limit_static_files_to_path_prefixes(site: Path) -> None:
    handler = StaticFiles(str(site), locations=["/static/"])

    served = serve(handler, b"/static/blob.unknownext")

    assert served is not None and b"Content-Type: application/octet-stream" in lines_of(served)
    assert serve(handler, b"/style.css") is None
    assert serve(handler, b"/staticx.txt") is None


def test_a_folder_is_answered_by_its_index_file(site: Path) -> None:
    reply = serve(StaticFiles(str(site), index_files=["missing.html", "index.html"]), b"/")

    assert reply is not None and reply.file == FileRange(str(site / "index.html"), 0, 13)


def test_autoindex_lists_a_folder_with_names_escaped_and_links_encoded(site: Path) -> None:
    reply = serve(StaticFiles(str(site), autoindex=True), b"/sub")

    assert reply is not None and reply.status == 200 and reply.file is None
    page = reply.body.decode()
    assert "<title>Index of /sub/</title>" in page
    assert '<a href="/sub/%3Cb%3E%26.txt">&lt;b&gt;&amp;.txt</a>' in page
    assert '<a href="/sub/a.txt">a.txt</a>' in page
    assert '<a href="/sub/../">..</a>' in page
    assert b"Content-Length: %d" % len(reply.body) in lines_of(reply)


def test_autoindex_of_the_root_has_no_parent_link_and_marks_folders(site: Path) -> None:
    reply = serve(StaticFiles(str(site), autoindex=True), b"/", "HEAD")
    full = serve(StaticFiles(str(site), autoindex=True), b"/")

    assert reply is not None and reply.body == b""
    assert full is not None
    page = full.body.decode()
    assert "..</a>" not in page
    assert '<a href="/sub/">sub/</a>' in page


# ---- conditional and range requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "status"),
    [
        (http_date(MTIME), 304),
        (http_date(MTIME + 3600), 304),
        ("Tuesday, 14-Nov-23 22:13:20 GMT", 304),
        (http_date(MTIME - 1), 200),
        ("not a date", 200),
    ],
)
def test_if_modified_since_gives_304_when_the_file_is_not_newer(site: Path, since: str, status: int) -> None:
    reply = serve(StaticFiles(str(site)), b"/style.css", headers=[(b"if-modified-since", since.encode())])

    assert reply is not None and reply.status == status
    if status == 304:
        assert reply.file is None and reply.body == b""
        assert not any(line.startswith(b"Content-Length") for line in lines_of(reply))


@pytest.mark.parametrize(
    ("spec", "offset", "length", "content_range"),
    [
        (b"bytes=2-5", 2, 4, b"bytes 2-5/10"),
        (b"bytes=7-", 7, 3, b"bytes 7-9/10"),
        (b"bytes=-3", 7, 3, b"bytes 7-9/10"),
        (b"bytes=-30", 0, 10, b"bytes 0-9/10"),
        (b"bytes=5-100", 5, 5, b"bytes 5-9/10"),
    ],
)
def test_a_single_range_gives_206(site: Path, spec: bytes, offset: int, length: int, content_range: bytes) -> None:
    reply = serve(StaticFiles(str(site)), b"/style.css", headers=[(b"range", spec)])

    assert reply is not None and reply.status == 206
    assert b"Content-Range: " + content_range in lines_of(reply)
    assert b"Content-Length: %d" % length in lines_of(reply)
    assert reply.file == FileRange(str(site / "style.css"), offset, length)


@pytest.mark.parametrize("spec", [b"bytes=10-", b"bytes=99-100", b"bytes=-0"])
def test_an_unsatisfiable_range_gives_416(site: Path, spec: bytes) -> None:
    reply = serve(StaticFiles(str(site)), b"/style.css", headers=[(b"range", spec)])

    assert reply is not None and reply.status == 416 and reply.file is None
    assert b"Content-Range: bytes */10" in lines_of(reply)


@pytest.mark.parametrize("spec", [b"bytes=0-1,4-5", b"bytes=x-y", b"items=0-1", b"bytes=5-2", b"bytes=-"])
def test_several_or_unreadable_ranges_give_the_whole_file(site: Path, spec: bytes) -> None:
    reply = serve(StaticFiles(str(site)), b"/style.css", headers=[(b"range", spec)])

    assert reply is not None and reply.status == 200 and reply.file == FileRange(str(site / "style.css"), 0, 10)


def test_if_range_applies_the_range_only_to_the_same_file_version(site: Path) -> None:
    same = [(b"range", b"bytes=0-0"), (b"if-range", http_date(MTIME).encode())]
    changed = [(b"range", b"bytes=0-0"), (b"if-range", http_date(MTIME - 60).encode())]

    first = serve(StaticFiles(str(site)), b"/style.css", headers=same)
    second = serve(StaticFiles(str(site)), b"/style.css", headers=changed)
    assert first is not None and first.status == 206
    assert second is not None and second.status == 200


# ---- nothing outside the root ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        b"/../outside/secret.txt",
        b"/sub/../../outside/secret.txt",
        b"/%2e%2e/outside/secret.txt",
        b"/%2E%2E/outside/secret.txt",
        b"/sub/%2e%2e/%2e%2e/outside/secret.txt",
        b"/..%2foutside%2fsecret.txt",
        b"/..%2Foutside/secret.txt",
        b"/%2Fetc%2Fpasswd",
        b"/..%5c..%5coutside%5csecret.txt",
        b"/..\\outside\\secret.txt",
        b"/%252e%252e/outside/secret.txt",
        b"/%25%32%65%25%32%65/outside/secret.txt",
        b"/style.css%00.html",
        b"/style.css\x00.html",
        b"/link_out",
        b"/link_dir_out/secret.txt",
        b"/link_dir_out/",
    ],
)
def test_no_path_leaving_the_root_is_ever_served(site: Path, path: bytes) -> None:
    for handler in (
        StaticFiles(str(site)),
        StaticFiles(str(site), locations=["/"], index_files=["secret.txt"], autoindex=True),
    ):
        reply = serve(handler, path)
        assert reply is None or (reply.file is None and b"SECRET" not in reply.body), path


def test_a_symlink_that_stays_under_the_root_is_served(site: Path) -> None:
    reply = serve(StaticFiles(str(site)), b"/link_in.css")

    assert reply is not None and reply.file == FileRange(str(site / "style.css"), 0, 10)


def test_a_document_root_reached_through_a_symlink_works(site: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(site)

    reply = serve(StaticFiles(str(alias)), b"/style.css")

    assert reply is not None and reply.file is not None and reply.file.length == 10


def test_the_dates_in_a_reply_are_http_dates(site: Path) -> None:
    reply = serve(StaticFiles(str(site)), b"/style.css")

    assert reply is not None
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n", reply.head)
