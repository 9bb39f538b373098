"""Framing: a connection's stream of reads cut into packages, by Swoole's port-level framing settings.

Sans-IO like h11: ``framer_for(setting)`` makes one framer per connection, the reactor hands it the bytes of
each read (``feed``) and dispatches the complete packages it returns; nothing here touches a socket.
Without any framing option there is no framer at all (``None``), and each read is dispatched as it is.

Four framers, one per Swoole protocol (swoole-model.md §3.2):

* ``EofCheckFramer`` (open_eof_check): the whole buffer is one package as soon as it *ends* with package_eof;
* ``EofSplitFramer`` (open_eof_split): one package per package_eof, each ending with it;
* ``LengthFramer`` (open_length_check): package = package_body_offset + the length field's value, header included;
* ``FuncFramer`` (open_length_check with package_length_func): the user's function gives each package's length.

Invariants: no framer returns a package longer than package_max_length, and for the splitting framers (all but
EofCheckFramer) the packages depend only on the bytes, never on how the stream was cut into reads. A framer that
raised ``FramingError`` is spent: the caller closes its connection.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol, SupportsIndex

from ..constants import ErrorCode
from ..settings import IPC_BODY_SIZE, PACKAGE_LENGTH_TYPES

__all__ = [
    "LENGTH_FUNC_WINDOW",
    "EofCheckFramer",
    "EofSplitFramer",
    "Framer",
    "FramingError",
    "FuncFramer",
    "LengthFramer",
    "framer_for",
]

# Swoole reads at most one IPC buffer (8152 bytes) of a package before asking package_length_func for its
# length, and gives up on a connection whose length is not found in that much (PACKAGE_LENGTH_NOT_FOUND).
LENGTH_FUNC_WINDOW: Final = IPC_BODY_SIZE  # a length function sees at most one IPC message body, as in Swoole


class FramingError(Exception):
    """The bytes of a connection cannot be framed; the caller closes the connection.

    ``code`` is Swoole's error number: PACKAGE_LENGTH_TOO_LARGE (1201), PACKAGE_LENGTH_NOT_FOUND (1202) or
    PACKAGE_MALFORMED_DATA (1204). ``packages`` holds the packages that the same ``feed()`` completed before
    the bad bytes: Swoole dispatches those before it closes the connection, and so should the caller.
    """

    def __init__(self, code: int, message: str, packages: Iterable[bytes] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.packages = list(packages)


class Framer(Protocol):
    """What the reactor holds per connection: one of the four framers below."""

    @property
    def buffered(self) -> int:
        """Bytes received and waiting for the rest of their package."""
        ...

    def feed(self, data: bytes) -> list[bytes]:
        """The packages that ``data`` completes, in order (often none); raises ``FramingError``."""
        ...


def framer_for(setting: Mapping[str, Any]) -> Framer | None:
    """The framer a connection of a port with these (resolved) settings needs; ``None`` in raw mode.

    As in Swoole, EOF framing wins over length framing, open_eof_split implies open_eof_check, and
    package_length_func only takes effect with open_length_check on.
    """
    if setting.get("open_eof_split"):
        return EofSplitFramer(setting["package_eof"], setting["package_max_length"])
    if setting.get("open_eof_check"):
        return EofCheckFramer(setting["package_eof"], setting["package_max_length"])
    if setting.get("open_length_check"):
        length_func = setting.get("package_length_func")
        if length_func is not None:
            return FuncFramer(length_func, setting["package_max_length"])
        return LengthFramer(
            setting["package_length_type"],
            setting["package_length_offset"],
            setting["package_body_offset"],
            setting["package_max_length"],
        )
    return None


def _too_large(length: int, max_length: int, packages: Iterable[bytes] = ()) -> FramingError:
    return FramingError(
        ErrorCode.PACKAGE_LENGTH_TOO_LARGE,
        f"package length {length} exceeds package_max_length {max_length}",
        packages,
    )


def _malformed(message: str, packages: Iterable[bytes] = ()) -> FramingError:
    return FramingError(ErrorCode.PACKAGE_MALFORMED_DATA, message, packages)


class _BufferedFramer:
    """What every framer shares: the pending bytes of the package still incomplete.

    A read is framed in place while nothing is pending, so a read that is exactly one package is returned
    as it is; only a read that ends inside a package leaves bytes to keep.
    """

    __slots__ = ("_pending", "_max_length")

    def __init__(self, max_length: int) -> None:
        self._pending = bytearray()
        self._max_length = max_length

    @property
    def buffered(self) -> int:
        return len(self._pending)

    def _keep_from(self, buf: bytes | bytearray, start: int) -> None:
        """Keep ``buf[start:]`` as the pending bytes; ``buf`` is either the read or the pending buffer itself."""
        pending = self._pending
        if buf is pending:
            del pending[:start]  # CPython's bytearray drops a prefix without moving the rest
        elif start < len(buf):
            pending += memoryview(buf)[start:]


class _EofFramer(_BufferedFramer):
    """What the two EOF framers share: package_eof, and the limit on bytes buffered without one."""

    __slots__ = ("_eof",)

    def __init__(self, package_eof: bytes, package_max_length: int) -> None:
        super().__init__(package_max_length)
        self._eof = package_eof

    def _check_incomplete(self, packages: Iterable[bytes] = ()) -> None:
        # The package these bytes start can only be longer than them: at package_max_length it is too large.
        if len(self._pending) >= self._max_length:
            raise FramingError(
                ErrorCode.PACKAGE_LENGTH_TOO_LARGE,
                f"{len(self._pending)} bytes without package_eof {self._eof!r} reach package_max_length "
                f"{self._max_length}",
                packages,
            )


class EofCheckFramer(_EofFramer):
    """open_eof_check: everything buffered is one package once it ends with package_eof.

    Only the end of the buffer is looked at, as Swoole does: a package may hold several messages, and where
    it ends depends on how the stream was cut into reads.
    """

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        pending = self._pending
        if pending:
            pending += data
            if not pending.endswith(self._eof):
                self._check_incomplete()
                return []
            if len(pending) > self._max_length:
                raise _too_large(len(pending), self._max_length)
            package = bytes(pending)
            pending.clear()
            return [package]
        if data.endswith(self._eof):
            if len(data) > self._max_length:
                raise _too_large(len(data), self._max_length)
            return [data]
        pending += data
        self._check_incomplete()
        return []


class EofSplitFramer(_EofFramer):
    """open_eof_split: one package per package_eof, each ending with its package_eof.

    The pending bytes never hold a whole package_eof, so the search in a new read starts where a package_eof
    beginning in the pending bytes could start: byte-at-a-time input is not rescanned.
    """

    __slots__ = ("_eof_size",)

    def __init__(self, package_eof: bytes, package_max_length: int) -> None:
        super().__init__(package_eof, package_max_length)
        self._eof_size = len(package_eof)

    def feed(self, data: bytes) -> list[bytes]:
        pending = self._pending
        if pending:
            search_from = max(0, len(pending) - self._eof_size + 1)
            pending += data
            end = pending.find(self._eof, search_from)
            if end < 0:
                self._check_incomplete()
                return []
            return self._split(pending, end)
        end = data.find(self._eof)
        if end < 0:
            pending += data
            self._check_incomplete()
            return []
        if end + self._eof_size == len(data):
            if len(data) > self._max_length:
                raise _too_large(len(data), self._max_length)
            return [data]
        return self._split(data, end)

    def _split(self, buf: bytes | bytearray, end: int) -> list[bytes]:
        """The packages of ``buf``, whose first package_eof starts at ``end``."""
        eof, eof_size, max_length = self._eof, self._eof_size, self._max_length
        packages: list[bytes] = []
        start = 0
        with memoryview(buf) as view:
            while end >= 0:
                stop = end + eof_size
                if stop - start > max_length:
                    raise _too_large(stop - start, max_length, packages)
                packages.append(view[start:stop].tobytes())
                start = stop
                end = buf.find(eof, start)
        self._keep_from(buf, start)
        self._check_incomplete(packages)
        return packages


class _SizedFramer(_BufferedFramer):
    """A framer that learns each package's total length from its first bytes (``_total_at``)."""

    def _total_at(self, buf: bytes | bytearray, start: int, packages: Iterable[bytes]) -> int:
        raise NotImplementedError

    def _split(self, buf: bytes | bytearray, total: int) -> list[bytes]:
        """The packages of ``buf``; ``total`` is the first one's length if already known, else 0."""
        size = len(buf)
        packages: list[bytes] = []
        start = 0
        with memoryview(buf) as view:
            while start < size:
                if not total:
                    total = self._total_at(buf, start, packages)
                    if not total:
                        break
                stop = start + total
                if stop > size:
                    break
                packages.append(view[start:stop].tobytes())
                start = stop
                total = 0
        self._total = total
        self._keep_from(buf, start)
        return packages


class LengthFramer(_SizedFramer):
    """open_length_check: a package is package_body_offset + the value of its length field, header included.

    The length field (a pack() code of package_length_type at package_length_offset) is parsed once per package,
    as soon as its bytes are there; the total is kept while the body arrives.
    """

    __slots__ = ("_unpack_length", "_length_offset", "_body_offset", "_header_size", "_total")

    def __init__(
        self, package_length_type: str, package_length_offset: int, package_body_offset: int, package_max_length: int
    ) -> None:
        super().__init__(package_max_length)
        length_field = struct.Struct(PACKAGE_LENGTH_TYPES[package_length_type])
        self._unpack_length = length_field.unpack_from
        self._length_offset = package_length_offset
        self._body_offset = package_body_offset
        self._header_size = package_length_offset + length_field.size
        self._total = 0  # length of the pending package, 0 while its length field is incomplete

    def feed(self, data: bytes) -> list[bytes]:
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < (self._total or self._header_size):
                return []
            return self._split(pending, self._total)
        size = len(data)
        if size < self._header_size:
            pending += data
            return []
        # The frequent case, a read that is one whole valid package, checked inline; _split checks the rest.
        (value,) = self._unpack_length(data, self._length_offset)
        if value >= 0 and self._body_offset + value == size <= self._max_length:
            return [data]
        return self._split(data, 0)

    def _total_at(self, buf: bytes | bytearray, start: int, packages: Iterable[bytes]) -> int:
        """The length of the package starting at ``start``, or 0 while its header is incomplete."""
        if len(buf) - start < self._header_size:
            return 0
        (value,) = self._unpack_length(buf, start + self._length_offset)
        if value < 0:
            raise _malformed(f"package length field is negative ({value})", packages)
        total = self._body_offset + value
        if total < self._header_size:
            # Swoole would cut a package that does not hold its own length field (or wait forever on 0).
            raise _malformed(f"package length {total} is shorter than its {self._header_size}-byte header", packages)
        if total > self._max_length:
            raise _too_large(total, self._max_length, packages)
        return int(total)


class FuncFramer(_SizedFramer):
    """open_length_check with package_length_func: the user's function gives each package's total length.

    The function is shown the first bytes of the package (up to LENGTH_FUNC_WINDOW of them) and returns its
    total length, 0 when it needs more bytes, or a negative number when they are malformed. It may be asked
    again with more bytes until it answers; once it has, it is not called again for that package.
    """

    __slots__ = ("_length_func", "_total")

    def __init__(self, package_length_func: Callable[[bytes], SupportsIndex], package_max_length: int) -> None:
        super().__init__(package_max_length)
        self._length_func = package_length_func
        self._total = 0  # length of the pending package, 0 while the function has not given it

    def feed(self, data: bytes) -> list[bytes]:
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < self._total:
                return []
            return self._split(pending, self._total)
        if not data:
            return []
        total = self._total_at(data, 0, ())
        if total == len(data):
            return [data]
        if not total:
            pending += data
            return []
        return self._split(data, total)

    def _total_at(self, buf: bytes | bytearray, start: int, packages: Iterable[bytes]) -> int:
        """The function's answer for the package starting at ``start``: its length, or 0 to wait for more."""
        shown = buf[start : start + LENGTH_FUNC_WINDOW]  # the whole of a bytes read is the read itself: no copy
        if type(shown) is not bytes:
            shown = bytes(shown)
        try:
            answer = self._length_func(shown)
        except Exception as error:
            failure = _malformed(f"package_length_func raised {type(error).__name__}: {error}", packages)
            failure.__cause__ = error  # said outright: mypyc's build drops the cause of "raise ... from"
            raise failure
        try:
            total = operator.index(answer)
        except TypeError:
            raise _malformed(f"package_length_func returned {answer!r}, not an int", packages) from None
        if total < 0:
            raise _malformed(f"package_length_func returned {total}: malformed package", packages)
        if total > self._max_length:
            raise _too_large(total, self._max_length, packages)
        if total == 0 and len(shown) == LENGTH_FUNC_WINDOW:
            raise FramingError(
                ErrorCode.PACKAGE_LENGTH_NOT_FOUND,
                f"package_length_func found no length in {LENGTH_FUNC_WINDOW} bytes",
                packages,
            )
        return total
