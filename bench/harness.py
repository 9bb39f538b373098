"""What ``echo_bench.py`` and ``task_bench.py`` share: process groups, the paired schedule, medians and the table.

Both benches run every row as a script in its own process group (``ProcessGroup``), next to the row it is
divided by, in an order that flips every repetition (``schedule``), and report the median of the
per-repetition ratios (``summarize``, ``markdown_table``, ``target_verdicts``). ``run_bench`` is the loop
around one bench's ``measure``: progress lines, Ctrl-C, the ``--json`` file, the table and the exit status.
``servers/taskload.py`` uses the /proc reading (``group_cpu_seconds``) from inside a run.

A bench supplies its rows (any frozen dataclass with ``name``, ``baseline`` and ``target``), its
``RunResult`` (a ``Run`` with ``errors``, ``p50_us``, ``p99_us`` and the two fields its ``Metric`` names),
and what is specific to its load.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVERS_DIR = REPO_ROOT / "bench" / "servers"
POLL_INTERVAL_S = 0.02
STOP_GRACE_S = 5.0  # SIGTERM to an empty process group, before SIGKILL
LOG_TAIL_CHARS = 2000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
BUILD_DIR = REPO_ROOT / "build" / "bench"
READY_TIMEOUT_S = 30.0  # from spawn to the first right answer to the readiness probe


# ---------------------------------------------------------------- process groups


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
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            members[int(entry.name)] = int(fields[11]) + int(fields[12])
    return members


def group_cpu_seconds(pgid: int) -> float | None:
    """CPU seconds used so far by the live processes of a process group (None without /proc)."""
    ticks = group_cpu_ticks(pgid)
    return None if ticks is None else sum(ticks.values()) / CLOCK_TICKS


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


class ProcessGroup:
    """A script running in its own process group (a new session), its output in a temporary file."""

    def __init__(self, command: list[str], log_prefix: str, env: dict[str, str] | None = None) -> None:
        self.log = tempfile.TemporaryFile(mode="w+", prefix=log_prefix)  # noqa: SIM115 (closed by stop())
        # A new session, so that one killpg reaches every worker, and a terminal's ^C reaches
        # only the harness, which then stops the runs in order.
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            env=env,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
        self.pgid = self.proc.pid

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-LOG_TAIL_CHARS:].strip()

    def cpu_seconds(self) -> float | None:
        return group_cpu_seconds(self.pgid)

    def gone(self) -> bool:
        """The script has exited and no process of its group is alive."""
        return self.proc.poll() is not None and not group_has_live_members(self.pgid)

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.gone():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL_S)
        return True

    def stop(self) -> bool:
        """SIGTERM the whole group, SIGKILL what is left after the grace period.

        Returns True when everything was gone within the grace period (or before). Waits until no
        process of the group is alive, so the next run never shares the CPU with it.
        """
        with signals_deferred():
            try:
                clean = self.gone() or self._signal_until_gone(signal.SIGTERM)
                if not clean:
                    self._signal_until_gone(signal.SIGKILL)
                return clean
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
                self.log.close()

    def _signal_until_gone(self, signum: signal.Signals) -> bool:
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass
        return self.wait_gone(STOP_GRACE_S)


# ---------------------------------------------------------------- servers on a port


class BenchFailure(Exception):
    """A run that produced no trustworthy figure (server or load generator failed)."""


class ServerStartFailure(BenchFailure):
    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail

    @property
    def address_in_use(self) -> bool:
        return "address already in use" in self.log_tail.lower()

    def describe(self) -> str:
        """The line a run's failure starts with ("server failed to start"), then the server's output."""
        text = f"server failed to start: {self}"
        return f"{text}\n--- server output ---\n{self.log_tail}" if self.log_tail else text


# A readiness probe: returns once the server on the port answers right, raises OSError while it does not
# answer yet (the probe is retried), ServerStartFailure when it answers wrong (the start fails at once).
Probe = Callable[[int], None]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess(ProcessGroup):
    """A server command running in its own process group, listening on ``port``."""

    def __init__(self, command: list[str], port: int, env: dict[str, str] | None = None) -> None:
        super().__init__(command, log_prefix="pyswoole-bench-", env=env)
        self.port = port

    def wait_ready(self, probe: Probe, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll ``probe`` until it passes; fail at once if the server exits or answers wrong."""
        deadline = time.monotonic() + timeout
        last_error: OSError | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartFailure(f"exited with status {self.proc.returncode} before answering", self.log_tail())
            try:
                probe(self.port)
                return
            except ServerStartFailure as failure:
                raise ServerStartFailure(str(failure), self.log_tail()) from None
            except OSError as exc:
                last_error = exc
            try:
                self.proc.wait(timeout=POLL_INTERVAL_S)
            except subprocess.TimeoutExpired:
                pass
        raise ServerStartFailure(f"not answering after {timeout:.0f} s (last error: {last_error})", self.log_tail())

    def check_alive(self) -> None:
        """Raise BenchFailure when the server's first process has exited (a run's figures are then void)."""
        if self.proc.poll() is not None:
            raise BenchFailure(
                f"server exited with status {self.proc.returncode} during the run\n"
                f"--- server output ---\n{self.log_tail()}"
            )


def start_server(
    command_for: Callable[[int], list[str]], probe: Probe, env: dict[str, str] | None = None, attempts: int = 3
) -> ServerProcess:
    """Start ``command_for(port)`` on a free port and wait until ``probe`` passes; a fresh port is tried
    when the chosen one was taken meanwhile. Whatever fails, no process of a failed start is left."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        server = ServerProcess(command_for(port), port, env)
        try:
            server.wait_ready(probe)
            return server
        except ServerStartFailure as failure:
            server.stop()
            if not failure.address_in_use or attempt == attempts:
                raise
        except BaseException:
            server.stop()
            raise
    raise AssertionError("unreachable")


def build_tool(source: Path, name: str) -> Path:
    """Compile a one-file C load generator into build/bench/NAME, only when missing or older than the source."""
    binary = BUILD_DIR / name
    if not source.is_file():
        raise FileNotFoundError(f"{name} source not found: {source}")
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a concurrent or interrupted build never leaves half a binary.
    partial = binary.with_name(f"{name}.{os.getpid()}.tmp")
    try:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(partial), str(source)], check=True)
        partial.replace(binary)
    finally:
        partial.unlink(missing_ok=True)
    return binary


def run_result_tool(
    command: list[str], duration: float, during: Callable[[], object] | None = None, grace: float = 30.0
) -> dict[str, float]:
    """Run a C load generator (echoload, wsload) for about ``duration`` seconds and return the figures of its
    last ``RESULT key=value ...`` line; ``during`` is called once mid-run. BenchFailure when it fails, prints
    no RESULT, or still runs ``grace`` seconds after its time."""
    name = Path(command[0]).name
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if during is not None:
            try:
                proc.wait(timeout=duration / 2)
            except subprocess.TimeoutExpired:
                during()
        out, err = proc.communicate(timeout=duration + grace)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"{name} still running {grace:.0f} s after its {duration:.0f} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = next((line for line in reversed(out.splitlines()) if line.startswith("RESULT ")), None)
    if proc.returncode != 0 or result is None:
        detail = (err.strip() or out.strip())[-LOG_TAIL_CHARS:]
        raise BenchFailure(f"{name} exited with {proc.returncode}: {detail}")
    return {key: float(value) for key, value in (item.split("=", 1) for item in result.split()[1:])}


def raise_open_files_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (for thousands of sockets); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def python_env(source: Path | None = None) -> dict[str, str]:
    """The environment for a server command: the repository on PYTHONPATH, so ``bench.servers.apps:...``
    imports in every server (uvicorn, granian, gunicorn, pyswoole) whatever its own app-dir rules; ``source``
    (an ``export_revision`` tree) first, to run that revision's pyswoole instead of the working tree's."""
    path = os.pathsep.join(filter(None, [str(source or ""), str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def export_revision(revision: str) -> Path:
    """``src/`` of a git revision, exported under build/bench/ (once per commit) with its extension modules built
    in place, as that revision's own ``setup.py`` builds them; the tree to put on PYTHONPATH."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tree = BUILD_DIR / f"rev-{commit[:12]}"
    if not (tree / "src" / "pyswoole").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        files = ["src", "setup.py", "pyproject.toml", "README.md"]
        archive = subprocess.run(["git", "archive", commit, *files], cwd=REPO_ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, check=True)
    return tree / "src"


# ---------------------------------------------------------------- rows and the schedule


class Row(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def baseline(self) -> str | None: ...
    @property
    def target(self) -> float | None: ...


R = TypeVar("R", bound=Row)


def check_configs(configs: Sequence[Row]) -> None:
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


def asked_for(name: str, only: list[str] | None) -> bool:
    """Whether --only names this row (no --only: every row)."""
    return not only or any(pattern.lower() in name.lower() for pattern in only)


def select_configs(configs: Sequence[R], only: list[str] | None, self_check: bool) -> list[R]:
    """The rows to run: those matching --only, plus the chain of baselines they are divided by."""
    by_name = {config.name: config for config in configs}
    wanted = {config.name for config in configs if asked_for(config.name, only)}
    for name in list(wanted):
        while (baseline := by_name[name].baseline) is not None:
            name = baseline
            wanted.add(name)
    selected = [config for config in configs if config.name in wanted]
    if self_check:
        # A/A check: each row that others are divided by, against itself, shows how much the machine alone
        # moves the ratio.
        divisors = {c.baseline for c in selected}
        for config in [c for c in selected if c.baseline is None or c.name in divisors]:
            twin = dataclasses.replace(
                config,
                name=f"{config.name} (A/A)",  # type: ignore[type-var]
                baseline=config.name,
                target=None,
            )
            selected.insert(selected.index(config) + 1, twin)
    return selected


def root_of(config: Row, by_name: dict[str, R]) -> str:
    while config.baseline is not None:
        config = by_name[config.baseline]
    return config.name


def schedule(configs: list[R], repeat: int) -> Iterator[tuple[int, R]]:
    """Each root baseline next to every row that depends on it, the order flipped every repetition and
    every group.

    A group is a root baseline followed by all the rows whose chain of baselines ends in it, in the order of
    ``configs``. Flipping cancels a steady drift (thermal, a neighbour's load) between the two halves of a pair.
    """
    by_name = {config.name: config for config in configs}
    groups = [
        [config for config in configs if root_of(config, by_name) == root.name]
        for root in configs
        if root.baseline is None
    ]
    for repetition in range(repeat):
        for index, group in enumerate(groups):
            yield from ((repetition, config) for config in (group if (repetition + index) % 2 == 0 else group[::-1]))


# ---------------------------------------------------------------- medians, ratios, the table


@dataclass
class Run:
    """What every bench's RunResult starts with; it adds ``errors``, ``p50_us``, ``p99_us`` and its Metric's fields."""

    repetition: int
    config: str
    ok: bool = False  # the run has figures (it may still have a failure, e.g. a process that outlived it)
    failure: str | None = None


@dataclass(frozen=True)
class Metric:
    """What a bench counts: ``rate`` and ``cpu`` name the RunResult fields (and the summary's JSON keys)."""

    rate: str  # e.g. "rps": what the ratio is taken of
    rate_label: str  # its column, e.g. "tasks/s"
    cpu: str  # e.g. "server_cpu": cores used during the measured run
    # Whether cores / rate is the server's CPU per unit (cpu_us_each): not when the rate is a latency or the cpu
    # figure is the clients'.
    per_unit: bool = True


@dataclass
class Summary:
    config: str
    baseline: str | None
    target: float | None
    runs: int
    rate: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    errors: int = 0
    cpu: float | None = None
    cpu_us_each: float | None = None  # server CPU per request/round trip/message, in microseconds
    ratio: float | None = None
    ratio_min: float | None = None
    ratio_max: float | None = None
    failures: list[str] = field(default_factory=list)

    def as_json(self, metric: Metric) -> dict[str, Any]:
        """The summary with the bench's own names for ``rate`` and ``cpu``, in field order."""
        names = {"rate": metric.rate, "cpu": metric.cpu}
        return {names.get(key, key): value for key, value in asdict(self).items()}


def median_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def paired_ratios(results: Sequence[Any], metric: Metric, row: str, versus: str) -> list[float]:
    """``row``'s rate over ``versus``'s, one ratio per repetition in which both have figures.

    Paired: a row is only ever divided by the other row's run of its own repetition.
    """
    ok = {(r.config, r.repetition): getattr(r, metric.rate) for r in results if r.ok}
    return [
        rate / ok[versus, repetition]
        for (name, repetition), rate in ok.items()
        if name == row and rate is not None and ok.get((versus, repetition))
    ]


def cpu_us_each(result: Any, metric: Metric) -> float | None:
    """The server's CPU per unit of the rate (a request, a round trip), in microseconds: cores / rate."""
    if not metric.per_unit:
        return None
    cpu, rate = getattr(result, metric.cpu), getattr(result, metric.rate)
    return cpu / rate * 1e6 if cpu is not None and rate else None


def summarize(configs: Sequence[Row], results: Sequence[Any], metric: Metric) -> list[Summary]:
    def rate(result: Any) -> float | None:
        value: float | None = getattr(result, metric.rate)
        return value

    summaries = []
    for config in configs:
        mine = [r for r in results if r.config == config.name]
        good = [r for r in mine if r.ok]
        summary = Summary(
            config.name,
            config.baseline,
            config.target,
            runs=len(good),
            rate=median_or_none([rate(r) for r in good]),
            p50_us=median_or_none([r.p50_us for r in good]),
            p99_us=median_or_none([r.p99_us for r in good]),
            errors=sum(r.errors or 0 for r in good),
            cpu=median_or_none([getattr(r, metric.cpu) for r in good]),
            cpu_us_each=median_or_none([cpu_us_each(r, metric) for r in good]),
            failures=[r.failure for r in mine if r.failure],
        )
        if config.baseline:
            ratios = paired_ratios(results, metric, config.name, config.baseline)
            if ratios:
                summary.ratio, summary.ratio_min, summary.ratio_max = (
                    statistics.median(ratios),
                    min(ratios),
                    max(ratios),
                )
        summaries.append(summary)
    return summaries


def markdown_table(summaries: list[Summary], metric: Metric) -> str:
    lines = [
        f"| config | {metric.rate_label} | p50_us | p99_us | errors | {metric.cpu} | cpu_us_each "
        f"| vs baseline {metric.rate_label} |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]

    def us(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    for s in summaries:
        if s.rate is None:
            lines.append(f"| {s.config} | failed | | | | | | |")
            continue
        if s.baseline is None:
            versus = "1.00x (baseline)"
        elif s.ratio is None:
            versus = f"n/a ({s.baseline} failed)"
        else:
            versus = f"**{s.ratio:.2f}x** ({s.ratio_min:.2f}-{s.ratio_max:.2f}) of {s.baseline}"
        cpu = "" if s.cpu is None else f"{s.cpu:.2f}"
        lines.append(
            f"| {s.config} | {s.rate:,.0f} | {us(s.p50_us)} | {us(s.p99_us)} | {s.errors} | {cpu} "
            f"| {us(s.cpu_us_each)} | {versus} |"
        )
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


@dataclass(frozen=True)
class Target:
    """A ratio ``row`` must reach against another row than its baseline, e.g. a peer it should beat.

    Both rows should share a root baseline, so that ``schedule`` runs them in the same group, a few runs apart.
    """

    row: str
    versus: str
    ratio: float


def check_targets(configs: Sequence[Row], targets: Sequence[Target]) -> None:
    names = {config.name for config in configs}
    for target in targets:
        if target.row not in names or target.versus not in names:
            raise ValueError(f"TARGETS: {target} names a row that is not in CONFIGS")


def cross_target_verdicts(targets: Sequence[Target], results: Sequence[Any], metric: Metric) -> list[str]:
    """A verdict line per Target, from the median of the paired ratios (with their smallest and largest)."""
    verdicts = []
    for target in targets:
        head = f"target {target.row} >= {target.ratio:.2f}x {target.versus}"
        ratios = paired_ratios(results, metric, target.row, target.versus)
        if not ratios:
            verdicts.append(f"{head}: not measured")
            continue
        ratio = statistics.median(ratios)
        verdict = "met" if ratio >= target.ratio else "MISSED"
        verdicts.append(f"{head}: {verdict} ({ratio:.3f}x, {min(ratios):.2f}-{max(ratios):.2f})")
    return verdicts


# ---------------------------------------------------------------- command line


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def argument_parser(doc: str, duration: int, duration_help: str, warmup_help: str) -> argparse.ArgumentParser:
    """A parser with --repeat, --duration and --warmup; the bench adds its own, then ``add_output_arguments``."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--repeat", type=positive_int, default=5, help="repetitions of every row")
    parser.add_argument("--duration", type=positive_int, default=duration, help=duration_help)
    parser.add_argument("--warmup", type=int, default=1, help=warmup_help)
    return parser


def add_output_arguments(parser: argparse.ArgumentParser, aa_help: str) -> None:
    parser.add_argument("--aa", action="store_true", help=aa_help)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every run's raw figures to PATH")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def metadata(
    args: argparse.Namespace, packages: Iterable[str], context: dict[str, object], load: dict[str, object]
) -> dict[str, object]:
    """The environment of a run for --json: versions of ``packages``, git HEAD, load average, then the settings."""

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    git = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_head": git.stdout.strip() if git.returncode == 0 else None,
        "python": platform.python_version(),
        **{package: version(package) for package in packages},
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        **context,
        "repeat": args.repeat,
        "duration": args.duration,
        "warmup": args.warmup,
        **load,
    }


def raise_system_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def unwind_on_termination() -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C does, through the finally blocks that stop the runs."""
    signal.signal(signal.SIGTERM, raise_system_exit)
    signal.signal(signal.SIGHUP, raise_system_exit)


# ---------------------------------------------------------------- the loop


Result = TypeVar("Result", bound=Run)


def run_bench(
    *,
    tool: str,
    plan: list[tuple[int, R]],
    configs: list[R],
    metric: Metric,
    measure: Callable[[R, int], Result],
    describe: Callable[[Result], str],
    meta: dict[str, object],
    json_path: Path | None,
    heading: str,
    stopped: str,
    warning: Callable[[Result], str | None] = lambda result: None,
    give_up: Callable[[Result], bool] = lambda result: False,
    more_problems: Callable[[list[Result]], list[str]] = lambda results: [],
    targets: Sequence[Target] = (),
    report: Callable[[list[Summary], list[Result]], list[str]] | None = None,
) -> int:
    """Run the plan, then print the table, the target verdicts and the problems; return the exit status.

    Every run prints a progress line to stderr: ``describe(result)`` when it has figures, FAILED when it
    failed (both can happen), then ``warning(result)`` if any. A row whose run made ``give_up`` true is not
    run again. ``more_problems`` adds to the failed runs and the runs with errors, each of which makes the
    exit status 1; Ctrl-C makes it 130 (the JSON file, marked incomplete, is written in every case).
    ``targets`` adds verdicts against other rows than the baseline. ``report`` replaces the table and the
    verdicts by its own lines, for a bench whose figures are not ratios (counts of failures, latencies).
    """
    results: list[Any] = []
    broken: set[str] = set()
    interrupted = False
    try:
        for number, (repetition, config) in enumerate(plan, 1):
            if config.name in broken:
                continue
            result: Any = measure(config, repetition)
            results.append(result)
            prefix = f"[{number:2}/{len(plan)}] rep {repetition + 1} {config.name:<30}"
            if result.ok:
                print(f"{prefix} {describe(result)}", file=sys.stderr)
            if result.failure:
                print(f"{prefix} FAILED: {result.failure}", file=sys.stderr)
            if (note := warning(result)) is not None:
                print(f"{prefix} {note}", file=sys.stderr)
            if give_up(result):
                broken.add(config.name)
    except KeyboardInterrupt:
        interrupted = True
        print(f"{tool}: interrupted; {stopped} stopped", file=sys.stderr)
    finally:
        summaries = summarize(configs, results, metric)
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(
                json.dumps(
                    {
                        "meta": meta,
                        "complete": len(results) == len(plan) and not interrupted,
                        "runs": [asdict(r) for r in results],
                        "summary": [s.as_json(metric) for s in summaries],
                    },
                    indent=2,
                )
                + "\n"
            )

    if interrupted:
        return 130
    print(heading)
    if report is not None:
        print("\n".join(report(summaries, results)))
    else:
        print(markdown_table(summaries, metric))
        verdicts = target_verdicts(summaries) + cross_target_verdicts(targets, results, metric)
        if verdicts:
            print()
            print("\n".join(verdicts))

    problems = [f"{r.config} (rep {r.repetition + 1}): {r.failure.splitlines()[0]}" for r in results if r.failure]
    problems += [f"{r.config} (rep {r.repetition + 1}): {r.errors} errors" for r in results if r.errors]
    problems += more_problems(results)
    if problems:
        print("\nFAILED:\n" + "\n".join(f"- {p}" for p in problems))
        return 1
    return 0
