"""The cluster's wire format, sans-IO: delivery batches round-trip exactly, a broadcast takes the member list the
Redis script appends, anything malformed is refused as a whole, and no two (group, node) pairs share a key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyswoole.cluster import wire
from pyswoole.cluster.wire import Delivery, Keys

fds = st.integers(min_value=1, max_value=2**63 - 1)
payloads = st.binary(max_size=300)
sends = st.builds(lambda fd, data: Delivery(wire.SEND, (fd,), data), fds, payloads)
pushes = st.builds(
    lambda fd, data, opcode, flags: Delivery(wire.PUSH, (fd,), data, opcode, flags),
    fds,
    payloads,
    st.sampled_from([wire.TEXT, wire.BINARY]),
    st.integers(0, 255),
)


def encode(record: Delivery) -> bytes:
    if record.kind == wire.SEND:
        return wire.encode_send(record.fds[0], record.data)
    return wire.encode_push(record.fds[0], record.data, record.opcode, record.flags)


@given(st.lists(st.one_of(sends, pushes), min_size=1, max_size=20))
def test_a_batch_of_sends_and_pushes_decodes_to_the_same_records_in_order(records):
    batch = bytes([wire.VERSION]) + b"".join(encode(record) for record in records)
    assert wire.decode_batch(batch) == records


@given(
    payloads,
    st.lists(st.tuples(st.text(min_size=1, max_size=20), fds), max_size=5),
    st.lists(fds, max_size=50),
)
def test_a_broadcast_head_plus_the_scripts_member_list_decodes(data, exclude, members):
    head = wire.encode_broadcast_head(data, wire.BINARY, 1, exclude)
    tail = ",".join(map(str, members)).encode()
    [record] = wire.decode_batch(head + tail)
    assert record == Delivery(wire.BROADCAST, tuple(members), data, wire.BINARY, 1, tuple(exclude))


def test_a_batch_after_sends_may_end_in_a_broadcast():
    batch = bytes([wire.VERSION]) + wire.encode_send(3, b"x") + wire.encode_broadcast_head(b"y", 1, 1, [])[1:] + b"4"
    assert [record.kind for record in wire.decode_batch(batch)] == [wire.SEND, wire.BROADCAST]


@pytest.mark.parametrize(
    "batch",
    [
        b"",
        b"not a batch",
        bytes([wire.VERSION, 9]),  # unknown kind
        bytes([wire.VERSION]) + wire.encode_send(1, b"abcdef")[:-2],  # truncated data
        bytes([wire.VERSION]) + wire.encode_push(1, b"abc", 1, 1)[:5],  # truncated header
        wire.encode_broadcast_head(b"x", 1, 1, []) + b"1,two,3",  # a member that is no fd
    ],
    ids=["empty", "foreign", "unknown-kind", "truncated-data", "truncated-header", "bad-members"],
)
def test_a_malformed_batch_is_refused_whole(batch):
    with pytest.raises(wire.WireError):
        wire.decode_batch(batch)


@given(st.text(max_size=10), st.text(max_size=10), st.text(max_size=10), st.text(max_size=10))
def test_group_keys_of_different_pairs_differ(group1, node1, group2, node2):
    if (group1, node1) != (group2, node2):
        assert Keys.group_members(group1, node1) != Keys.group_members(group2, node2)


@given(st.text(max_size=10), fds, st.text(max_size=10), fds)
def test_session_keys_of_different_sessions_differ(node1, fd1, node2, fd2):
    if (node1, fd1) != (node2, fd2):
        assert Keys.session_groups(node1, fd1) != Keys.session_groups(node2, fd2)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), payloads)
def test_a_result_round_trips(task_id, flags, payload):
    assert wire.decode_result(wire.encode_result(task_id, flags, payload)) == (task_id, flags, payload)


def test_a_short_result_is_refused():
    with pytest.raises(wire.WireError):
        wire.decode_result(b"\0\0\0")


def test_members_pair_up_the_scripts_flat_reply():
    assert wire.members_from_reply([b"a", b"1", b"b:2", b"30"]) == [("a", 1), ("b:2", 30)]
