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
NODE = """
import runpy
sys.argv = ["chat_node.py", "--port", str(port), "--node", name, "--redis", url, "--workers", "2"]
runpy.run_path(example, run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_a_broadcast_through_haproxy_reaches_clients_on_every_node(start_server, redis_server, tmp_path):
    """Six clients, two per node (round robin); the first one's message reaches all six."""
    program = need("haproxy")
    ports = {name: free_port() for name in ("a", "b", "c")}
    for name, port in ports.items():
        start_server(NODE, port=port, name=name, url=redis_server.url, example=str(EXAMPLES / "chat_node.py"))
    # PROCESS mode: the master accepts before worker 0's postman listens; a node is ready once it does.
    redis = redis_server.client()
    channels = [Keys.channel(name) for name in ports]
    wait_until(lambda: all(count == 1 for _, count in redis.pubsub_numsub(*channels)), timeout=20)
    front = free_port()
    config = (EXAMPLES / "haproxy.cfg").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{front}")
    for name, default in (("a", 9501), ("b", 9502), ("c", 9503)):
        config = config.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[name]}")
    (tmp_path / "haproxy.cfg").write_text(config)
    proxy = subprocess.Popen(
        [program, "-db", "-f", str(tmp_path / "haproxy.cfg")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: listening(front) or proxy.poll() is not None, timeout=10)
        assert proxy.poll() is None, proxy.stdout.read().decode() if proxy.stdout else ""
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(connect(f"ws://127.0.0.1:{front}/", open_timeout=10)) for _ in range(6)]
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
