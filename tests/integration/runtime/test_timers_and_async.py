"""Timers on the server object, coroutine callbacks, and the choice of event loop.

A timer that must *not* fire is checked against a later marker timer ("quiet_period_over"):
by the time the marker fires, the unwanted timer would have fired several times.
"""

from __future__ import annotations

import pytest

from serverkit import wait_until


def test_tick_repeats_with_its_timer_id_and_args_until_cleared(start_server):
    server = start_server("""
        server = recording_server(worker_num=1)

        @server.on("WorkerStart")
        def on_worker_start(server, worker_id):
            ticks = []

            def on_tick(timer_id, label):
                ticks.append(timer_id)
                record("tick", timer_id=timer_id, label=label)
                if len(ticks) == 3:
                    record("cleared", ok=server.clear_timer(timer_id))
                    server.after(200, lambda: record("quiet_period_over"))

            record("ticking", timer_id=server.tick(20, on_tick, "label"))

        serve(server)
    """)

    server.wait_event("quiet_period_over")

    timer_id = server.events("ticking")[0]["timer_id"]
    ticks = server.events("tick")
    assert [(t["timer_id"], t["label"]) for t in ticks] == [(timer_id, "label")] * 3
    assert ticks[2]["t"] - ticks[0]["t"] >= 0.035  # two intervals of 20 ms
    assert server.events("cleared")[0]["ok"] is True


def test_after_fires_once_with_its_args_after_the_delay(start_server):
    server = start_server("""
        server = recording_server(worker_num=1)

        @server.on("WorkerStart")
        def on_worker_start(server, worker_id):
            scheduled = time.monotonic()
            fired = lambda *args: record("after", args=args, delay=time.monotonic() - scheduled)
            record("scheduled", timer_id=server.after(50, fired, 1, "two"))
            server.after(250, lambda: record("quiet_period_over"))

        serve(server)
    """)

    server.wait_event("quiet_period_over")

    assert isinstance(server.events("scheduled")[0]["timer_id"], int)
    [after] = server.events("after")
    assert after["args"] == [1, "two"]
    assert after["delay"] >= 0.045


def test_clear_timer_cancels_a_pending_after_and_refuses_an_unknown_id(start_server):
    server = start_server("""
        server = recording_server(worker_num=1)

        @server.on("WorkerStart")
        def on_worker_start(server, worker_id):
            cancelled = server.after(50, lambda: record("cancelled_timer_fired"))
            record("cleared", ok=server.clear_timer(cancelled), unknown=server.clear_timer(987654))
            server.after(250, lambda: record("quiet_period_over"))

        serve(server)
    """)

    server.wait_event("quiet_period_over")

    assert server.events("cancelled_timer_fired") == []
    cleared = server.events("cleared")[0]
    assert (cleared["ok"], cleared["unknown"]) == (True, False)


def test_an_exception_in_a_tick_is_logged_and_the_tick_goes_on(start_server):
    server = start_server("""
        server = recording_server(worker_num=1)

        def on_tick(timer_id):
            record("tick")
            raise RuntimeError("raised in a tick on purpose")

        server.on("WorkerStart", lambda s, wid: s.tick(10, on_tick))
        serve(server)
    """)

    server.wait_events("tick", 3)

    assert "raised in a tick on purpose" in server.log()
    assert "Traceback" in server.log()


def test_a_timer_set_in_receive_can_reply_later(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1)
        serve(server)
    """)
    client = connect(server)

    timer_id = client.ask("server.after(30, server.send, fd, b'late reply')")

    assert isinstance(timer_id, int)
    assert client.recv_exactly(len(b"late reply")) == b"late reply"


ASYNC_RECEIVE = """
server = recording_server(worker_num=1)

@server.on("Receive")
async def on_receive(server, fd, reactor_id, data):
    if data == b"slow":
        record("slow_started", fd=fd)
        await ahold("slow")
        server.send(fd, b"slow done")
    elif data == b"raise":
        await asyncio.sleep(0)
        raise RuntimeError("raised in a coroutine on purpose")
    else:
        server.send(fd, data)

serve(server)
"""


def test_a_slow_coroutine_receive_does_not_stall_other_connections(start_server, connect):
    server = start_server(ASYNC_RECEIVE)
    slow = connect(server)
    slow.send(b"slow")
    server.wait_event("slow_started")

    fast = connect(server)

    assert fast.request(b"fast") == b"fast"  # while the slow coroutine is still waiting
    server.release("slow")
    assert slow.recv_exactly(len(b"slow done")) == b"slow done"


def test_an_exception_in_a_coroutine_callback_is_logged_and_serving_goes_on(start_server, connect):
    server = start_server(ASYNC_RECEIVE)
    client = connect(server)

    client.send(b"raise")

    wait_until(lambda: "raised in a coroutine on purpose" in server.log())
    assert "Traceback" in server.log()
    assert client.request(b"still served") == b"still served"


def test_coroutine_connect_and_close_callbacks_run(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1)

        @server.on("Connect")
        async def on_connect(server, fd, reactor_id):
            await asyncio.sleep(0)
            server.send(fd, b"welcome\\n")

        @server.on("Close")
        async def on_close(server, fd, reactor_id):
            await asyncio.sleep(0)
            record("async_close", fd=fd)

        serve(server)
    """)
    client = connect(server)

    assert client.recv_line() == b"welcome\n"
    client.close()
    assert server.wait_event("async_close")["fd"] == 1


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_event_loop_setting_chooses_the_workers_loop(start_server, loop):
    server = start_server(
        """
        server = recording_server(worker_num=1, event_loop=loop)
        server.on("WorkerStart", lambda s, wid: record(
            "loop", module=type(asyncio.get_running_loop()).__module__))
        serve(server)
    """,
        loop=loop,
    )

    assert server.wait_event("loop")["module"].split(".")[0] == loop
