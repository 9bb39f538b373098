"""PROCESS mode keeps WebSocket connections in the master: 200 clients stay connected through a reload and through
a SIGKILL of every worker, and what they send once the new workers run is answered. None of them sees a close."""

from __future__ import annotations

import asyncio
import os
import signal

from websockets.asyncio.client import connect

from wskit import start_ws_server, ws_url

CLIENTS = 200


def test_200_clients_stay_connected_through_reload_and_sigkill_of_every_worker(start_server):
    server = start_ws_server(start_server, "PROCESS", worker_num=2, max_connection=1024)
    first = {event["pid"] for event in server.events("worker_start")}

    async def scenario() -> tuple[int, int]:
        clients = [await connect(ws_url(server), open_timeout=20) for _ in range(CLIENTS)]

        async def round_trip(label: str) -> None:
            for index, client in enumerate(clients):
                await client.send(f"{label} {index}")
            answers = [await asyncio.wait_for(client.recv(), 20) for client in clients]
            assert answers == [f"{label} {index}" for index in range(CLIENTS)]

        await round_trip("before")
        os.kill(server.pid, signal.SIGUSR1)  # the master hands it to the manager: a graceful reload
        reloaded = await asyncio.to_thread(server.wait_events, "worker_start", 4, 30)
        second = {event["pid"] for event in reloaded} - first
        assert len(second) == 2
        await round_trip("after the reload")
        for pid in second:
            os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(server.wait_events, "worker_start", 6, 30)
        await round_trip("after the kill")
        kept = sum(1 for client in clients if client.close_code is None)
        for client in clients:
            await client.close()
        return kept, len(clients)

    kept, total = asyncio.run(scenario())
    assert (kept, total) == (CLIENTS, CLIENTS)
    assert server.events("close", reactor_id=-1) == []  # the server closed none of them
