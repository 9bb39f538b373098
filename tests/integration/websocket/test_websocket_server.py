"""WebSocketServer over real sockets, with the ``websockets`` library's client (and a raw socket for frames no
real client sends), in both run modes."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import zlib

import pytest
import websockets
from websockets.asyncio.client import connect

from serverkit import wait_until
from wskit import raw_upgrade, start_ws_server, upgrade_request, ws_url

MODES = ["BASE", "PROCESS"]


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 20))


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


def test_handshake_open_text_and_binary_echo_and_close_callback(start_server, mode):
    server = start_ws_server(start_server, mode)

    async def client():
        async with connect(ws_url(server, "/chat?room=1")) as ws:
            await ws.send("hello")
            text = await ws.recv()
            await ws.send(b"\x00\x01binary")
            binary = await ws.recv()
            return text, binary

    assert run(client()) == ("hello", b"\x00\x01binary")
    opened = server.wait_event("open")
    assert opened["path"] == "/chat" and opened["established"] is True
    messages = server.events("message")
    assert [(m["opcode"], m["data"]) for m in messages] == [(1, "hello"), (2, "\x00\x01binary")]
    server.wait_event("close", fd=opened["fd"])


def test_fragments_are_joined_and_a_ping_between_them_is_answered(start_server, mode):
    server = start_ws_server(start_server, mode)
    ws = raw_upgrade(server.port)
    ws.send_frame(1, "héllo ".encode()[:2], fin=False)
    ws.send_frame(9, b"are you there")
    assert ws.recv_frame() == (10, b"are you there")  # the pong comes in the middle of the message
    ws.send_frame(0, "héllo ".encode()[2:], fin=False)
    ws.send_frame(0, b"world")
    assert ws.recv_frame() == (1, "héllo world".encode())
    assert [m["data"] for m in server.events("message")] == ["héllo world"]


def test_a_client_close_is_answered_with_its_code_and_runs_close(start_server, mode):
    server = start_ws_server(start_server, mode)
    ws = raw_upgrade(server.port)
    fd = server.wait_event("open")["fd"]
    ws.send_frame(8, struct.pack("!H", 4001) + b"bye")
    assert ws.recv_close() == (4001, "")
    assert ws.eof()
    server.wait_event("close", fd=fd)


def test_disconnect_sends_the_close_frame_and_ends_after_the_clients_reply(start_server, mode):
    server = start_ws_server(start_server, mode)

    async def client():
        async with connect(ws_url(server)) as ws:
            await ws.send("ask server.disconnect(fd, 4000, 'go away')")
            try:
                await ws.recv()
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code, closed.rcvd.reason
            return None

    assert run(client()) == (4000, "go away")
    server.wait_event("close")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (struct.pack("!BB", 0x81, 2) + b"hi", 1002),  # not masked
        (struct.pack("!BB", 0xC1, 0x82) + b"\0\0\0\0hi", 1002),  # RSV1 without permessage-deflate
        (struct.pack("!BB", 0x83, 0x82) + b"\0\0\0\0hi", 1002),  # opcode 3 is reserved
        (struct.pack("!BB", 0x81, 0x82) + b"\0\0\0\0\xff\xfe", 1007),  # text that is not UTF-8
        (struct.pack("!BBQ", 0x82, 0xFF, 3 * 1024 * 1024) + b"\0\0\0\0", 1009),  # over package_max_length
    ],
    ids=["unmasked", "reserved-bit", "unknown-opcode", "invalid-utf8", "too-big"],
)
def test_protocol_errors_close_with_their_code_and_other_clients_are_served(start_server, mode, frame, code):
    server = start_ws_server(start_server, mode)
    bad = raw_upgrade(server.port)
    good = raw_upgrade(server.port)
    bad.sock.sendall(frame)
    assert bad.recv_close()[0] == code
    assert bad.eof()
    good.send_frame(1, b"still here")
    assert good.recv_frame() == (1, b"still here")


def test_a_compression_bomb_closes_with_1009_without_inflating_it_all(start_server, mode):
    server = start_ws_server(start_server, mode, websocket_compression=True, package_max_length=1024 * 1024)
    ws = raw_upgrade(server.port, extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(bytes(64 * 1024 * 1024)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    ws.send_frame(2, bomb[:-4], rsv=4)  # RSV1: compressed
    assert ws.recv_close()[0] == 1009


def test_permessage_deflate_is_negotiated_and_messages_round_trip(start_server, mode):
    server = start_ws_server(start_server, mode, websocket_compression=True)

    async def client():
        async with connect(ws_url(server), compression="deflate") as ws:
            extensions = [type(extension).__name__ for extension in ws.protocol.extensions]
            payload = "compress me " * 500
            await ws.send(payload)
            return extensions, await ws.recv() == payload

    extensions, echoed = run(client())
    assert extensions == ["PerMessageDeflate"]
    assert echoed


def test_the_subprotocol_is_chosen_from_the_clients_offer(start_server, mode):
    server = start_ws_server(start_server, mode, websocket_subprotocol=["chat.v2", "chat.v1"])

    async def client():
        async with connect(ws_url(server), subprotocols=["chat.v1", "other"]) as ws:
            return ws.subprotocol

    assert run(client()) == "chat.v1"


@pytest.mark.parametrize(("version", "status"), [(b"8", b"426"), (b"13", b"400")])
def test_a_bad_upgrade_gets_a_4xx_and_no_open(start_server, mode, version, status):
    server = start_ws_server(start_server, mode)
    key = b"not-base64-16-bytes" if version == b"13" else None
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(upgrade_request(server.port, version=version, key=key))
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 " + status), answer
    assert server.events("open") == []


def test_plain_http_on_a_websocket_server_goes_to_request(start_server, mode):
    import urllib.request

    server = start_ws_server(start_server, mode)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/page", timeout=10) as answer:
        assert answer.read() == b"plain http"
    assert server.wait_event("request")["path"] == "/page"


def test_push_errors_for_closed_and_non_websocket_sessions(start_server, mode):
    server = start_ws_server(start_server, mode)

    async def client():
        async with connect(ws_url(server)) as ws:
            await ws.send("ask [server.push(123456, 'x'), server.get_last_error(), server.is_established(123456)]")
            unknown = json.loads(await ws.recv())
            await ws.send("ask [server.is_established(fd), server.push(fd, b'\\x01', 2)]")
            binary = await ws.recv()  # pushed while the expression was evaluated, before its answer
            own = json.loads(await ws.recv())
            return unknown, own, binary

    unknown, own, binary = run(client())
    assert unknown == [False, 1005, False]
    assert own == [True, True]
    assert binary == b"\x01"


def test_push_to_a_plain_http_session_fails_with_websocket_unconnected(start_server, mode):
    server = start_ws_server(start_server, mode)
    http = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    http.sendall(b"GET /keep HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"plain http" in http.recv(4096)
    http_fd = server.wait_event("request")["fd"]

    async def client():
        async with connect(ws_url(server)) as ws:
            await ws.send(f"ask [server.push({http_fd}, 'x'), server.get_last_error()]")
            return json.loads(await ws.recv())

    assert run(client()) == [False, 8503]
    http.close()


def test_pack_and_unpack_round_trip():
    from pyswoole import CloseFrame, Opcode, WebSocketServer

    frame = WebSocketServer.unpack(WebSocketServer.pack("hello"))
    assert (frame.opcode, frame.data, frame.finish) == (Opcode.TEXT, "hello", True)
    closing = WebSocketServer.unpack(WebSocketServer.pack(CloseFrame(code=4000, reason="bye")))
    assert isinstance(closing, CloseFrame) and (closing.code, closing.reason) == (4000, "bye")


def test_a_task_worker_and_a_user_process_push_to_any_session(start_server, mode):
    server = start_ws_server(start_server, mode, with_process=True, worker_num=2, task_worker_num=1)

    async def client():
        async with connect(ws_url(server)) as ws:
            # The push may overtake the answer to "ask": it comes from another process.
            await ws.send("ask server.task((fd, 'from a task worker'))")
            from_task = {await ws.recv(), await ws.recv()}
            await ws.send("ask pusher.write(json.dumps([fd, 'from a user process']))")
            from_process = {await ws.recv(), await ws.recv()}
            return from_task, from_process

    from_task, from_process = run(client())
    assert from_task == {"0", "from a task worker"}  # "0": the task id
    assert "from a user process" in from_process
    assert server.wait_event("task_push")["ok"] is True
    assert server.wait_event("process_push")["ok"] is True


def test_delivered_ping_pong_and_close_frames_when_asked(start_server, mode):
    server = start_ws_server(
        start_server, mode, open_websocket_ping_frame=True, open_websocket_pong_frame=True,
        open_websocket_close_frame=True,
    )  # fmt: skip
    ws = raw_upgrade(server.port)
    ws.send_frame(9, b"ping!")
    ws.send_frame(10, b"pong!")
    ws.send_frame(8, struct.pack("!H", 1000) + b"done")
    assert ws.recv_close() == (1000, "")
    messages = server.wait_events("message", 3)
    assert [(m["opcode"], m["data"]) for m in messages] == [(9, "ping!"), (10, "pong!"), (8, "\x03\xe8done")]
    assert (messages[2]["code"], messages[2]["reason"]) == (1000, "done")


def test_an_idle_websocket_is_closed_by_the_heartbeat(start_server, mode):
    server = start_ws_server(start_server, mode, heartbeat_check_interval=1, heartbeat_idle_time=2)
    ws = raw_upgrade(server.port)
    fd = server.wait_event("open")["fd"]
    wait_until(ws.eof, timeout=10, message="the idle WebSocket was not closed")
    server.wait_event("close", fd=fd)
