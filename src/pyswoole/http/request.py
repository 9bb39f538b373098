"""The public ``Request``: what the Request callback reads, each accessor parsed on first use.

A Request wraps a parsed ``RequestHead`` and its whole body; building one costs a few attribute stores, and
``header``, ``server``, ``get``, ``post``, ``cookie`` and ``files`` are computed when first read and then kept
as plain instance attributes (an application may also assign them, as in Swoole).

Invariants: no accessor raises on what the client sent (a malformed multipart body gives ``post`` and ``files``
None and one logged warning); every upload's temp file is listed for ``cleanup()``, which the server calls once
the callback is over.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from ..log import logger
from .forms import FormData, MalformedForm, multipart_boundary, parse_cookies, parse_multipart, parse_query
from .options import HttpOptions
from .parser import RequestHead, decode_path

T = TypeVar("T")

URLENCODED = b"application/x-www-form-urlencoded"
MULTIPART = b"multipart/form-data"


class parsed_on_first_use(Generic[T]):
    """A non-data descriptor: the first read computes the value and stores it in the instance's ``__dict__``,
    where later reads (and assignments) find it without calling anything."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> parsed_on_first_use[T]: ...

    @overload
    def __get__(self, instance: object, owner: type[Any]) -> T: ...

    def __get__(self, instance: object | None, owner: type[Any]) -> T | parsed_on_first_use[T]:
        if instance is None:
            return self
        value = self.build(instance)
        instance.__dict__[self.name] = value
        return value


class Request:
    """An HTTP request, as Swoole's ``Swoole\\Http\\Request``."""

    def __init__(
        self,
        head: RequestHead,
        body: bytes,
        fd: int,
        remote_addr: str,
        remote_port: int,
        server_port: int,
        master_time: float,
        options: HttpOptions,
    ) -> None:
        self.fd = fd
        self._head = head
        self._body = body
        self._remote_addr = remote_addr
        self._remote_port = remote_port
        self._server_port = server_port
        self._master_time = master_time
        self._options = options
        self._request_time = time.time()
        self._tmp_files: list[str] = []

    def __repr__(self) -> str:
        return f"<Request fd={self.fd} {self._head.method} {self._head.target.decode('latin-1')!r}>"

    @property
    def head(self) -> RequestHead:
        """The request line and header section as parsed: ``head.headers`` keeps every header line, in order
        (what ``header`` merges). Not in Swoole; ASGI's WebSocket scope needs it."""
        return self._head

    @parsed_on_first_use
    def header(self) -> dict[str, str]:
        """Header names lower-cased; a repeated header's values joined with ", "."""
        header: dict[str, str] = {}
        for name, value in self._head.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            header[key] = header[key] + ", " + text if key in header else text
        return header

    @parsed_on_first_use
    def server(self) -> dict[str, Any]:
        head = self._head
        server: dict[str, Any] = {
            "request_method": head.method,
            "request_uri": head.path.decode("latin-1"),
            "path_info": decode_path(head.path),
            "request_time": int(self._request_time),
            "request_time_float": self._request_time,
            "server_protocol": "HTTP/" + head.version,
            "server_port": self._server_port,
            "remote_port": self._remote_port,
            "remote_addr": self._remote_addr,
            "master_time": int(self._master_time),
        }
        if head.query:
            server["query_string"] = head.query.decode("latin-1")
        return server

    @parsed_on_first_use
    def get(self) -> FormData | None:
        return parse_query(self._head.query) if self._head.query else None

    @parsed_on_first_use
    def post(self) -> FormData | None:
        if not self._options.http_parse_post or not self._body:
            return None
        content_type = self._content_type().lower()
        if content_type.startswith(URLENCODED):
            return parse_query(self._body)
        if content_type.startswith(MULTIPART):
            return self._parse_multipart()[0]
        return None

    @parsed_on_first_use
    def files(self) -> FormData | None:
        if not self._options.http_parse_files or not self._body:
            return None
        if self._content_type().lower().startswith(MULTIPART):
            return self._parse_multipart()[1]
        return None

    @parsed_on_first_use
    def cookie(self) -> dict[str, str] | None:
        if not self._options.http_parse_cookie:
            return None
        lines = [value for name, value in self._head.headers if name == b"cookie"]
        return parse_cookies(lines) if lines else None

    def _content_type(self) -> bytes:
        for name, value in self._head.headers:
            if name == b"content-type":
                return value
        return b""

    def _parse_multipart(self) -> tuple[FormData | None, FormData | None]:
        """Fields and uploads of the multipart body, parsed once for both ``post`` and ``files``."""
        if "_multipart" in self.__dict__:
            parsed: tuple[FormData | None, FormData | None] = self.__dict__["_multipart"]
            return parsed
        options = self._options
        parsed = (None, None)
        boundary = multipart_boundary(self._content_type())
        if boundary is None:
            logger.warning("fd %d: multipart/form-data without a boundary", self.fd)
        else:
            try:
                fields, files, tmp_files = parse_multipart(
                    self._body, boundary, options.http_parse_post, options.http_parse_files, options.upload_tmp_dir
                )
            except MalformedForm as error:
                logger.warning("fd %d: malformed multipart/form-data body: %s", self.fd, error)
            else:
                parsed = (fields, files)
                self._tmp_files += tmp_files
        self.__dict__["_multipart"] = parsed
        return parsed

    def cleanup(self) -> None:
        """Remove the uploads' temp files that are still there (the application may have moved them)."""
        for path in self._tmp_files:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._tmp_files = []

    def get_content(self) -> bytes:
        """The raw body (de-chunked)."""
        return self._body

    def get_data(self) -> bytes:
        """The whole request as received: request line, headers and body (a chunked body de-chunked)."""
        return self._head.raw + self._body

    def get_method(self) -> str:
        return self._head.method

    # Swoole's spellings.
    getContent = get_content
    rawContent = get_content
    getData = get_data
    getMethod = get_method
