"""render_metrics: read back with prometheus_client's own parser, as Prometheus would scrape it."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from pyswoole.ops.metrics import render_metrics


def parse(text: str) -> dict[str, Any]:
    """family name -> family, as the Prometheus client library reads the text."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Any], family: str, **labels: str) -> float:
    matches = [sample.value for sample in families[family].samples if sample.labels == labels]
    assert len(matches) == 1, (family, labels, families[family].samples)
    return float(matches[0])


def test_server_counters_are_counters_ending_in_total(snapshot: dict[str, Any]) -> None:
    families = parse(render_metrics(snapshot))
    # The parser names a counter's family without its _total suffix.
    assert families["pyswoole_accepts"].type == "counter"
    assert families["pyswoole_accepts"].samples[0].name == "pyswoole_accepts_total"
    assert value(families, "pyswoole_accepts") == 120
    assert value(families, "pyswoole_requests") == 5000
    assert value(families, "pyswoole_received_bytes") == 640_000
    assert value(families, "pyswoole_tasks") == 40


def test_server_gauges_carry_no_total_suffix(snapshot: dict[str, Any]) -> None:
    families = parse(render_metrics(snapshot))
    assert families["pyswoole_connections"].type == "gauge"
    assert value(families, "pyswoole_connections") == 7
    assert value(families, "pyswoole_tasking") == 3
    assert value(families, "pyswoole_start_time_seconds") == 1_800_000_000
    assert value(families, "pyswoole_workers", type="task_worker") == 1
    assert value(families, "pyswoole_idle_workers", type="worker") == 1


def test_every_sample_line_has_help_and_type_before_it(snapshot: dict[str, Any]) -> None:
    text = render_metrics(snapshot)
    declared: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            declared.add(line.split()[2])
        elif line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert name in declared
            assert name.endswith("_total") == (kind == "counter")
        else:
            assert re.match(r"[a-z_]+", line)[0] in declared  # type: ignore[index]
    assert text.endswith("\n")
    assert all(name.startswith("pyswoole_") for name in declared)


def test_per_worker_series_are_labelled_by_worker_and_type(snapshot: dict[str, Any]) -> None:
    families = parse(render_metrics(snapshot))
    assert value(families, "pyswoole_worker_requests", worker="0", type="worker") == 3000
    assert value(families, "pyswoole_worker_requests", worker="2", type="task_worker") == 40
    assert value(families, "pyswoole_worker_rss_bytes", worker="1", type="worker") == 29_360_128
    assert value(families, "pyswoole_worker_connections", worker="0", type="worker") == 4
    assert value(families, "pyswoole_worker_pid", worker="3", type="user") == 4105


def test_worker_status_is_one_for_the_current_status_only(snapshot: dict[str, Any]) -> None:
    families = parse(render_metrics(snapshot))
    assert value(families, "pyswoole_worker_status", worker="0", type="worker", status="busy") == 1
    assert value(families, "pyswoole_worker_status", worker="0", type="worker", status="idle") == 0
    assert value(families, "pyswoole_worker_status", worker="3", type="user", status="exit") == 1
    assert len(families["pyswoole_worker_status"].samples) == 4 * 3


def test_restarts_reloads_drops_and_http_classes(snapshot: dict[str, Any]) -> None:
    families = parse(render_metrics(snapshot))
    assert value(families, "pyswoole_worker_restarts", cause="max_request") == 4
    assert value(families, "pyswoole_worker_restarts", cause="crash") == 1
    assert value(families, "pyswoole_reloads") == 1
    assert value(families, "pyswoole_dropped_pipe_messages") == 5
    assert value(families, "pyswoole_http_responses", **{"class": "2xx"}) == 4800
    assert value(families, "pyswoole_http_responses", **{"class": "5xx"}) == 10


def test_info_carries_mode_and_pids(snapshot: dict[str, Any]) -> None:
    families = parse(render_metrics(snapshot))
    assert value(families, "pyswoole_info", mode="PROCESS", master_pid="4100", manager_pid="4101") == 1


def test_no_http_family_without_an_http_port(snapshot: dict[str, Any]) -> None:
    del snapshot["http"]
    assert "http_responses" not in render_metrics(snapshot)


def test_a_missing_field_leaves_its_family_out_instead_of_reporting_zero(snapshot: dict[str, Any]) -> None:
    del snapshot["server"]["accept_count"]
    families = parse(render_metrics(snapshot))
    assert "pyswoole_accepts" not in families
    assert "pyswoole_closes" in families


def test_an_empty_snapshot_renders_to_valid_text() -> None:
    assert parse(render_metrics({})) == {}


def test_float_values_keep_their_fraction(snapshot: dict[str, Any]) -> None:
    families = parse(render_metrics(snapshot))
    assert value(families, "pyswoole_worker_start_time_seconds", worker="0", type="worker") == 1_800_000_001.25


@given(st.text())
def test_any_label_value_survives_escaping(label: str) -> None:
    snapshot = {"workers": [{"id": 0, "type": label, "requests": 1}]}
    families = parse(render_metrics(snapshot))
    assert families["pyswoole_worker_requests"].samples[0].labels == {"worker": "0", "type": label}
