"""Form data by Swoole's rules (which are PHP's): query strings, url-encoded and multipart bodies, cookies.

Names and values are percent-decoded (``+`` is a space) and read as UTF-8, a broken sequence replaced. A plain
name seen twice keeps its last value; ``name[]`` appends to a list and ``name[key]`` fills a dict, nested as
deep as ``MAX_DEPTH`` (``a[x][]=1`` gives ``{"a": {"x": ["1"]}}``). Cookies keep the first value of a name.

Invariant: nothing here raises on bad input. Query strings, url-encoded bodies and cookies always parse (a
piece that cannot be read is skipped); a malformed multipart body raises ``MalformedForm`` to its one caller,
after removing the temp files it had written.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .headers import PERCENT, PLUS

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# python-multipart logs each malformed body itself; the request logs it once, with the session id.
logging.getLogger("python_multipart.multipart").setLevel(logging.ERROR)

MAX_DEPTH = 64  # PHP's max_input_nesting_level
UPLOAD_PREFIX = "pyswoole.upfile."

# PHP's upload error codes, as Swoole reports them in files[...]["error"].
UPLOAD_ERR_OK = 0
UPLOAD_ERR_NO_FILE = 4
UPLOAD_ERR_CANT_WRITE = 7

FormData = dict[str, Any]


class MalformedForm(ValueError):
    pass


def decode(text: bytes) -> str:
    """Percent-decode ``text`` (``+`` is a space) and read it as UTF-8."""
    if PERCENT in text or PLUS in text:
        text = unquote_to_bytes(text.replace(b"+", b" "))
    return text.decode("utf-8", "replace")


def split_name(name: str) -> tuple[str, list[str]] | None:
    """``a[x][]`` -> ``("a", ["x", ""])``, by PHP's rules; None for a name PHP drops (no base name)."""
    name = name.lstrip(" ")
    bracket = name.find("[")
    if bracket < 0:
        return (name, []) if name else None
    if bracket == 0:
        return None
    base = name[:bracket]
    keys: list[str] = []
    position = bracket
    while position < len(name) and name[position] == "[":
        close = name.find("]", position + 1)
        if close < 0:
            if not keys:  # PHP reads a lone "[" as part of the name, as "_"
                return base + "_" + name[bracket + 1 :], []
            break
        keys.append(name[position + 1 : close])
        position = close + 1
    return base, keys


def assign(form: FormData, name: str, value: Any) -> None:
    """Store ``value`` under the (possibly bracketed) ``name`` in ``form``."""
    split = split_name(name)
    if split is None:
        return
    base, keys = split
    if not keys:
        form[base] = value
        return
    if len(keys) > MAX_DEPTH:
        return
    container: dict[str, Any] | list[Any] = form
    key: str | None = base
    for segment in keys:
        container = _child(container, key, appends=segment == "")
        key = None if segment == "" else segment
    if isinstance(container, list):
        container.append(value)
    else:
        assert key is not None
        container[key] = value


def _child(container: dict[str, Any] | list[Any], key: str | None, appends: bool) -> dict[str, Any] | list[Any]:
    """The list (``appends``) or dict stored at ``container[key]`` (``key`` None: appended), made if need be."""
    if isinstance(container, list):
        child: dict[str, Any] | list[Any] = [] if appends else {}
        container.append(child)
        return child
    assert key is not None
    existing = container.get(key)
    if appends:
        if isinstance(existing, list):
            return existing
        child = container[key] = []
        return child
    if isinstance(existing, dict):
        return existing
    child = container[key] = {}
    return child


def parse_query(data: bytes) -> FormData | None:
    """A query string or an url-encoded body; None when it names nothing."""
    form: FormData = {}
    for pair in data.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        if name:
            assign(form, decode(name), decode(value))
    return form or None


def parse_cookies(lines: list[bytes]) -> dict[str, str] | None:
    """The Cookie header lines' pairs; the first value of a name wins (the most specific path comes first)."""
    cookies: dict[str, str] = {}
    for line in lines:
        for pair in line.split(b";"):
            name, _, value = pair.lstrip(b" \t").partition(b"=")
            if name:
                cookies.setdefault(decode(name), decode(value))
    return cookies or None


def multipart_boundary(content_type: bytes) -> bytes | None:
    """The boundary parameter of a ``multipart/form-data`` Content-Type."""
    _, params = parse_options_header(content_type)
    return params.get(b"boundary") or None


def parse_multipart(
    body: bytes, boundary: bytes, fields: bool, files: bool, tmp_dir: str
) -> tuple[FormData | None, FormData | None, list[str]]:
    """The form fields (if ``fields``), the uploads (if ``files``) and the temp files written for them.

    Raises ``MalformedForm`` (having removed its temp files) when the body is not a complete multipart body.
    """
    reader = _MultipartReader(fields, files, tmp_dir)
    try:
        parser = MultipartParser(boundary, reader.callbacks())
        # Some clients send an empty line before the first boundary: python-multipart wants "--" first.
        parser.write(body.lstrip(b"\r\n"))
        parser.finalize()
    except (MultipartParseError, ValueError) as error:
        reader.discard()
        raise MalformedForm(str(error)) from None
    if not reader.complete:
        reader.discard()
        raise MalformedForm("the body ends before the closing boundary")
    return reader.fields or None, reader.files or None, reader.tmp_files


class _MultipartReader:
    """python-multipart's callbacks: each part's headers, then its data into memory (a field) or a temp file."""

    def __init__(self, keep_fields: bool, keep_files: bool, tmp_dir: str) -> None:
        self.keep_fields = keep_fields
        self.keep_files = keep_files
        self.tmp_dir = tmp_dir
        self.fields: FormData = {}
        self.files: FormData = {}
        self.tmp_files: list[str] = []
        self.complete = False
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None  # the current part's form name; None: the part is skipped
        self._filename: str | None = None  # set for a file part
        self._chunks: list[bytes] = []
        self._fd = -1
        self._size = 0
        self._error = UPLOAD_ERR_OK

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._name = self._filename = None
        self._chunks = []
        self._fd = -1
        self._size = 0
        self._error = UPLOAD_ERR_OK

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name")
        if disposition != b"form-data" or name is None:
            return  # not a form field: skipped, as PHP does
        filename = params.get(b"filename")
        if filename is None:
            if self.keep_fields:
                self._name = name.decode("utf-8", "replace")
            return
        if not self.keep_files:
            return
        self._name = name.decode("utf-8", "replace")
        self._filename = filename.decode("utf-8", "replace")
        if not filename:
            self._error = UPLOAD_ERR_NO_FILE
            return
        try:
            self._fd, path = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=self.tmp_dir)
        except OSError:
            self._error = UPLOAD_ERR_CANT_WRITE
            return
        self.tmp_files.append(path)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name is None:
            return
        if self._filename is None:
            self._chunks.append(data[start:end])
        elif self._fd >= 0:
            try:
                os.write(self._fd, data[start:end])
                self._size += end - start
            except OSError:
                self._close_file()
                self._error = UPLOAD_ERR_CANT_WRITE

    def _part_end(self) -> None:
        if self._name is None:
            return
        if self._filename is None:
            assign(self.fields, self._name, b"".join(self._chunks).decode("utf-8", "replace"))
            return
        path = self.tmp_files[-1] if self._fd >= 0 else ""
        self._close_file()
        if self._error != UPLOAD_ERR_OK:
            path = ""
        upload = {
            "name": self._filename,
            "type": self._headers.get(b"content-type", b"").decode("latin-1"),
            "tmp_name": path,
            "error": self._error,
            "size": self._size if path else 0,
        }
        assign(self.files, self._name, upload)

    def _end(self) -> None:
        self.complete = True

    def _close_file(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Close and remove every temp file written so far."""
        self._close_file()
        for path in self.tmp_files:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.tmp_files = []
