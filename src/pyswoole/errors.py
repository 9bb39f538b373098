"""The one exception type of the public API that is not a built-in."""

from __future__ import annotations


class ServerError(Exception):
    """A start-time or bind failure. ``code`` is the errno or Swoole's error number (0 when neither applies)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code
