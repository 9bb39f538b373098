"""The cluster's Lua scripts against a real redis-server: each one step of the groups' and nodes' bookkeeping, with
the keys it leaves behind checked (nothing left over once the last member is gone)."""

from __future__ import annotations

from pyswoole.cluster import scripts, wire
from pyswoole.cluster.wire import Keys

P = wire.PREFIX


def run(client, name: str, *args):
    return client.register_script(getattr(scripts, name))(args=[P, *args])


def keys(client) -> list[str]:
    return sorted(key.decode() for key in client.keys(P + "*"))


def register(client, node: str, ttl_ms: int = 60_000) -> None:
    run(client, "REGISTER", node, "{}", ttl_ms)


def test_join_members_leave_leave_no_key_behind(redis_server):
    client = redis_server.client()
    register(client, "a")
    register(client, "b:1")  # a node name may hold the separator
    assert run(client, "JOIN", "a", 5, "room") == 1
    assert run(client, "JOIN", "a", 5, "room") == 0  # already in it
    run(client, "JOIN", "b:1", 7, "room")
    run(client, "JOIN", "a", 5, "other")
    assert sorted(wire.members_from_reply(run(client, "MEMBERS", "room"))) == [("a", 5), ("b:1", 7)]
    assert run(client, "LEAVE", "a", 5, "room") == 1
    assert run(client, "LEAVE", "a", 5, "room") == 0
    assert wire.members_from_reply(run(client, "MEMBERS", "room")) == [("b:1", 7)]
    run(client, "LEAVE", "b:1", 7, "room")
    run(client, "LEAVE", "a", 5, "other")
    assert keys(client) == sorted([Keys.nodes, Keys.node("a"), Keys.node("b:1")])


def test_close_removes_a_session_from_every_group_of_it_and_only_it(redis_server):
    client = redis_server.client()
    register(client, "a")
    for group in ("g1", "g2", "g3"):
        run(client, "JOIN", "a", 1, group)
    run(client, "JOIN", "a", 2, "g1")
    assert run(client, "CLOSE", "a", 1, 99) == 3  # 99 was in no group
    assert wire.members_from_reply(run(client, "MEMBERS", "g1")) == [("a", 2)]
    assert run(client, "MEMBERS", "g2") == []
    assert not client.exists(Keys.session_groups("a", 1))
    assert client.smembers(Keys.node_sessions("a")) == {b"2"}


def test_members_leave_out_nodes_whose_registration_ran_out_and_sweep_removes_them(redis_server):
    client = redis_server.client()
    register(client, "live")
    register(client, "dead")
    run(client, "JOIN", "live", 1, "g")
    run(client, "JOIN", "dead", 2, "g")
    run(client, "JOIN", "dead", 3, "h")
    assert run(client, "SWEEP", "dead", "0") == -1  # alive: not swept unless forced
    client.delete(Keys.node("dead"))  # its TTL ran out
    assert wire.members_from_reply(run(client, "MEMBERS", "g")) == [("live", 1)]
    live, dead = run(client, "NODES")
    assert (live, dead) == ([b"live"], [b"dead"])
    assert run(client, "SWEEP", "dead", "0") == 2
    assert run(client, "NODES") == [[b"live"], []]
    assert keys(client) == sorted(
        [
            Keys.nodes,
            Keys.node("live"),
            Keys.group_nodes("g"),
            Keys.group_members("g", "live"),
            Keys.node_groups("live"),
            Keys.node_sessions("live"),
            Keys.session_groups("live", 1),
        ]
    )


def test_broadcast_publishes_each_node_its_own_members_after_the_head(redis_server):
    client = redis_server.client()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(Keys.channel("a"), Keys.channel("b"))
    for node, fd in (("a", 1), ("a", 2), ("b", 3)):
        run(client, "JOIN", node, fd, "g")
    head = wire.encode_broadcast_head(b"hi", wire.TEXT, 1, [("a", 2)])
    assert run(client, "BROADCAST", "g", head) == 2
    got = {}
    while len(got) < 2:
        message = pubsub.get_message(timeout=5)
        if message is not None:
            got[message["channel"].decode()] = wire.decode_batch(message["data"])
    [to_a] = got[Keys.channel("a")]
    [to_b] = got[Keys.channel("b")]
    assert sorted(to_a.fds) == [1, 2] and to_a.exclude == (("a", 2),) and to_a.data == b"hi"
    assert to_b.fds == (3,)


def test_enqueue_refuses_beyond_the_capacity(redis_server):
    client = redis_server.client()
    enqueue = client.register_script(scripts.ENQUEUE)
    assert enqueue(keys=[Keys.tasks], args=[P, 2, "d", b"x"])
    assert enqueue(keys=[Keys.tasks], args=[P, 2, "d", b"y"])
    assert enqueue(keys=[Keys.tasks], args=[P, 2, "d", b"z"]) is None
    assert client.xlen(Keys.tasks) == 2
