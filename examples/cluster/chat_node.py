"""One node of a chat spread over several pyswoole servers that share a Redis (docs/cluster.md).

Every WebSocket client joins the cluster-wide group ``lobby``; what one client sends is broadcast to the lobby on
every node, whichever node the load balancer sent each client to. Run three nodes and HAProxy in front of them
(``haproxy.cfg`` beside this file)::

    redis-server --port 6379 &
    python examples/cluster/chat_node.py --port 9501 --node a &
    python examples/cluster/chat_node.py --port 9502 --node b &
    python examples/cluster/chat_node.py --port 9503 --node c &
    haproxy -f examples/cluster/haproxy.cfg

then open WebSocket clients on ws://127.0.0.1:8080/. A client leaves the lobby when it disconnects, and a node
that dies takes its clients out of the lobby within ``cluster_node_ttl`` seconds.
"""

from __future__ import annotations

import argparse

from pyswoole import Frame, Mode, Request, WebSocketServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9501)
    parser.add_argument("--node", required=True, help="this node's name, unique in the cluster")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    server = WebSocketServer(args.host, args.port, Mode.PROCESS)
    server.set(cluster=args.redis, cluster_node=args.node, worker_num=args.workers)

    @server.on("Open")
    def on_open(server: WebSocketServer, request: Request) -> None:
        server.cluster.join(request.fd, "lobby")
        server.push(request.fd, f"welcome to {server.cluster.node}")

    @server.on("Message")
    def on_message(server: WebSocketServer, frame: Frame) -> None:
        server.cluster.broadcast("lobby", f"{server.cluster.node}#{frame.fd}: {frame.data}")

    server.start()


if __name__ == "__main__":
    main()
