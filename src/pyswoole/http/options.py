"""The HTTP settings that requests and responses read, built once per server from its settings.

Field names are the settings' own, so ``HttpOptions.from_settings(server.setting)`` is the whole mapping.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class HttpOptions:
    http_parse_post: bool = True
    http_parse_cookie: bool = True
    http_parse_files: bool = True
    upload_tmp_dir: str = dataclasses.field(default_factory=tempfile.gettempdir)
    http_compression: bool = True
    http_compression_level: int = 1
    compression_min_length: int = 20

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> HttpOptions:
        """The options named in ``settings`` (other keys ignored), the defaults for the rest."""
        names = [field.name for field in dataclasses.fields(cls)]
        return cls(**{name: settings[name] for name in names if name in settings})
