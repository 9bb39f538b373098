"""The cluster: several pyswoole servers (nodes) that share one Redis. Nodes register themselves with a TTL,
deliver to each other's sessions through Redis pub/sub, keep groups of sessions in Redis sets, and share one task
queue (a Redis stream). ``server.cluster`` is :class:`~pyswoole.cluster.node.Cluster`; docs/cluster.md tells how
to run one.

Only ``node`` is imported with the package: the modules that need the redis package (an optional dependency,
``pip install 'pyswoole[cluster]'``) are imported once a server is configured with a cluster.
"""

from __future__ import annotations

from .node import Cluster

__all__ = ["Cluster"]
