"""Echo benchmark: pyswoole against a bare-uvloop baseline, measured in the same run.

The machine that runs this is small and noisy, so no absolute figure means much on its
own. Every candidate row is therefore paired with a baseline row (a plain uvloop echo
with the same number of serving processes), the two are run back to back in alternating
order, and the figure that matters is the candidate's rps divided by the baseline's rps
of the same repetition (the median of those ratios is reported).

For each run the harness starts the server script on a free port in its own process
group, waits until it echoes a probe, warms it up, drives it with ``echoload`` (the C
load generator in ../shared/bench), and stops the whole process group. Whatever happens
(an exception, Ctrl-C, SIGTERM), no server process outlives the run it belongs to.

Exit status: 0 when every run completed with zero errors; 1 when a server failed to
start or died, the load generator failed, or any run reported errors; 2 when the load
generator cannot be built; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVERS_DIR = REPO_ROOT / "bench" / "servers"
BUILD_DIR = REPO_ROOT / "build" / "bench"
ECHOLOAD_SRC_ENV = "PYSWOOLE_ECHOLOAD_SRC"
DEFAULT_ECHOLOAD_SRC = REPO_ROOT.parent / "shared" / "bench" / "echoload.c"

HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0  # from spawn to the first echoed probe
POLL_INTERVAL_S = 0.02
STOP_GRACE_S = 5.0  # SIGTERM to an empty process group, before SIGKILL
LOAD_GRACE_S = 30.0  # beyond --duration, before the load generator is presumed hung
LOG_TAIL_CHARS = 2000


@dataclass(frozen=True)
class ServerConfig:
    """One row of the table: a server script, its arguments, and what it is compared to.

    ``baseline`` names the row this one is divided by (None: this row is a baseline).
    ``target`` is the ratio to the baseline this row is expected to reach, if any.
    """

    name: str
    script: str
    args: tuple[str, ...]
    baseline: str | None = None
    target: float | None = None


# Rows in display order. A candidate may be added by one line; its baseline must be listed.
# A baseline may itself be a candidate (PROCESS rows -> BASE 1 worker -> uvloop 1 proc): every row whose
# chain ends in the same root baseline is run in that root's group, so each pair is measured in the same
# repetition, a few runs apart at most.
CONFIGS: tuple[ServerConfig, ...] = (
    ServerConfig("uvloop 1 proc", "uvloop_echo.py", ("--workers", "1")),
    ServerConfig("BASE 1 worker", "pyswoole_echo.py", ("--mode", "base", "--workers", "1"),
                 baseline="uvloop 1 proc", target=0.85),
    ServerConfig("PROCESS 1 worker / 1 reactor", "pyswoole_echo.py",
                 ("--mode", "process", "--workers", "1", "--reactors", "1"),
                 baseline="BASE 1 worker", target=0.5),
    ServerConfig("PROCESS 2 workers / 1 reactor", "pyswoole_echo.py",
                 ("--mode", "process", "--workers", "2", "--reactors", "1"),
                 baseline="BASE 1 worker"),
    ServerConfig("PROCESS 2 workers / 2 reactors", "pyswoole_echo.py",
                 ("--mode", "process", "--workers", "2", "--reactors", "2"),
                 baseline="BASE 1 worker"),
    ServerConfig("uvloop 2 procs", "uvloop_echo.py", ("--workers", "2")),
    ServerConfig("BASE 2 workers", "pyswoole_echo.py", ("--mode", "base", "--workers", "2"),
                 baseline="uvloop 2 procs"),
)


def check_configs(configs: tuple[ServerConfig, ...]) -> None:
    """Names unique, every baseline a listed row, no baseline chain that loops."""
    by_name = {config.name: config for config in configs}
    if len(by_name) != len(configs):
        raise ValueError("CONFIGS: duplicate row names")
    for config in configs:
        seen = {config.name}
        row = config
        while row.baseline is not None:
            if row.baseline not in by_name:
                raise ValueError(f"CONFIGS: {row.name!r} has an unknown baseline {row.baseline!r}")
            if row.baseline in seen:
                raise ValueError(f"CONFIGS: the baselines of {config.name!r} loop")
            seen.add(row.baseline)
            row = by_name[row.baseline]


check_configs(CONFIGS)


@dataclass(frozen=True)
class LoadSettings:
    conns: int
    size: int
    duration: int
    warmup: int


@dataclass
class RunResult:
    repetition: int
    config: str
    port: int | None = None
    ok: bool = False
    failure: str | None = None
    rps: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None
    errors: int | None = None
    loadgen_cpu: float | None = None
    server_cpu: float | None = None  # cores used by the server's processes during the measured run
    warmup_errors: int | None = None
    stopped_cleanly: bool | None = None
    # Established connections held by each server process mid-run, largest first: with a shared
    # listening socket the kernel decides the split, and an uneven one moves rps and p99 a lot.
    connection_split: list[int] | None = None


class BenchFailure(Exception):
    """A run that produced no trustworthy figure (server or load generator failed)."""


class ServerStartFailure(BenchFailure):
    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail

    @property
    def address_in_use(self) -> bool:
        return "address already in use" in self.log_tail.lower()


# ---------------------------------------------------------------- load generator


def echoload_source() -> Path:
    return Path(os.environ.get(ECHOLOAD_SRC_ENV) or DEFAULT_ECHOLOAD_SRC).resolve()


def build_echoload(source: Path) -> Path:
    """Compile echoload into build/bench/, only when the binary is missing or older than the source."""
    binary = BUILD_DIR / "echoload"
    if not source.is_file():
        raise FileNotFoundError(f"echoload source not found: {source} (set {ECHOLOAD_SRC_ENV})")
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a concurrent or interrupted build never leaves half a binary.
    partial = binary.with_name(f"echoload.{os.getpid()}.tmp")
    try:
        subprocess.run(["gcc", "-O2", "-o", str(partial), str(source)], check=True)
        partial.replace(binary)
    finally:
        partial.unlink(missing_ok=True)
    return binary


def run_echoload(binary: Path, port: int, load: LoadSettings, duration: int,
                 during: Callable[[], object] | None = None) -> dict[str, float]:
    """Run one load and return its RESULT figures; ``during`` is called once mid-run."""
    command = [str(binary), "-h", HOST, "-p", str(port), "-c", str(load.conns),
               "-s", str(load.size), "-d", str(duration)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if during is not None:
            try:
                proc.wait(timeout=duration / 2)
            except subprocess.TimeoutExpired:
                during()
        out, err = proc.communicate(timeout=duration + LOAD_GRACE_S)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"echoload still running {LOAD_GRACE_S:.0f} s after its {duration} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = next((line for line in reversed(out.splitlines()) if line.startswith("RESULT ")), None)
    if proc.returncode != 0 or result is None:
        detail = (err.strip() or out.strip())[-LOG_TAIL_CHARS:]
        raise BenchFailure(f"echoload exited with {proc.returncode}: {detail}")
    return {key: float(value) for key, value in (item.split("=", 1) for item in result.split()[1:])}


# ---------------------------------------------------------------- server processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_ticks(pgid: int) -> dict[int, int] | None:
    """utime+stime of every live (non-zombie) process in a process group, by pid.

    Read from /proc because the workers are grandchildren: they are neither ours to
    wait() for nor, once orphaned, reaped by anyone we can count on in a container.
    Returns None where /proc is unavailable.
    """
    if not os.path.isdir("/proc/self"):
        return None
    members: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ... utime(12th) stime(13th).
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            members[int(entry.name)] = int(fields[11]) + int(fields[12])
    return members


def established_socket_inodes(port: int) -> set[int]:
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)  # header
                for row in rows:
                    # sl local_address rem_address st ... inode(10th)
                    columns = row.split()
                    if columns[3] == "01" and int(columns[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(int(columns[9]))
        except OSError:
            continue
    return inodes


def connection_split(pgid: int, port: int) -> list[int] | None:
    """How many of the port's established connections each process of the group holds."""
    members = group_cpu_ticks(pgid)
    if members is None:
        return None
    inodes = established_socket_inodes(port)
    split = []
    for pid in members:
        held = 0
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                held += 1
        if held:
            split.append(held)
    return sorted(split, reverse=True)


def group_has_live_members(pgid: int) -> bool:
    members = group_cpu_ticks(pgid)
    if members is not None:
        return bool(members)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold off Ctrl-C and SIGTERM while a cleanup runs, so a second ^C cannot strand a server."""
    deferred = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, deferred)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class ServerProcess:
    """A server script running in its own process group, on its own port."""

    def __init__(self, config: ServerConfig, port: int) -> None:
        self.config = config
        self.port = port
        self.log = tempfile.TemporaryFile(mode="w+", prefix="pyswoole-bench-")
        command = [sys.executable, str(SERVERS_DIR / config.script), "--port", str(port), *config.args]
        # A new session, so that one killpg reaches every worker, and a terminal's ^C reaches
        # only the harness, which then stops the servers in order.
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT)
        self.pgid = self.proc.pid

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-LOG_TAIL_CHARS:].strip()

    def wait_until_echoing(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll until a probe comes back over TCP; fail at once if the server exits."""
        probe = b"pyswoole-bench-probe"
        deadline = time.monotonic() + timeout
        last_error: OSError | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartFailure(f"exited with status {self.proc.returncode} before echoing",
                                         self.log_tail())
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0) as conn:
                    conn.sendall(probe)
                    echoed = b""
                    while len(echoed) < len(probe):
                        chunk = conn.recv(len(probe) - len(echoed))
                        echoed += chunk
                        if not probe.startswith(echoed):
                            raise ServerStartFailure(f"probe came back as {echoed!r}", self.log_tail())
                        if not chunk:
                            raise ConnectionResetError("closed before echoing the probe")
                return
            except OSError as exc:
                last_error = exc
            try:
                self.proc.wait(timeout=POLL_INTERVAL_S)
            except subprocess.TimeoutExpired:
                pass
        raise ServerStartFailure(f"not echoing after {timeout:.0f} s (last error: {last_error})",
                                 self.log_tail())

    def cpu_seconds(self) -> float | None:
        ticks = group_cpu_ticks(self.pgid)
        return None if ticks is None else sum(ticks.values()) / CLOCK_TICKS

    def stop(self) -> bool:
        """SIGTERM the whole group, SIGKILL what is left after the grace period.

        Returns True when everything was gone within the grace period. Waits until no
        process of the group is alive, so the next run never shares the CPU with it.
        """
        with signals_deferred():
            try:
                clean = self._signal_group_until_empty(signal.SIGTERM, STOP_GRACE_S)
                if not clean:
                    self._signal_group_until_empty(signal.SIGKILL, STOP_GRACE_S)
                return clean
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
                self.log.close()

    def _signal_group_until_empty(self, signum: signal.Signals, grace: float) -> bool:
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not group_has_live_members(self.pgid):
                return True
            time.sleep(POLL_INTERVAL_S)
        return False


def start_server(config: ServerConfig, attempts: int = 3) -> ServerProcess:
    """Start and wait for a server; a fresh port is tried when the chosen one was taken meanwhile."""
    for attempt in range(1, attempts + 1):
        server = ServerProcess(config, free_port())
        try:
            server.wait_until_echoing()
            return server
        except ServerStartFailure as failure:
            server.stop()
            if not failure.address_in_use or attempt == attempts:
                raise
        except BaseException:
            server.stop()
            raise
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- one run, the schedule, the table


def measure(config: ServerConfig, repetition: int, echoload: Path, load: LoadSettings) -> RunResult:
    result = RunResult(repetition=repetition, config=config.name)
    try:
        server = start_server(config)
    except ServerStartFailure as failure:
        result.failure = f"server failed to start: {failure}"
        if failure.log_tail:
            result.failure += f"\n--- server output ---\n{failure.log_tail}"
        return result
    result.port = server.port
    try:
        if load.warmup:
            result.warmup_errors = int(run_echoload(echoload, server.port, load, load.warmup)["errors"])
        cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
        def sample_split() -> None:
            result.connection_split = connection_split(server.pgid, server.port)

        figures = run_echoload(echoload, server.port, load, load.duration, during=sample_split)
        cpu_after, wall = server.cpu_seconds(), time.monotonic() - wall_before
        if server.proc.poll() is not None:
            raise BenchFailure(f"server exited with status {server.proc.returncode} during the run\n"
                               f"--- server output ---\n{server.log_tail()}")
        result.rps, result.p50_us, result.p99_us = figures["rps"], figures["p50_us"], figures["p99_us"]
        result.max_us, result.errors, result.loadgen_cpu = figures["max_us"], int(figures["errors"]), figures["cpu"]
        if cpu_before is not None and cpu_after is not None:
            result.server_cpu = round((cpu_after - cpu_before) / wall, 3)
        result.ok = True
    except BenchFailure as failure:
        result.failure = str(failure)
    finally:
        result.stopped_cleanly = server.stop()
    return result


def select_configs(only: list[str] | None, self_check: bool) -> list[ServerConfig]:
    """The rows to run: those matching --only, plus the chain of baselines they are divided by."""
    by_name = {config.name: config for config in CONFIGS}
    wanted = {config.name for config in CONFIGS
              if not only or any(pattern.lower() in config.name.lower() for pattern in only)}
    for name in list(wanted):
        while by_name[name].baseline is not None:
            name = by_name[name].baseline
            wanted.add(name)
    selected = [config for config in CONFIGS if config.name in wanted]
    if self_check:
        # A/A check: each row that others are divided by, against itself, shows how much the machine alone
        # moves the ratio.
        divisors = {c.baseline for c in selected}
        for config in [c for c in selected if c.baseline is None or c.name in divisors]:
            twin = ServerConfig(f"{config.name} (A/A)", config.script, config.args, baseline=config.name)
            selected.insert(selected.index(config) + 1, twin)
    return selected


def root_of(config: ServerConfig, by_name: dict[str, ServerConfig]) -> str:
    while config.baseline is not None:
        config = by_name[config.baseline]
    return config.name


def schedule(configs: list[ServerConfig], repeat: int) -> Iterator[tuple[int, ServerConfig]]:
    """Each root baseline next to every row that depends on it, the order flipped every repetition and
    every group.

    A group is a root baseline followed by all the rows whose chain of baselines ends in it, in the order of
    ``configs``. Flipping cancels a steady drift (thermal, a neighbour's load) between the two halves of a pair.
    """
    by_name = {config.name: config for config in configs}
    groups = [[config for config in configs if root_of(config, by_name) == root.name]
              for root in configs if root.baseline is None]
    for repetition in range(repeat):
        for index, group in enumerate(groups):
            yield from ((repetition, config) for config in (group if (repetition + index) % 2 == 0 else group[::-1]))


@dataclass
class Summary:
    config: str
    baseline: str | None
    target: float | None
    runs: int
    rps: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    errors: int = 0
    server_cpu: float | None = None
    ratio: float | None = None
    ratio_min: float | None = None
    ratio_max: float | None = None
    failures: list[str] = field(default_factory=list)


def median_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(configs: list[ServerConfig], results: list[RunResult]) -> list[Summary]:
    ok = {(r.config, r.repetition): r for r in results if r.ok}
    summaries = []
    for config in configs:
        mine = [r for r in results if r.config == config.name]
        good = [r for r in mine if r.ok]
        summary = Summary(config.name, config.baseline, config.target, runs=len(good),
                          rps=median_or_none([r.rps for r in good]),
                          p50_us=median_or_none([r.p50_us for r in good]),
                          p99_us=median_or_none([r.p99_us for r in good]),
                          errors=sum(r.errors or 0 for r in good),
                          server_cpu=median_or_none([r.server_cpu for r in good]),
                          failures=[r.failure for r in mine if r.failure])
        if config.baseline:
            # Paired ratios: a candidate is only ever divided by the baseline of its own repetition.
            ratios = [r.rps / ok[config.baseline, r.repetition].rps for r in good
                      if (config.baseline, r.repetition) in ok and ok[config.baseline, r.repetition].rps]
            if ratios:
                summary.ratio, summary.ratio_min, summary.ratio_max = (
                    statistics.median(ratios), min(ratios), max(ratios))
        summaries.append(summary)
    return summaries


def markdown_table(summaries: list[Summary]) -> str:
    lines = ["| config | rps | p50_us | p99_us | errors | server_cpu | vs baseline rps |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        if s.rps is None:
            lines.append(f"| {s.config} | failed | | | | | |")
            continue
        if s.baseline is None:
            versus = "1.00x (baseline)"
        elif s.ratio is None:
            versus = f"n/a ({s.baseline} failed)"
        else:
            versus = f"**{s.ratio:.2f}x** ({s.ratio_min:.2f}-{s.ratio_max:.2f}) of {s.baseline}"
        cpu = "" if s.server_cpu is None else f"{s.server_cpu:.2f}"
        lines.append(f"| {s.config} | {s.rps:,.0f} | {s.p50_us:.1f} | {s.p99_us:.1f} | {s.errors} | {cpu} | {versus} |")
    return "\n".join(lines)


def target_verdicts(summaries: list[Summary]) -> list[str]:
    verdicts = []
    for s in summaries:
        if s.target is None:
            continue
        if s.ratio is None:
            verdicts.append(f"target {s.config} >= {s.target:.2f}x {s.baseline}: not measured")
        else:
            verdict = "met" if s.ratio >= s.target else "MISSED"
            # Three decimals: 0.849 must not print as a missed "0.85x".
            verdicts.append(f"target {s.config} >= {s.target:.2f}x {s.baseline}: {verdict} ({s.ratio:.3f}x)")
    return verdicts


# ---------------------------------------------------------------- command line


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeat", type=positive_int, default=5, help="repetitions of every row")
    parser.add_argument("--duration", type=positive_int, default=5, help="seconds of load per run (whole seconds)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before each run (0: none)")
    parser.add_argument("--conns", type=positive_int, default=50, help="concurrent connections")
    parser.add_argument("--size", type=positive_int, default=64, help="message size in bytes")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="run only rows whose name contains TEXT (repeatable), plus their baselines")
    parser.add_argument("--aa", action="store_true",
                        help="also run each baseline against itself (A/A), to see the noise floor of the ratio")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every run's raw figures to PATH")
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.size > 65507:
        parser.error("--size must be <= 65507")
    return args


def metadata(args: argparse.Namespace, echoload: Path) -> dict[str, object]:
    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    git = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_head": git.stdout.strip() if git.returncode == 0 else None,
        "python": platform.python_version(),
        "uvloop": version("uvloop"),
        "pyswoole": version("pyswoole"),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "echoload": str(echoload),
        "repeat": args.repeat, "duration": args.duration, "warmup": args.warmup,
        "conns": args.conns, "size": args.size,
    }


def raise_system_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM/SIGHUP unwind like Ctrl-C does, through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, raise_system_exit)
    signal.signal(signal.SIGHUP, raise_system_exit)
    try:
        echoload = build_echoload(echoload_source())
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"echo_bench: cannot build echoload: {exc}", file=sys.stderr)
        return 2

    configs = select_configs(args.only, args.aa)
    if not configs:
        print(f"echo_bench: no row matches --only {args.only}", file=sys.stderr)
        return 2
    load = LoadSettings(args.conns, args.size, args.duration, args.warmup)
    plan = list(schedule(configs, args.repeat))
    print(f"echo_bench: {len(plan)} runs of {load.warmup} s warmup + {load.duration} s, "
          f"{load.conns} conns x {load.size} B (about {len(plan) * (load.duration + load.warmup + 1) / 60:.1f} min)",
          file=sys.stderr)

    meta = metadata(args, echoload)
    results: list[RunResult] = []
    broken: set[str] = set()  # a server that failed to start once is not retried every repetition
    interrupted = False
    try:
        for number, (repetition, config) in enumerate(plan, 1):
            if config.name in broken:
                continue
            result = measure(config, repetition, echoload, load)
            results.append(result)
            prefix = f"[{number:2}/{len(plan)}] rep {repetition + 1} {config.name:<30}"
            if result.ok:
                print(f"{prefix} rps {result.rps:>9,.0f}  p50 {result.p50_us:8.1f} us  p99 {result.p99_us:8.1f} us  "
                      f"errors {result.errors}  server_cpu {result.server_cpu}  "
                      f"connections {'/'.join(map(str, result.connection_split or [])) or '?'}", file=sys.stderr)
            else:
                print(f"{prefix} FAILED: {result.failure}", file=sys.stderr)
                if result.failure and result.failure.startswith("server failed to start"):
                    broken.add(config.name)
            if result.stopped_cleanly is False:
                print(f"{prefix} warning: not stopped by SIGTERM within {STOP_GRACE_S:.0f} s; killed",
                      file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        print("echo_bench: interrupted; servers stopped", file=sys.stderr)
    finally:
        summaries = summarize(configs, results)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "meta": meta, "complete": len(results) == len(plan) and not interrupted,
                "runs": [asdict(r) for r in results],
                "summary": [asdict(s) for s in summaries],
            }, indent=2) + "\n")

    if interrupted:
        return 130
    print(f"\nEcho, {load.conns} connections x {load.size} B ping-pong, {load.duration} s per run, "
          f"median of {args.repeat} repetitions; ratio = median of per-repetition rps ratios (min-max)\n")
    print(markdown_table(summaries))
    verdicts = target_verdicts(summaries)
    if verdicts:
        print()
        print("\n".join(verdicts))

    problems = [f"{r.config} (rep {r.repetition + 1}): {r.failure.splitlines()[0]}" for r in results if r.failure]
    problems += [f"{r.config} (rep {r.repetition + 1}): {r.errors} errors" for r in results if r.errors]
    problems += [f"{r.config} (rep {r.repetition + 1}): {r.warmup_errors} errors during warmup"
                 for r in results if r.warmup_errors]
    if problems:
        print("\nFAILED:\n" + "\n".join(f"- {p}" for p in problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
