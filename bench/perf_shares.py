"""Inclusive and self shares of a process's CPU per function, from a DWARF call-graph profile.

Usage (the server under load meanwhile, e.g. wrk or echoload in another terminal):

    perf record --call-graph dwarf,32768 -F 1500 -p PID -o /tmp/perf.data -- sleep 5
    perf script -i /tmp/perf.data > /tmp/perf.txt
    python bench/perf_shares.py /tmp/perf.txt --match CPyDef_ --top 40

Each sample counts once for every distinct function on its stack (inclusive) and once for its innermost one
(self). ``--match`` keeps the rows whose name contains any of the given texts (mypyc's compiled functions are
``CPyDef_<module>___<function>``; CPython's exception paths show as ``_PyErr_SetObject``/``_PyErr_Clear``).
``--dso`` gives the split by shared object (user space of the interpreter, the extensions, the kernel) instead.
This is how NOTES.md's per-package profiles were made; py-spy cannot see inside compiled frames.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterator

# A frame line of `perf script`: "\t    7f3a1c2b3d4e CPyDef_x___y+0x1c (/path/to/lib.so)"
FRAME = re.compile(r"^\s+[0-9a-f]+\s+(?P<symbol>.+?)\s+\((?P<dso>[^)]*)\)\s*$")


def samples(lines: Iterator[str]) -> Iterator[list[tuple[str, str]]]:
    """The stacks of a `perf script` text, innermost frame first, as (function, shared object) pairs."""
    stack: list[tuple[str, str]] = []
    for line in lines:
        match = FRAME.match(line)
        if match:
            symbol = match["symbol"].split("+0x")[0]
            stack.append((symbol, match["dso"].rsplit("/", 1)[-1]))
        elif not line.strip():
            if stack:
                yield stack
            stack = []
    if stack:
        yield stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", help="the output of `perf script` on a --call-graph dwarf recording")
    parser.add_argument("--match", action="append", default=[], help="keep functions containing TEXT")
    parser.add_argument("--top", type=int, default=40, help="rows to print (default: 40)")
    parser.add_argument("--dso", action="store_true", help="split by shared object instead of by function")
    args = parser.parse_args(argv)

    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    with open(args.script, encoding="utf-8", errors="replace") as text:
        for stack in samples(text):
            total += 1
            if args.dso:
                own[stack[0][1]] += 1
                continue
            own[stack[0][0]] += 1
            inclusive.update({symbol for symbol, _ in stack})
    if not total:
        print("no samples: was the recording made with --call-graph dwarf?", file=sys.stderr)
        return 1
    print(f"{total} samples")
    if args.dso:
        for dso, count in own.most_common(args.top):
            print(f"{100 * count / total:6.1f}%  {dso}")
        return 0
    rows = [(name, n) for name, n in inclusive.most_common() if not args.match or any(m in name for m in args.match)]
    print(f"{'incl':>6}  {'self':>6}  function")
    for name, count in rows[: args.top]:
        print(f"{100 * count / total:5.1f}%  {100 * own[name] / total:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
