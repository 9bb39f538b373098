"""Server calls from threads of a worker other than its loop's (a ``run_in_executor`` job, a thread pool): they
are handed to the loop's thread, so nothing is lost, reordered within a thread, or corrupted, in both modes.

The server runs asyncio's own loop in debug mode, which raises on any loop call made from a foreign thread (uvloop
would race silently): a server call that touched the loop from the caller's thread fails these tests."""

from __future__ import annotations

import pytest

THREADS, LINES = 8, 400


@pytest.mark.parametrize("mode", ["BASE", "PROCESS"])
def test_sends_from_many_threads_all_arrive_in_order_then_a_threaded_close(start_server, connect, mode):
    server = start_server(
        """
        import threading
        from concurrent.futures import ThreadPoolExecutor

        os.environ["PYTHONASYNCIODEBUG"] = "1"  # asyncio's loop then checks the thread of every call
        server = Server("127.0.0.1", 0, getattr(Mode, mode))
        report_port(server)
        server.set(worker_num=1, event_loop="asyncio")

        def hammer(fd, thread):
            ok = 0
            for line in range(lines):
                ok += server.send(fd, f"{thread}:{line}\\n")
            return ok, threading.get_ident() != main_thread

        @server.on("WorkerStart")
        def started(server, worker_id):
            global main_thread
            main_thread = threading.get_ident()

        @server.on("Receive")
        async def on_receive(server, fd, reactor_id, data):
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(threads) as pool:
                results = await asyncio.gather(*(loop.run_in_executor(pool, hammer, fd, t) for t in range(threads)))
                record("sent", ok=sum(ok for ok, _ in results), foreign=all(f for _, f in results))
                timer = await loop.run_in_executor(pool, server.after, 10, lambda: record("timer_fired"))
                record("timer", id=timer)
                closed = await loop.run_in_executor(pool, server.close, fd)
                record("closed", ok=closed)

        serve(server)
        """,
        mode=mode,
        threads=THREADS,
        lines=LINES,
    )
    client = connect(server)
    client.send(b"go")

    received = client.recv_eof().decode().splitlines()

    assert len(received) == THREADS * LINES
    by_thread: dict[str, list[int]] = {}
    for line in received:
        thread, _, number = line.partition(":")
        by_thread.setdefault(thread, []).append(int(number))
    assert by_thread == {str(t): list(range(LINES)) for t in range(THREADS)}
    assert server.wait_event("sent")["ok"] == THREADS * LINES
    assert server.events("sent")[0]["foreign"] is True
    assert server.wait_event("closed")["ok"] is True
    assert isinstance(server.events("timer")[0]["id"], int)
    server.wait_event("timer_fired")
