"""One server, several kinds of ports: TCP, UDP and UNIX stream side by side, each with its callbacks."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("mode", ["BASE", "PROCESS"])
def test_tcp_udp_and_unix_ports_serve_side_by_side_with_their_own_callbacks(
    start_server, connect, dgram, short_dir, mode
):
    path = str(short_dir / "s.sock")
    server = start_server(
        """
        server = recording_server(mode=Mode[mode], worker_num=2)
        udp = server.add_listener("127.0.0.1", 0, SockType.UDP)
        unix = server.listen(path, 0, SockType.UNIX_STREAM)

        @udp.on("Packet")
        def on_packet(server, data, client):
            server.sendto(client["address"], client["port"], b"udp:" + data, client["server_socket"])

        @unix.on("Receive")
        def on_unix(server, fd, reactor_id, data):
            server.send(fd, b"unix:" + data)

        record("ports", udp=udp.port, kinds=[int(p.sock_type) for p in server.ports])
        serve(server)
    """,
        mode=mode,
        path=path,
    )
    ports = server.wait_event("ports")
    assert ports["kinds"] == [1, 2, 5]  # SockType.TCP, UDP, UNIX_STREAM

    tcp = connect(server.port)
    assert tcp.request(b"plain") == b"plain"  # the primary port keeps the server's Receive
    unix = connect(path)
    assert unix.request(b"hi", reply_size=7) == b"unix:hi"
    udp = dgram()
    udp.settimeout(5)
    udp.sendto(b"ping", ("127.0.0.1", ports["udp"]))
    assert udp.recvfrom(100)[0] == b"udp:ping"
