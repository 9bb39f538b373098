"""Cluster benchmark: cross-node ``push`` and ``broadcast`` against a plain redis-py PUBLISH loop.

Starts its own redis-server (on a free port) and pyswoole nodes (BASE mode, one worker each), and receives the
messages itself on real WebSocket connections, parsing frames by hand so that the receiving side costs little.
Every message carries its send time, so latency is measured from the ``push`` call to the receipt of the frame.

Rows:

* ``PUBLISH loop (floor)``: a redis-py client publishes 64-byte messages one call at a time; a subscriber
  counts them. What one Python process gets out of Redis pub/sub without batching.
* ``push A->B, max``: node A's worker pushes 64-byte messages to 50 sessions of node B as fast as the outbox takes
  them (refused calls, CLUSTER_QUEUE_FULL, are counted, not retried); rate = messages received per second.
* ``push A->B, 25,000/s``: the same at a steady 25,000 messages a second (``--rate``; half the target
  rate) for two seconds: latency p50/p99.
* ``broadcast 3,000 sessions / 3 nodes``: node A broadcasts to a group of 3,000 sessions, 1,000 on each of three
  nodes, as fast as it can (``max``: rate = deliveries received per second) and ten times a second (``10/s``:
  latency per delivery).

Run: ``.venv/bin/python bench/cluster_bench.py [--duration 3] [--messages 200000]``. Needs /usr/bin/redis-server.
Targets (issue 17): cross-node delivery >= 50,000 messages/s, p99 < 5 ms at half that rate.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

STAMP = struct.Struct("!dQ")  # send time (time.time()), sequence number
SIZE = 64

NODE = textwrap.dedent(
    """
    import asyncio, json, struct, sys, time
    from pyswoole import Mode, WebSocketServer

    port, name, url, join = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    server = WebSocketServer("127.0.0.1", port, Mode.BASE)
    server.set(cluster=url, cluster_node=name, worker_num=1, log_level=4, max_connection=10000)
    STAMP = struct.Struct("!dQ")
    PAD = bytes(PAD_SIZE)

    @server.on("Open")
    def on_open(server, request):
        if join:
            server.cluster.join(request.fd, "g")
        server.push(request.fd, f"fd {request.fd}")

    async def load(server, fd, op, node, fds, count, rate):
        push, broadcast, now = server.cluster.push, server.cluster.broadcast, time.time
        sent = refused = 0
        start = time.perf_counter()
        while sent + refused < count:
            due = count - sent - refused
            if rate:
                due = min(due, int((time.perf_counter() - start) * rate) - sent - refused)
            for _ in range(min(due, 256)):
                data = STAMP.pack(now(), sent + refused) + PAD
                if op == "push":
                    ok = push(node, fds[(sent + refused) % len(fds)], data)
                else:
                    ok = broadcast("g", data)
                if ok:
                    sent += 1
                else:
                    refused += 1
            await asyncio.sleep(0 if not rate else 0.001)
        server.push(fd, json.dumps({"sent": sent, "refused": refused, "seconds": time.perf_counter() - start}))

    @server.on("Message")
    async def on_message(server, frame):
        command = json.loads(frame.data)
        await load(server, frame.fd, command["op"], command.get("node"), command.get("fds", [0]),
                   command["count"], command["rate"])

    server.start()
    """
).replace("PAD_SIZE", str(SIZE - STAMP.size))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}") from None
            time.sleep(0.05)


class Receiver(asyncio.Protocol):
    """One WebSocket client that records the latency of every binary message it receives."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffer = b""
        self.upgraded = False
        self.fd = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded:
            head, sep, buffer = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            self.upgraded = True
        now = time.time()
        pos, end = 0, len(buffer)
        sink = self.sink
        while end - pos >= 2:
            opcode, length = buffer[pos] & 0x0F, buffer[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                start = pos + 4
            if end - start < length:
                break
            if opcode == 2:
                sink.latencies.append(now - STAMP.unpack_from(buffer, start)[0])
            elif not self.fd.done():
                self.fd.set_result(int(buffer[start + 3 : start + length]))  # "fd N"
            else:
                sink.answers.put_nowait(json.loads(buffer[start : start + length]))
            pos = start + length
        self.buffer = buffer[pos:]

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        size = (
            bytes([0x80 | len(payload)])
            if len(payload) < 126
            else bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        )
        assert self.transport is not None
        self.transport.write(b"\x81" + size + mask + masked)


class Sink:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.answers: asyncio.Queue[Any] = asyncio.Queue()


async def open_clients(port: int, count: int, sink: Sink) -> list[Receiver]:
    loop = asyncio.get_running_loop()
    clients = []
    for start in range(0, count, 100):
        batch = [
            loop.create_connection(lambda: Receiver(sink), "127.0.0.1", port)
            for _ in range(start, min(count, start + 100))
        ]
        for _, protocol in await asyncio.gather(*batch):
            clients.append(protocol)
    await asyncio.gather(*(client.fd for client in clients))
    return clients


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


async def wait_for(sink: Sink, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(sink.latencies) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def run_push(ports: dict[str, int], count: int, rate: float, pids: dict[str, int]) -> dict[str, float]:
    sink = Sink()
    receivers = await open_clients(ports["b"], 50, sink)
    control = (await open_clients(ports["a"], 1, Sink()))[0]
    fds = [receiver.fd.result() for receiver in receivers]
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.perf_counter()
    control.send_text(json.dumps({"op": "push", "node": "b", "fds": fds, "count": count, "rate": rate}))
    answer = await asyncio.wait_for(control.sink.answers.get(), 120)
    await wait_for(sink, answer["sent"], 10)
    elapsed = max(time.perf_counter() - start, 1e-9)
    load = {name: (cpu_seconds(pid) - cpu[name]) / elapsed for name, pid in pids.items()}
    for client in (*receivers, control):
        assert client.transport is not None
        client.transport.close()
    return {
        "rate": len(sink.latencies) / elapsed,
        "p50_ms": percentile(sink.latencies, 0.5) * 1000,
        "p99_ms": percentile(sink.latencies, 0.99) * 1000,
        "received": len(sink.latencies),
        "sent": answer["sent"],
        "refused": answer["refused"],
        "cpu": " ".join(f"{name} {value:.2f}" for name, value in load.items()),
    }


async def run_broadcast(ports: dict[str, int], broadcasts: int, rate: float) -> dict[str, float]:
    sink = Sink()
    receivers = []
    for name in ("a", "b", "c"):
        receivers += await open_clients(ports[name], 1000, sink)
    control = (await open_clients(ports["a"], 1, Sink()))[0]
    await asyncio.sleep(0.5)  # the joins of the last sessions are in Redis
    start = time.perf_counter()
    control.send_text(json.dumps({"op": "broadcast", "count": broadcasts, "rate": rate}))
    answer = await asyncio.wait_for(control.sink.answers.get(), 120)
    await wait_for(sink, answer["sent"] * len(receivers), 20)
    elapsed = max(time.perf_counter() - start, 1e-9)
    for client in (*receivers, control):
        assert client.transport is not None
        client.transport.close()
    return {
        "rate": len(sink.latencies) / elapsed,
        "p50_ms": percentile(sink.latencies, 0.5) * 1000,
        "p99_ms": percentile(sink.latencies, 0.99) * 1000,
        "received": len(sink.latencies),
        "sent": answer["sent"],
        "refused": answer["refused"],
    }


async def run_floor(url: str, count: int) -> dict[str, float]:
    import redis.asyncio

    subscriber = redis.asyncio.Redis.from_url(url)
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("floor")
    publisher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import redis, struct, sys, time\n"
            f"r = redis.Redis.from_url({url!r})\n"
            f"pad = bytes({SIZE - STAMP.size})\n"
            f"for i in range({count}):\n"
            "    r.publish('floor', struct.pack('!dQ', time.time(), i) + pad)\n",
        ]
    )
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = time.monotonic() + 60
    while len(latencies) < count and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if message is not None:
            latencies.append(time.time() - STAMP.unpack_from(message["data"])[0])
    elapsed = time.perf_counter() - start
    publisher.wait()
    await pubsub.aclose()
    await subscriber.aclose()
    return {
        "rate": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "received": len(latencies),
        "sent": count,
        "refused": 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="pushes in the max-rate run")
    parser.add_argument("--broadcasts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=int, default=25_000, help="push rate of the latency row (messages/s)")
    parser.add_argument("--only", choices=["floor", "push", "broadcast"], help="run only these rows")
    args = parser.parse_args()
    program = shutil.which("redis-server") or "/usr/bin/redis-server"
    workdir = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    redis_port = free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    processes = [
        subprocess.Popen(
            [program, "--port", str(redis_port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
        )
    ]
    script = workdir / "node.py"
    script.write_text(NODE)
    ports = {name: free_port() for name in ("a", "b", "c")}
    try:
        wait_listening(redis_port)
        for name, port in ports.items():
            join = "1" if name in "abc" else "0"
            processes.append(subprocess.Popen([sys.executable, str(script), str(port), name, url, join]))
        for port in ports.values():
            wait_listening(port)
        pids = {"redis": processes[0].pid, "node a": processes[1].pid, "node b": processes[2].pid, "bench": os.getpid()}
        time.sleep(1.0)  # postmen subscribed
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        rows: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.repeat):
            if args.only in (None, "floor"):
                rows.setdefault("PUBLISH loop (floor)", []).append(runner(run_floor(url, args.messages // 4)))
            if args.only in (None, "push"):
                top = runner(run_push(ports, args.messages, 0, pids))
                rows.setdefault("push A->B, max", []).append(top)
                rows.setdefault(f"push A->B, {args.rate:,}/s", []).append(
                    runner(run_push(ports, args.rate * 2, args.rate, pids))
                )
            if args.only in (None, "broadcast"):
                rows.setdefault("broadcast 3,000 sessions / 3 nodes, max", []).append(
                    runner(run_broadcast(ports, args.broadcasts, 0))
                )
                rows.setdefault("broadcast 3,000 sessions / 3 nodes, 10/s", []).append(
                    runner(run_broadcast(ports, 20, 10))
                )
        print("| row | msgs/s | p50 ms | p99 ms | received / sent (refused) |")
        print("|---|---:|---:|---:|---|")
        for name, runs in rows.items():
            best = max(runs, key=lambda run: run["rate"])
            rate = statistics.median(run["rate"] for run in runs)
            if "cpu" in best:
                print(f"  {name}: CPU (cores) {best['cpu']}", file=sys.stderr)
            p50 = statistics.median(run["p50_ms"] for run in runs)
            p99 = statistics.median(run["p99_ms"] for run in runs)
            print(
                f"| {name} | {rate:,.0f} (best {best['rate']:,.0f}) | {p50:.2f} | {p99:.2f} "
                f"| {best['received']:,} / {best['sent']:,} ({best['refused']:,}) |"
            )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
