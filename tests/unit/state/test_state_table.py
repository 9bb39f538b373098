"""Table in one process: sizing as Swoole, the operations, the ValueErrors, a full table, iteration.

The cross-process behaviour (contention, torn rows, a holder killed) is in tests/integration/state.
"""

from __future__ import annotations

import logging
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyswoole import ServerError, Table


def make_table(size: int = 1024, conflict_proportion: float = 0.2, name_size: int = 16) -> Table:
    table = Table(size, conflict_proportion)
    table.column("name", Table.TYPE_STRING, name_size)
    table.column("score", Table.TYPE_INT)
    table.column("ratio", Table.TYPE_FLOAT)
    table.create()
    return table


# -- sizing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("asked", "buckets"), [(1, 64), (64, 64), (65, 128), (1000, 1024), (1024, 1024)])
def test_size_is_rounded_up_to_a_power_of_two_of_at_least_64(asked, buckets):
    assert Table(asked).size == buckets


@pytest.mark.parametrize(("proportion", "conflict_rows"), [(0.2, 204), (0.5, 512), (0.01, 204), (3.0, 1024)])
def test_the_conflict_area_is_size_times_the_proportion_clamped_to_0_2_and_1(proportion, conflict_rows):
    table = Table(1024, proportion)
    table.create()
    assert table.stats()["total_slice_num"] == conflict_rows
    assert table.stats()["available_slice_num"] == conflict_rows


def test_memory_size_counts_every_row_with_its_columns_before_and_after_create():
    small, large = Table(1024), Table(1024)
    small.column("n", Table.TYPE_INT)
    large.column("n", Table.TYPE_INT)
    large.column("s", Table.TYPE_STRING, 1000)
    before = large.memory_size
    large.create()
    assert large.memory_size == before
    assert large.memory_size - small.memory_size >= (1024 + 204) * 1000


@pytest.mark.parametrize("size", [0, -5])
def test_a_size_below_1_is_a_value_error(size):
    with pytest.raises(ValueError, match="size"):
        Table(size)


# -- life cycle -----------------------------------------------------------------------------------


def test_using_a_table_before_create_raises_server_error_saying_so():
    table = Table(64)
    table.column("n", Table.TYPE_INT)
    for use in (lambda: table.get("k"), lambda: table.set("k", {}), lambda: len(table), lambda: list(table)):
        with pytest.raises(ServerError, match="create"):
            use()


def test_a_column_after_create_and_a_second_create_raise_server_error():
    table = make_table()
    with pytest.raises(ServerError, match="late"):
        table.column("late", Table.TYPE_INT)
    with pytest.raises(ServerError, match="already created"):
        table.create()


# -- operations -----------------------------------------------------------------------------------


def test_set_then_get_returns_every_column_with_its_type():
    table = make_table()
    assert table.set("alice", {"name": "Alice", "score": -7, "ratio": 0.25}) is True
    assert table.get("alice") == {"name": "Alice", "score": -7, "ratio": 0.25}
    assert table.get("alice", "score") == -7
    assert table.get("alice", field="name") == "Alice"


def test_a_new_row_starts_at_zero_and_an_update_keeps_the_columns_it_does_not_name():
    table = make_table()
    table.set("k", {"score": 3})
    assert table.get("k") == {"name": "", "score": 3, "ratio": 0.0}
    table.set("k", {"name": "x"})
    assert table.get("k") == {"name": "x", "score": 3, "ratio": 0.0}


def test_get_of_an_absent_key_is_none_and_exists_and_in_say_false():
    table = make_table()
    table.set("here", {})
    assert table.get("absent") is None
    assert table.get("absent", "score") is None
    assert table.exists("here") and "here" in table
    assert not table.exists("absent") and "absent" not in table


def test_a_float_column_takes_an_int_and_an_int_column_takes_a_bool():
    table = make_table()
    table.set("k", {"ratio": 3, "score": True})
    assert table.get("k") == {"name": "", "score": 1, "ratio": 3.0}


def test_string_size_counts_utf8_bytes():
    table = make_table(name_size=4)
    assert table.set("k", {"name": "éé"}) is True  # 4 bytes
    assert table.get("k", "name") == "éé"
    with pytest.raises(ValueError, match="'name'.*6 bytes"):
        table.set("k", {"name": "ééé"})


def test_a_key_of_63_utf8_bytes_is_accepted_and_64_is_a_value_error():
    table = make_table()
    assert table.set("k" * 63, {"score": 1})
    assert table.get("k" * 63, "score") == 1
    with pytest.raises(ValueError, match="key"):
        table.set("k" * 64, {})
    with pytest.raises(ValueError, match="key"):
        table.get("é" * 32)


def test_keys_are_exact_bytes_a_prefix_is_another_key():
    table = make_table()
    table.set("ab", {"score": 1})
    table.set("a", {"score": 2})
    assert table.get("ab", "score") == 1 and table.get("a", "score") == 2


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda t: t.set("k", {"nope": 1}), "nope"),
        (lambda t: t.get("k", "nope"), "nope"),
        (lambda t: t.incr("k", "nope"), "nope"),
        (lambda t: t.set("k", {"score": "1"}), "score"),
        (lambda t: t.set("k", {"score": 1.5}), "score"),
        (lambda t: t.set("k", {"score": 2**63}), "score"),
        (lambda t: t.set("k", {"ratio": "x"}), "ratio"),
        (lambda t: t.set("k", {"ratio": 10**400}), "ratio"),
        (lambda t: t.set("k", {"name": b"bytes"}), "name"),
        (lambda t: t.set("k", [("score", 1)]), "value"),
        (lambda t: t.set(5, {}), "key"),
        (lambda t: t.incr("k", "name"), "name"),
        (lambda t: t.incr("k", "score", 0.5), "score"),
        (lambda t: t.decr("k", "ratio", "1"), "ratio"),
    ],
)
def test_every_wrong_argument_is_a_value_error_naming_what_is_wrong(call, named):
    table = make_table()
    with pytest.raises(ValueError, match=named):
        call(table)
    assert table.count() == 0  # nothing was written


@pytest.mark.parametrize(
    ("name", "type_", "size", "named"),
    [
        ("s", Table.TYPE_STRING, 0, "s"),
        ("t", 9, 0, "t"),
        ("", Table.TYPE_INT, 0, "name"),
        ("dup", Table.TYPE_INT, 0, "dup"),
    ],
)
def test_a_wrong_column_declaration_is_a_value_error(name, type_, size, named):
    table = Table(64)
    table.column("dup", Table.TYPE_FLOAT)
    with pytest.raises(ValueError, match=named):
        table.column(name, type_, size)


def test_incr_and_decr_create_the_row_at_zero_and_return_the_new_value():
    table = make_table()
    assert table.incr("k", "score") == 1
    assert table.incr("k", "score", 10) == 11
    assert table.decr("k", "score", by=20) == -9
    assert table.incr("k", "ratio", 0.5) == 0.5
    assert table.decr("k", "ratio") == -0.5
    assert table.get("k") == {"name": "", "score": -9, "ratio": -0.5}
    assert table.count() == 1


def test_incr_of_an_int_column_wraps_at_64_bits():
    table = make_table()
    table.set("k", {"score": 2**63 - 1})
    assert table.incr("k", "score") == -(2**63)


def test_delete_removes_the_row_once():
    table = make_table()
    table.set("k", {"score": 1})
    assert table.delete("k") is True
    assert table.delete("k") is False
    assert table.get("k") is None
    assert len(table) == 0


def test_stats_has_swooles_keys_and_counts_inserts_updates_deletes():
    table = make_table()
    table.set("a", {})
    table.set("a", {"score": 1})
    table.incr("b", "score")
    table.delete("a")
    stats = table.stats()
    assert set(stats) == {
        "num", "conflict_count", "conflict_max_level", "insert_count", "update_count", "delete_count",
        "available_slice_num", "total_slice_num",
    }  # fmt: skip
    assert (stats["num"], stats["insert_count"], stats["update_count"], stats["delete_count"]) == (1, 2, 1, 1)


# -- a full table ---------------------------------------------------------------------------------


def fill(table: Table) -> list[str]:
    """Insert keys until set() refuses one; the keys that went in."""
    stored = []
    for i in range(10 * (table.size + table.stats()["total_slice_num"])):
        key = f"key-{i}"
        if not table.set(key, {"score": i}):
            return stored
        stored.append(key)
    raise AssertionError("the table never filled up")


def test_a_full_table_refuses_new_keys_with_false_and_logs_once(caplog):
    table = make_table(64)
    with caplog.at_level(logging.WARNING, logger="pyswoole"):
        stored = fill(table)
        assert table.set("one more", {}) is False
        assert table.incr("and another", "score") is False
    assert len(stored) == table.count() <= 64 + 12
    assert table.stats()["available_slice_num"] == 0
    assert len([r for r in caplog.records if "full" in r.getMessage()]) == 1
    # Rows already there are still written and read.
    assert table.set(stored[0], {"score": -1}) is True
    assert table.incr(stored[1], "score") == 2


def test_deleting_every_row_of_a_full_table_makes_room_for_all_of_them_again():
    table = make_table(64)
    stored = fill(table)
    for key in stored:
        assert table.delete(key)
    assert table.stats()["available_slice_num"] == 12
    assert all(table.set(key, {"score": 1}) for key in stored)
    assert sorted(key for key, _ in table) == sorted(stored)


# -- iteration and a model ------------------------------------------------------------------------


def test_iteration_yields_each_row_once_with_its_values_including_conflict_chains():
    table = make_table(64, 1.0)
    expected = {f"k{i}": {"name": str(i), "score": i, "ratio": i / 2} for i in range(100)}
    for key, row in expected.items():
        assert table.set(key, row)
    assert table.stats()["conflict_count"] > 0
    seen = list(table)
    assert len(seen) == len(expected)
    assert dict(seen) == expected


KEYS = st.text(alphabet=string.ascii_lowercase + "é", min_size=0, max_size=4)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.integers(-(2**63), 2**63 - 1), st.text(max_size=3)),
        st.tuples(st.just("incr"), KEYS, st.integers(-1000, 1000)),
        st.tuples(st.just("delete"), KEYS),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_a_table_behaves_as_a_dict_of_rows(ops):
    # 64 buckets and 64 conflict rows hold any 65 keys, however they collide: the model never overflows it.
    table = Table(64, 1.0)
    table.column("n", Table.TYPE_INT)
    table.column("s", Table.TYPE_STRING, 12)
    table.create()
    model: dict[str, dict[str, int | str]] = {}
    for op in ops:
        if len(model) >= 65 and op[1] not in model and op[0] != "delete":
            continue
        if op[0] == "set":
            _, key, n, s = op
            assert table.set(key, {"n": n, "s": s}) is True
            model[key] = {"n": n, "s": s}
        elif op[0] == "incr":
            _, key, by = op
            row = model.setdefault(key, {"n": 0, "s": ""})
            row["n"] = (int(row["n"]) + by + 2**63) % 2**64 - 2**63  # an int column wraps at 64 bits
            assert table.incr(key, "n", by) == row["n"]
        else:
            _, key = op
            assert table.delete(key) is (model.pop(key, None) is not None)
    assert len(table) == len(model)
    assert dict(table) == model
    for key, row in model.items():
        assert table.get(key) == row
    assert table.stats()["num"] == len(model)
    for key in model:
        assert table.delete(key)
    assert table.stats()["available_slice_num"] == 64  # every conflict row went back to the free list
