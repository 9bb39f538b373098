"""A real deployment: three nodes of examples/cluster/chat_node.py on loopback ports, HAProxy in front of them
with the example's configuration (its ports rewritten), WebSocket clients spread over the nodes by HAProxy, and a
message from one client broadcast to every client on every node."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from pathlib import Path

from websockets.sync.client import connect

from programs import need
from pyswoole.cluster.wire import Keys
from serverkit import wait_until

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "cluster"
# The example on port 0, its port reported once bound: a port picked beforehand could be taken by another test
# before the node binds it (the node then exits, and its postman never subscribes).
NODE = """
import runpy
from pyswoole import WebSocketServer

start = WebSocketServer.start

def start_reporting_the_port(server):
    report_port(server)
    return start(server)

WebSocketServer.start = start_reporting_the_port
sys.argv = ["chat_node.py", "--port", "0", "--node", name, "--redis", url, "--workers", "2"]
runpy.run_path(example, run_name="__main__")
"""


def answers(port: int) -> bool:
    """Something answers HTTP on ``port`` (HAProxy, with a node's answer to a plain GET)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def test_a_broadcast_through_haproxy_reaches_clients_on_every_node(start_server, redis_server, tmp_path):
    """Six clients, two per node (round robin); the first one's message reaches all six."""
    program = need("haproxy")
    example = str(EXAMPLES / "chat_node.py")
    nodes = {name: start_server(NODE, name=name, url=redis_server.url, example=example) for name in "abc"}
    ports = {name: node.port for name, node in nodes.items()}  # fails at once if a node exits before binding
    # PROCESS mode: the master accepts before worker 0's postman listens; a node is ready once it does.
    redis = redis_server.client()
    channels = [Keys.channel(name) for name in nodes]
    seen: list[int] = []

    def every_postman_listens() -> bool:
        seen[:] = [count for _, count in redis.pubsub_numsub(*channels)]
        return seen == [1, 1, 1]

    wait_until(every_postman_listens, timeout=20, message=lambda: "subscribers of the nodes' channels " + ", ".join(
        f"{name}: {count} ({'running' if node.alive() else 'exited'})"
        for (name, node), count in zip(nodes.items(), seen, strict=True)
    ))  # fmt: skip
    with socket.socket() as front:  # HAProxy gets the listening socket itself (bind fd@): no port to race for
        front.bind(("127.0.0.1", 0))
        front.listen()
        config = (EXAMPLES / "haproxy.cfg").read_text().replace("127.0.0.1:8080", f"fd@{front.fileno()}")
        for name, default in (("a", 9501), ("b", 9502), ("c", 9503)):
            config = config.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[name]}")
        (tmp_path / "haproxy.cfg").write_text(config)
        proxy = subprocess.Popen(
            [program, "-db", "-f", str(tmp_path / "haproxy.cfg")], pass_fds=[front.fileno()],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        front_port = front.getsockname()[1]
    try:
        wait_until(lambda: answers(front_port) or proxy.poll() is not None, timeout=10)
        assert proxy.poll() is None, proxy.stdout.read().decode() if proxy.stdout else ""
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(connect(f"ws://127.0.0.1:{front_port}/", open_timeout=10)) for _ in range(6)]
            welcomes = [client.recv(10) for client in clients]
            assert sorted(welcomes) == sorted(f"welcome to {name}" for name in "abcabc")
            clients[0].send("hello everyone")
            heard = [client.recv(10) for client in clients]
            sender_node = welcomes[0].removeprefix("welcome to ")
            assert len(set(heard)) == 1
            assert heard[0].startswith(f"{sender_node}#") and heard[0].endswith(": hello everyone")
    finally:
        proxy.terminate()
        proxy.wait(10)
