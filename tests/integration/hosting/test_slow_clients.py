"""Slow clients never hold a worker: a WSGI application with 2 workers in PROCESS mode, 20 clients that send their
request one byte every 50 ms and read the answer 4 KiB every 50 ms, and beside them normal clients whose latency
must stay low. Were a worker held by a slow client, the normal clients would wait seconds (two slow clients are
enough to hold both workers). ``bench/slow_clients_bench.py`` runs the full load (100 slow clients) against
gunicorn and granian."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time

import pytest

pytestmark = pytest.mark.timeout(90)

SLOW_CLIENTS = 20
NORMAL_CLIENTS = 5
STEP_S = 0.05
SLOW_BODY = 256 * 1024
NORMAL_RUN_S = 2.0
P99_LIMIT_MS = 250.0  # the bench's target is 50 ms; this machine is shared, and a held worker costs seconds


async def read_answer(reader: asyncio.StreamReader, step: float = 0.0) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    body = b""
    while len(body) < length:
        if step:
            await asyncio.sleep(step)
        chunk = await reader.read(min(4096, length - len(body)))
        if not chunk:
            raise EOFError("closed inside the answer")
        body += chunk
    return status, body


async def slow_client(port: int) -> int:
    """One request sent a byte at a time, its answer read 4 KiB at a time; the body's size."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    try:
        request = f"GET /size?n={SLOW_BODY} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        for index in range(len(request)):
            writer.write(request[index : index + 1])
            await writer.drain()
            await asyncio.sleep(STEP_S)
        status, body = await read_answer(reader, STEP_S)
        return len(body) if status == 200 else -status
    finally:
        writer.close()


async def normal_client(port: int, until: float) -> list[float]:
    latencies = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            start = time.perf_counter()
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            status, body = await asyncio.wait_for(read_answer(reader), 10)
            latencies.append((time.perf_counter() - start) * 1000)
            assert (status, body) == (200, b"probe")
            await asyncio.sleep(0.01)
    finally:
        writer.close()
    return latencies


async def load(port: int) -> tuple[list[float], list[int]]:
    slow = []
    for _ in range(SLOW_CLIENTS):
        slow.append(asyncio.create_task(slow_client(port)))
        await asyncio.sleep(0.5 / SLOW_CLIENTS)
    await asyncio.sleep(0.5)  # every slow client is sending its request now
    until = time.monotonic() + NORMAL_RUN_S
    normal = await asyncio.gather(*(normal_client(port, until) for _ in range(NORMAL_CLIENTS)))
    sizes = await asyncio.wait_for(asyncio.gather(*slow), 30)
    return [latency for latencies in normal for latency in latencies], sizes


def test_slow_clients_do_not_hold_the_workers_of_a_wsgi_application_in_process_mode(serve):
    served = serve("wsgi_probe:app", "--mode", "process", "--workers", "2", "--no-access-log")

    latencies, sizes = asyncio.run(load(served.port))

    p99 = statistics.quantiles(latencies, n=100)[98]
    print(f"normal clients: {len(latencies)} requests, p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms")
    assert p99 < P99_LIMIT_MS, f"normal clients' p99 {p99:.1f} ms beside {SLOW_CLIENTS} slow clients"
    assert len(latencies) > NORMAL_CLIENTS * 20
    assert sizes == [SLOW_BODY] * SLOW_CLIENTS
