"""Settings: names, types, ranges, Swoole's clamps, size strings, and the effective settings at start."""

from __future__ import annotations

import logging
import resource

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyswoole import settings
from pyswoole.constants import Mode
from pyswoole.settings import PACKAGE_LENGTH_TYPES, PORT_KEYS, normalize, parse_size, resolve


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # "Once per process" state must not leak between tests; warnings are what several tests assert on.
    monkeypatch.setattr(settings, "_warned_ignored", set())
    caplog.set_level(logging.WARNING, logger="pyswoole")


@pytest.fixture
def open_files_limit(monkeypatch: pytest.MonkeyPatch):
    def set_limit(soft: int) -> None:
        monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, resource.RLIM_INFINITY))

    return set_limit


def warnings_about(caplog: pytest.LogCaptureFixture, key: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith(key)]


# ---- parse_size --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2M", 2 * 2**20),
        ("64K", 65536),
        ("64k", 65536),
        ("1G", 2**30),
        ("512", 512),
        ("2MB", 2 * 2**20),
        ("8 mb", 8 * 2**20),
        ("100b", 100),
        (" 1.5M ", 1572864),
    ],
)
def test_parse_size_reads_binary_units_case_insensitively(text: str, size: int) -> None:
    assert parse_size("package_max_length", text) == size


def test_parse_size_passes_ints_through() -> None:
    assert parse_size("socket_buffer_size", -1) == -1


@pytest.mark.parametrize("text", ["abc", "", "2X", "M", "-1", "2MM", "1e6", "0x10"])
def test_parse_size_rejects_what_is_not_a_size_naming_the_key(text: str) -> None:
    with pytest.raises(ValueError, match=r"^package_max_length: cannot parse .* as a size$"):
        parse_size("package_max_length", text)


@pytest.mark.parametrize("value", [True, 2.0, None, b"2M"])
def test_parse_size_rejects_other_types(value: object) -> None:
    with pytest.raises(ValueError, match="^buffer_output_size: expected an int or a size string"):
        parse_size("buffer_output_size", value)  # type: ignore[arg-type]


def test_parse_size_rejects_a_fraction_of_a_byte() -> None:
    with pytest.raises(ValueError, match="not a whole number of bytes"):
        parse_size("package_max_length", "1.1K")


@given(
    number=st.integers(min_value=0, max_value=2**40),
    unit=st.sampled_from([("", 1), ("k", 2**10), ("K", 2**10), ("m", 2**20), ("M", 2**20), ("g", 2**30)]),
    suffix=st.sampled_from(["", "b", "B"]),
)
def test_parse_size_round_trips_every_number_and_unit(number: int, unit: tuple[str, int], suffix: str) -> None:
    letters, multiplier = unit
    assert parse_size("max_worker_rss", f"{number}{letters}{suffix}") == number * multiplier


# ---- normalize: names --------------------------------------------------------------------------------------


def test_a_typo_is_rejected_with_the_closest_valid_key() -> None:
    with pytest.raises(ValueError, match=r"^unknown setting 'worker_nmu' \(did you mean 'worker_num'\?\)$"):
        normalize({"worker_nmu": 4})


def test_a_key_like_nothing_known_is_rejected_without_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"^unknown setting 'zzzzzz'$"):
        normalize({"zzzzzz": 1})


@pytest.mark.parametrize(
    ("alias", "canonical", "value", "stored"),
    [
        ("max_conn", "max_connection", 1000, 1000),
        ("output_buffer_size", "buffer_output_size", "4M", 4 * 2**20),
        ("input_buffer_size", "buffer_input_size", "1M", 2**20),
        ("package_body_start", "package_body_offset", 8, 8),
        ("task_use_object", "task_object", True, True),
    ],
)
def test_aliases_are_stored_under_the_canonical_name(alias: str, canonical: str, value: object, stored: object) -> None:
    assert normalize({alias: value}) == {canonical: stored}


def test_an_alias_and_its_canonical_name_together_are_rejected() -> None:
    with pytest.raises(ValueError, match="'max_conn' and 'max_connection' are the same setting"):
        normalize({"max_conn": 10, "max_connection": 20})


def test_php_only_keys_are_kept_and_warned_about_once_per_key(caplog: pytest.LogCaptureFixture) -> None:
    assert normalize({"hook_flags": 123, "max_coroutine": 3000}) == {"hook_flags": 123, "max_coroutine": 3000}
    assert normalize({"hook_flags": 0}) == {"hook_flags": 0}

    assert len(warnings_about(caplog, "hook_flags")) == 1
    assert len(warnings_about(caplog, "max_coroutine")) == 1


def test_enable_coroutine_is_a_real_setting_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert normalize({"enable_coroutine": False}) == {"enable_coroutine": False}
    assert caplog.records == []


# ---- normalize: types --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("worker_num", "4"),
        ("worker_num", 4.0),
        ("worker_num", True),
        ("max_request", None),
        ("daemonize", "yes"),
        ("daemonize", 2),
        ("max_wait_time", "3"),
        ("max_wait_time", float("inf")),
        ("heartbeat_idle_time", 1.5),
        ("log_file", 42),
        ("user", ""),
        ("dispatch_func", "module.function"),
        ("package_length_func", 4),
        ("package_eof", 13),
        ("cpu_affinity_ignore", 0),
        ("ssl_sni_certs", {"example.com": {"ssl_cert_file": "/c.pem"}}),
    ],
)
def test_a_value_of_the_wrong_type_is_rejected_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{key}"):
        normalize({key: value})


def test_bools_accept_zero_and_one() -> None:
    assert normalize({"daemonize": 1, "open_tcp_nodelay": 0}) == {"daemonize": True, "open_tcp_nodelay": False}


def test_seconds_accept_ints_and_floats() -> None:
    assert normalize({"max_wait_time": 0.5, "worker_timeout": 30}) == {"max_wait_time": 0.5, "worker_timeout": 30}


def test_size_settings_accept_size_strings() -> None:
    assert normalize({"package_max_length": "8M", "socket_buffer_size": "64K", "max_worker_rss": "1G"}) == {
        "package_max_length": 8 * 2**20,
        "socket_buffer_size": 65536,
        "max_worker_rss": 2**30,
    }


def test_a_bad_size_string_is_rejected_naming_the_key() -> None:
    with pytest.raises(ValueError, match="^package_max_length: cannot parse 'abc' as a size$"):
        normalize({"package_max_length": "abc"})


def test_paths_accept_path_objects(tmp_path) -> None:
    assert normalize({"log_file": tmp_path / "server.log"}) == {"log_file": str(tmp_path / "server.log")}


# ---- normalize: ranges and choices -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_request", -1),
        ("max_wait_time", -0.5),
        ("max_connection", -1),
        ("dispatch_mode", 0),
        ("dispatch_mode", 11),
        ("task_ipc_mode", 5),
        ("log_rotation", 5),
        ("package_length_offset", 8153),
        ("package_body_offset", 9000),
        ("buffer_output_size", 0),
        ("tcp_keepcount", 128),
        ("task_tmpdir", "tmp/tasks"),
        ("event_loop", "trio"),
        ("package_length_type", "x"),
        ("package_length_type", "NN"),
    ],
)
def test_a_value_out_of_range_is_rejected_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{key}: "):
        normalize({key: value})


@pytest.mark.parametrize(
    ("key", "value", "clamped"),
    [
        ("backlog", 70000, 65535),
        ("backlog", -1, 0),
        ("worker_num", -4, 0),
        ("reactor_num", 70000, 65535),
        ("heartbeat_check_interval", 100000, 65535),
        ("heartbeat_idle_time", -1, 0),
        ("max_connection", 2_000_000, 2**20),
        ("start_session_id", 2**33, 2**32 - 1),
        ("package_length_offset", -3, 0),
        ("package_max_length", "5G", 2**32 - 1),
        ("log_level", 9, 6),
        ("send_timeout", 0.0001, 0.001),
        ("max_idle_time", 0.0002, 0.001),
        ("socket_buffer_size", 2**40, 2**31 - 1),
    ],
)
def test_values_that_swoole_clamps_are_clamped_with_a_warning(
    caplog: pytest.LogCaptureFixture, key: str, value: object, clamped: object
) -> None:
    assert normalize({key: value}) == {key: clamped}
    assert warnings_about(caplog, key)


def test_a_non_positive_socket_buffer_size_means_unlimited() -> None:
    assert normalize({"socket_buffer_size": 0}) == {"socket_buffer_size": 2**31 - 1}


def test_package_eof_is_stored_as_bytes() -> None:
    assert normalize({"package_eof": "\r\n"}) == {"package_eof": b"\r\n"}


@pytest.mark.parametrize(("eof", "message"), [("", "cannot be empty"), (b"123456789", "the maximum is 8")])
def test_package_eof_must_be_one_to_eight_bytes(eof: str | bytes, message: str) -> None:
    with pytest.raises(ValueError, match=f"^package_eof: .*{message}"):
        normalize({"package_eof": eof})


def test_every_pack_code_maps_to_a_struct_format_of_its_size() -> None:
    import struct

    sizes = {
        "c": 1,
        "C": 1,
        "s": 2,
        "S": 2,
        "n": 2,
        "v": 2,
        "i": 4,
        "I": 4,
        "l": 4,
        "L": 4,
        "N": 4,
        "V": 4,
        "q": 8,
        "Q": 8,
        "J": 8,
        "P": 8,
    }
    assert {code: struct.calcsize(fmt) for code, fmt in PACKAGE_LENGTH_TYPES.items()} == sizes
    assert normalize({"package_length_type": "n"}) == {"package_length_type": "n"}


def test_callables_are_stored_as_given() -> None:
    def dispatch(server, fd, type_, data):
        return 0

    assert normalize({"dispatch_func": dispatch}) == {"dispatch_func": dispatch}


def test_normalize_is_idempotent_and_quiet_on_its_own_output(caplog: pytest.LogCaptureFixture) -> None:
    once = normalize({"backlog": 70000, "max_conn": 10, "package_eof": "\n", "package_max_length": "1M"})
    caplog.clear()
    assert normalize(once) == once
    assert caplog.records == []


def test_port_keys_are_the_per_port_settings() -> None:
    assert {"package_eof", "heartbeat_idle_time", "backlog", "ssl_cert_file"} <= PORT_KEYS
    assert not {"worker_num", "heartbeat_check_interval", "dispatch_mode"} & PORT_KEYS


# ---- resolve -----------------------------------------------------------------------------------------------


def test_base_mode_defaults_to_one_worker_that_is_its_own_reactor() -> None:
    effective = resolve({}, Mode.BASE, cpu_count=8)
    assert (effective["worker_num"], effective["reactor_num"]) == (1, 1)


def test_base_mode_reactor_num_follows_worker_num(caplog: pytest.LogCaptureFixture) -> None:
    effective = resolve({"worker_num": 4, "reactor_num": 2}, Mode.BASE, cpu_count=8)
    assert effective["reactor_num"] == 4
    assert warnings_about(caplog, "reactor_num")


@pytest.mark.parametrize(("cpus", "reactors"), [(4, 4), (16, 8)])
def test_process_mode_defaults_to_a_worker_per_cpu_and_at_most_eight_reactors(cpus: int, reactors: int) -> None:
    effective = resolve({}, Mode.PROCESS, cpu_count=cpus)
    assert (effective["worker_num"], effective["reactor_num"]) == (cpus, reactors)


def test_zero_workers_or_reactors_mean_one_per_cpu() -> None:
    effective = resolve({"worker_num": 0, "reactor_num": 0}, Mode.PROCESS, cpu_count=6)
    assert (effective["worker_num"], effective["reactor_num"]) == (6, 6)


def test_reactor_num_is_clamped_to_worker_num_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    effective = resolve({"worker_num": 2, "reactor_num": 4}, Mode.PROCESS, cpu_count=8)
    assert effective["reactor_num"] == 2
    assert warnings_about(caplog, "reactor_num: 4 is above worker_num")


def test_a_default_reactor_num_follows_a_small_worker_num_quietly(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve({"worker_num": 2}, Mode.PROCESS, cpu_count=8)["reactor_num"] == 2
    assert caplog.records == []


def test_reactor_num_is_clamped_to_four_per_cpu(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve({"worker_num": 100, "reactor_num": 50}, Mode.PROCESS, cpu_count=2)["reactor_num"] == 8
    assert warnings_about(caplog, "reactor_num: 50 is above cpu_count*4")


@pytest.mark.parametrize("key", ["worker_num", "task_worker_num"])
def test_worker_counts_are_clamped_to_a_thousand_per_cpu(caplog: pytest.LogCaptureFixture, key: str) -> None:
    assert resolve({key: 5000}, Mode.PROCESS, cpu_count=2)[key] == 2000
    assert warnings_about(caplog, key)


@pytest.mark.parametrize("hook", ["dispatch_func", "package_length_func"])
def test_a_python_dispatch_or_length_function_forces_a_single_reactor_thread(hook: str) -> None:
    effective = resolve({hook: lambda *args: 0}, Mode.PROCESS, cpu_count=8)
    assert effective["single_thread"] is True
    assert effective["reactor_num"] == 1


@pytest.mark.parametrize(
    ("limit_key", "grace_key"), [("max_request", "max_request_grace"), ("task_max_request", "task_max_request_grace")]
)
@pytest.mark.parametrize(("limit", "grace"), [(0, 0), (10, 0), (11, 5), (1000, 500)])
def test_request_grace_defaults_to_half_the_limit_above_ten(
    limit_key: str, grace_key: str, limit: int, grace: int
) -> None:
    assert resolve({limit_key: limit}, Mode.PROCESS, cpu_count=2)[grace_key] == grace


def test_an_explicit_request_grace_is_kept() -> None:
    assert resolve({"max_request": 1000, "max_request_grace": 0}, Mode.BASE, cpu_count=2)["max_request_grace"] == 0


def test_heartbeat_idle_time_defaults_to_twice_the_interval() -> None:
    effective = resolve({"heartbeat_check_interval": 5}, Mode.PROCESS, cpu_count=2)
    assert (effective["heartbeat_check_interval"], effective["heartbeat_idle_time"]) == (5, 10)


@pytest.mark.parametrize(("idle", "interval"), [(10, 5), (3, 1), (2, 1), (1, 1)])
def test_heartbeat_interval_defaults_to_half_the_idle_time(idle: int, interval: int) -> None:
    effective = resolve({"heartbeat_idle_time": idle}, Mode.PROCESS, cpu_count=2)
    assert (effective["heartbeat_check_interval"], effective["heartbeat_idle_time"]) == (interval, idle)


def test_heartbeat_interval_above_half_the_idle_time_is_lowered(caplog: pytest.LogCaptureFixture) -> None:
    effective = resolve({"heartbeat_check_interval": 5, "heartbeat_idle_time": 6}, Mode.PROCESS, cpu_count=2)
    assert effective["heartbeat_check_interval"] == 3
    assert warnings_about(caplog, "heartbeat_check_interval")


def test_no_heartbeat_unless_asked() -> None:
    effective = resolve({}, Mode.PROCESS, cpu_count=2)
    assert (effective["heartbeat_check_interval"], effective["heartbeat_idle_time"]) == (0, 0)


def test_package_max_length_is_raised_to_64k_at_start(caplog: pytest.LogCaptureFixture) -> None:
    assert normalize({"package_max_length": 1024}) == {"package_max_length": 1024}
    assert resolve({"package_max_length": 1024}, Mode.BASE, cpu_count=2)["package_max_length"] == 65536
    assert warnings_about(caplog, "package_max_length")


def test_max_connection_defaults_to_the_open_files_limit_below_100000(open_files_limit) -> None:
    open_files_limit(1024)
    assert resolve({}, Mode.BASE, cpu_count=2)["max_connection"] == 1024
    open_files_limit(1_000_000)
    assert resolve({"max_connection": 0}, Mode.BASE, cpu_count=2)["max_connection"] == 100_000


def test_max_connection_above_the_open_files_limit_is_clamped(
    caplog: pytest.LogCaptureFixture, open_files_limit
) -> None:
    open_files_limit(4096)
    assert resolve({"max_conn": 10_000}, Mode.PROCESS, cpu_count=2)["max_connection"] == 4096
    assert warnings_about(caplog, "max_connection")


def test_resolve_fills_swoole_defaults() -> None:
    effective = resolve({}, Mode.PROCESS, cpu_count=2)
    assert {
        key: effective[key]
        for key in (
            "log_level",
            "max_wait_time",
            "reload_async",
            "dispatch_mode",
            "backlog",
            "socket_buffer_size",
            "buffer_output_size",
            "package_eof",
            "package_length_type",
            "package_length_offset",
            "package_body_offset",
            "package_max_length",
            "task_ipc_mode",
            "task_tmpdir",
            "open_tcp_nodelay",
            "event_loop",
            "task_worker_num",
        )
    } == {
        "log_level": 2,
        "max_wait_time": 3,
        "reload_async": True,
        "dispatch_mode": 2,
        "backlog": 512,
        "socket_buffer_size": 8 * 2**20,
        "buffer_output_size": 2**32 - 1,
        "package_eof": b"\r\n\r\n",
        "package_length_type": "N",
        "package_length_offset": 0,
        "package_body_offset": 4,
        "package_max_length": 2 * 2**20,
        "task_ipc_mode": 1,
        "task_tmpdir": "/tmp",
        "open_tcp_nodelay": True,
        "event_loop": "auto",
        "task_worker_num": 0,
    }
    assert "log_file" not in effective and "ssl_cert_file" not in effective


def test_resolve_does_not_mutate_its_input() -> None:
    given = {"max_conn": 10, "package_max_length": "1K", "cpu_affinity_ignore": [0], "reactor_num": 9}
    snapshot = {**given, "cpu_affinity_ignore": [0]}
    effective = resolve(given, Mode.PROCESS, cpu_count=4)
    assert given == snapshot
    effective["cpu_affinity_ignore"].append(1)
    assert given["cpu_affinity_ignore"] == [0]


def test_resolve_keeps_ignored_php_keys_as_given() -> None:
    assert resolve({"hook_flags": 7}, Mode.BASE, cpu_count=2)["hook_flags"] == 7


def test_resolve_rejects_what_normalize_rejects() -> None:
    with pytest.raises(ValueError, match="did you mean 'backlog'"):
        resolve({"backlgo": 10}, Mode.BASE, cpu_count=2)


def test_eof_split_implies_eof_check() -> None:
    assert resolve({"open_eof_split": True}, Mode.BASE, cpu_count=2)["open_eof_check"] is True


def test_reload_async_stays_on_while_enable_coroutine_is_on(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve({"reload_async": False}, Mode.PROCESS, cpu_count=2)["reload_async"] is True
    assert warnings_about(caplog, "reload_async")
    without_coroutines = resolve({"reload_async": False, "enable_coroutine": False}, Mode.PROCESS, cpu_count=2)
    assert without_coroutines["reload_async"] is False


def test_send_yield_is_turned_off_for_a_dispatch_mode_that_moves_connections(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve({"send_yield": True, "dispatch_mode": 1}, Mode.PROCESS, cpu_count=2)["send_yield"] is False
    assert warnings_about(caplog, "send_yield")
    assert resolve({"send_yield": True, "dispatch_mode": 4}, Mode.PROCESS, cpu_count=2)["send_yield"] is True


def test_dispatch_mode_7_is_accepted_with_a_deprecation_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve({"dispatch_mode": 7}, Mode.PROCESS, cpu_count=2)["dispatch_mode"] == 7
    assert warnings_about(caplog, "dispatch_mode: 7")


def test_task_coroutines_cannot_use_message_queues() -> None:
    with pytest.raises(ValueError, match="^task_enable_coroutine: "):
        resolve({"task_enable_coroutine": True, "task_ipc_mode": 2}, Mode.PROCESS, cpu_count=2)


def test_cpu_affinity_ignore_must_leave_a_cpu() -> None:
    with pytest.raises(ValueError, match="^cpu_affinity_ignore: "):
        resolve({"cpu_affinity_ignore": [0, 1]}, Mode.PROCESS, cpu_count=2)


def test_resolve_uses_the_machine_cpu_count_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings.os, "cpu_count", lambda: 3)
    assert resolve({}, Mode.PROCESS)["worker_num"] == 3
