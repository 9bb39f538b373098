"""The opening handshake: an upgrade request's headers in, a 101 (with subprotocol and deflate) or a 4xx out."""

from __future__ import annotations

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Opcode as WsOpcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from pyswoole.websocket.deflate import PerMessageDeflate
from pyswoole.websocket.frames import Opcode, encode_frame
from pyswoole.websocket.handshake import Accepted, Rejected, accept_key, handshake
from pyswoole.websocket.parser import FrameParser, Message

RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def request_headers(**changes: bytes | None) -> list[tuple[bytes, bytes]]:
    """A valid upgrade request's headers; a keyword (``sec_websocket_key=...``) replaces one, None drops it."""
    headers = {
        b"host": b"example.com",
        b"upgrade": b"websocket",
        b"connection": b"Upgrade",
        b"sec-websocket-key": RFC_KEY,
        b"sec-websocket-version": b"13",
    }
    for name, value in changes.items():
        field = name.replace("_", "-").encode()
        if value is None:
            headers.pop(field, None)
        else:
            headers[field] = value
    return list(headers.items())


def accepted(result: Accepted | Rejected) -> Accepted:
    assert isinstance(result, Accepted), result
    return result


def rejected(result: Accepted | Rejected) -> Rejected:
    assert isinstance(result, Rejected), result
    return result


def header_lines(response: bytes) -> list[bytes]:
    head, _, _ = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n")


def test_accept_key_is_rfc_6455s_example() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_a_valid_request_gets_the_whole_101_response() -> None:
    result = accepted(handshake("GET", "1.1", request_headers()))
    assert result.response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + RFC_ACCEPT + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )
    assert (result.subprotocol, result.deflate) == (None, None)


def test_upgrade_and_connection_are_case_insensitive_token_lists() -> None:
    headers = request_headers(upgrade=b"foo/2, WebSocket", connection=b"keep-alive, UPGRADE")
    accepted(handshake("GET", "1.1", headers))


@pytest.mark.parametrize(
    ("method", "version", "changes", "reason"),
    [
        ("POST", "1.1", {}, "GET"),
        ("GET", "1.0", {}, "HTTP/1.1"),
        ("GET", "1.1", {"upgrade": None}, "Upgrade"),
        ("GET", "1.1", {"upgrade": b"h2c"}, "Upgrade"),
        ("GET", "1.1", {"connection": b"keep-alive"}, "Connection"),
        ("GET", "1.1", {"connection": None}, "Connection"),
        ("GET", "1.1", {"sec_websocket_key": None}, "Sec-WebSocket-Key"),
        ("GET", "1.1", {"sec_websocket_key": b"not base64!"}, "Sec-WebSocket-Key"),
        ("GET", "1.1", {"sec_websocket_key": b"AAAAAAAAAAAAAAAAAAAA"}, "Sec-WebSocket-Key"),  # 15 bytes
        ("GET", "1.1", {"sec_websocket_key": b"AAAAAAAAAAAAAAAAAAAAAAAAAA=="}, "Sec-WebSocket-Key"),  # 19 bytes
        ("GET", "1.1", {"sec_websocket_version": None}, "Sec-WebSocket-Version"),
    ],
)
def test_a_request_missing_a_requirement_gets_400(
    method: str, version: str, changes: dict[str, bytes | None], reason: str
) -> None:
    result = rejected(handshake(method, version, request_headers(**changes)))
    assert result.status == 400
    assert reason in result.reason
    assert result.response.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_two_keys_get_400() -> None:
    headers = [*request_headers(), (b"sec-websocket-key", RFC_KEY)]
    assert rejected(handshake("GET", "1.1", headers)).status == 400


@pytest.mark.parametrize("version", [b"8", b"12", b"14", b"13, 8", b"thirteen"])
def test_another_websocket_version_gets_426_naming_13(version: bytes) -> None:
    result = rejected(handshake("GET", "1.1", request_headers(sec_websocket_version=version)))
    assert result.status == 426
    lines = header_lines(result.response)
    assert lines[0] == b"HTTP/1.1 426 Upgrade Required"
    assert b"Sec-WebSocket-Version: 13" in lines
    assert b"Upgrade: websocket" in lines


def test_a_rejection_is_a_complete_response_that_closes() -> None:
    response = rejected(handshake("GET", "1.1", request_headers(sec_websocket_key=b"short"))).response
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"Connection: close" in head.split(b"\r\n")
    assert f"Content-Length: {len(body)}".encode() in head.split(b"\r\n")
    assert b"Sec-WebSocket-Key" in body


# ---- subprotocols -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "configured", "chosen"),
    [
        (b"superchat, chat", "chat", "chat"),
        (b"superchat, chat", ["chat", "superchat"], "superchat"),  # the client's order of preference
        (b"v2.json", "v1.json, v2.json", "v2.json"),
        (None, "chat", None),
        (b"other", "chat", None),
        (b"chat", None, None),
        (b"chat", [], None),
        (b"Chat", "chat", None),
    ],
)
def test_the_subprotocol_is_the_first_offered_one_the_port_accepts(
    offered: bytes | None, configured: str | list[str] | None, chosen: str | None
) -> None:
    result = accepted(handshake("GET", "1.1", request_headers(sec_websocket_protocol=offered), subprotocols=configured))
    assert result.subprotocol == chosen
    protocol_lines = [line for line in header_lines(result.response) if line.startswith(b"Sec-WebSocket-Protocol")]
    assert protocol_lines == ([] if chosen is None else [b"Sec-WebSocket-Protocol: " + chosen.encode()])


def test_subprotocols_offered_on_several_lines_are_all_considered() -> None:
    headers = [*request_headers(sec_websocket_protocol=b"a"), (b"sec-websocket-protocol", b"b")]
    assert accepted(handshake("GET", "1.1", headers, subprotocols="b")).subprotocol == "b"


# ---- compression --------------------------------------------------------------------------------------------


def test_compression_is_agreed_when_on_and_offered() -> None:
    headers = request_headers(sec_websocket_extensions=b"permessage-deflate; client_max_window_bits")
    result = accepted(handshake("GET", "1.1", headers, compression=True))
    assert result.deflate == PerMessageDeflate()
    assert (
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        in header_lines(result.response)
    )


def test_compression_off_ignores_the_offer() -> None:
    headers = request_headers(sec_websocket_extensions=b"permessage-deflate")
    result = accepted(handshake("GET", "1.1", headers, compression=False))
    assert result.deflate is None
    assert not any(line.startswith(b"Sec-WebSocket-Extensions") for line in header_lines(result.response))


def test_an_unacceptable_offer_means_no_compression_but_still_an_upgrade() -> None:
    headers = request_headers(sec_websocket_extensions=b"permessage-deflate; server_max_window_bits=8")
    result = accepted(handshake("GET", "1.1", headers, compression=True))
    assert result.deflate is None
    assert not any(line.startswith(b"Sec-WebSocket-Extensions") for line in header_lines(result.response))


def test_offers_on_several_lines_are_read_together() -> None:
    headers = [
        *request_headers(sec_websocket_extensions=b"x-foo"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
    ]
    assert accepted(handshake("GET", "1.1", headers, compression=True)).deflate is not None


# ---- against a real client ----------------------------------------------------------------------------------


def test_the_websockets_client_accepts_the_upgrade_and_both_sides_speak_compressed() -> None:
    client = ClientProtocol(
        parse_uri("ws://localhost/chat"),
        extensions=[ClientPerMessageDeflateFactory()],
        subprotocols=["superchat", "chat"],  # type: ignore[list-item]
    )
    request = client.connect()
    headers = [(name.lower().encode(), value.encode()) for name, value in request.headers.raw_items()]
    result = accepted(handshake("GET", "1.1", headers, subprotocols=["chat"], compression=True))
    client.receive_data(result.response)
    assert isinstance(client.events_received()[0], Response)
    assert client.state is State.OPEN
    assert client.handshake_exc is None
    assert client.subprotocol == "chat"
    assert result.deflate is not None

    parser = FrameParser(deflate=result.deflate)
    for text in ("first message " * 10, "second message " * 10):
        client.send_text(text.encode())
        (sent,) = client.data_to_send()
        assert sent[0] & 0x40  # the client compressed it
        assert parser.feed(sent) == [Message(Opcode.TEXT, text, True)]

    for text in ("reply " * 20, "again " * 20):
        client.receive_data(encode_frame(Opcode.TEXT, result.deflate.compress(text.encode()), rsv1=True))
        (frame,) = client.events_received()
        assert (frame.opcode, frame.data) == (WsOpcode.TEXT, text.encode())  # type: ignore[union-attr]
