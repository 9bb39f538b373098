"""Datagram and UNIX-socket servers: Packet with the sender's address, sendto() back; UNIX streams echo."""

from __future__ import annotations

import socket


def test_udp_packet_carries_the_sender_and_sendto_replies(start_server, dgram):
    server = start_server("""
        server = recording_server(sock_type=SockType.UDP)
        serve(server)
    """)
    client = dgram(bind=("127.0.0.1", 0))

    client.sendto(b"datagram", ("127.0.0.1", server.port))

    reply, sender = client.recvfrom(65536)
    assert reply == b"datagram"
    assert sender == ("127.0.0.1", server.port)
    packet = server.wait_event("packet")
    assert packet["data"] == "datagram"
    assert packet["client_info"]["address"] == "127.0.0.1"
    assert packet["client_info"]["port"] == client.getsockname()[1]
    assert isinstance(packet["client_info"]["server_socket"], int)


def test_udp_datagrams_keep_their_boundaries(start_server, dgram):
    server = start_server("""
        server = recording_server(sock_type=SockType.UDP)
        serve(server)
    """)
    client = dgram()
    messages = [b"a", b"bb" * 100, b"ccc" * 1000]

    for message in messages:
        client.sendto(message, ("127.0.0.1", server.port))

    assert sorted(client.recv(65536) for _ in messages) == sorted(messages)


def test_udp6_echo(start_server, dgram):
    server = start_server("""
        server = recording_server("::1", sock_type=SockType.UDP6)
        serve(server)
    """)
    client = dgram(socket.AF_INET6, bind=("::1", 0))

    client.sendto(b"over ipv6", ("::1", server.port))

    assert client.recv(65536) == b"over ipv6"
    packet = server.wait_event("packet")
    assert packet["client_info"]["address"] == "::1"
    assert packet["client_info"]["port"] == client.getsockname()[1]


def test_unix_dgram_packet_address_is_the_client_path_and_the_reply_reaches_it(start_server, dgram, short_dir):
    server_path = str(short_dir / "server.sock")
    client_path = str(short_dir / "client.sock")
    server = start_server(
        """
        server = recording_server(path, sock_type=SockType.UNIX_DGRAM)
        serve(server)
    """,
        path=server_path,
    )
    server.wait_event("worker_start")
    client = dgram(socket.AF_UNIX, bind=client_path)

    client.sendto(b"over unix", server_path)

    assert client.recv(65536) == b"over unix"
    assert server.wait_event("packet")["client_info"]["address"] == client_path


def test_unix_stream_echo(start_server, connect, short_dir):
    path = str(short_dir / "stream.sock")
    server = start_server(
        """
        server = recording_server(path, sock_type=SockType.UNIX_STREAM)
        serve(server)
    """,
        path=path,
    )

    client = connect(path)

    assert client.request(b"over a unix stream") == b"over a unix stream"
    assert server.wait_event("connect")["fd"] == 1
    assert server.port == 0
