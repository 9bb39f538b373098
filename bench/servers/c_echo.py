"""Launcher of ``c_echo.c`` (the C floor of Swoole's BASE and PROCESS modes): builds it into build/bench/ when
missing or older than its source, then becomes it, so the harness's process group and CPU figures are the C
server's own. Arguments are passed on: ``--port N --mode base|process``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness  # bench/, beside this directory

if __name__ == "__main__":
    binary = harness.build_tool(Path(__file__).with_suffix(".c"), "c_echo")
    os.execv(binary, [str(binary), *sys.argv[1:]])
