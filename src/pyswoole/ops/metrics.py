"""The snapshot as Prometheus text (exposition format 0.0.4), what ``GET /metrics`` of the admin server answers.

Invariants: every family has one ``# HELP`` and one ``# TYPE`` line and its samples right after them; counters
end in ``_total``, gauges do not; a family whose value the snapshot lacks is left out rather than reported as 0
(a scrape must never show a counter going back to 0 because a field was missing).

The series, all prefixed ``pyswoole_``:

=================================  =======  ==============================================================
name                               type     from the snapshot
=================================  =======  ==============================================================
``info``                           gauge    1, labels ``mode``, ``master_pid``, ``manager_pid``
``start_time_seconds``             gauge    ``server.start_time``
``connections``                    gauge    ``server.connection_num``
``accepts_total``                  counter  ``server.accept_count``
``closes_total``                   counter  ``server.close_count``
``aborts_total``                   counter  ``server.abort_count``
``requests_total``                 counter  ``server.request_count``
``responses_total``                counter  ``server.response_count``
``dispatches_total``               counter  ``server.dispatch_count``
``received_bytes_total``           counter  ``server.total_recv_bytes``
``sent_bytes_total``               counter  ``server.total_send_bytes``
``tasks_total``                    counter  ``server.task_count``
``tasking``                        gauge    ``server.tasking_num`` (tasks dispatched and not yet started)
``session_round``                  gauge    ``server.session_round``
``pipe_packet_msg_id``             gauge    ``server.pipe_packet_msg_id``
``workers``                        gauge    ``server.worker_num``/``task_worker_num``/``user_worker_num``, label
                                            ``type``
``idle_workers``                   gauge    ``server.idle_worker_num``/``task_idle_worker_num``, label ``type``
``worker_requests_total``          counter  per worker id (labels ``worker``, ``type``): ``requests``
``worker_dispatches_total``        counter  per worker: ``dispatch``
``worker_rss_bytes``               gauge    per worker: ``rss_bytes``
``worker_connections``             gauge    per worker: ``connections``
``worker_start_time_seconds``      gauge    per worker: ``started``
``worker_pid``                     gauge    per worker: ``pid``
``worker_status``                  gauge    per worker and ``status`` (busy, idle, exit): 1 for the current one
``worker_restarts_total``          counter  ``restarts``, label ``cause``
``reloads_total``                  counter  ``reloads``
``dropped_pipe_messages_total``    counter  ``dropped_pipe_messages``
``http_responses_total``           counter  ``http``, label ``class`` (1xx ... 5xx); only with an HTTP port
=================================  =======  ==============================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "pyswoole_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WORKER_STATUSES = ("busy", "idle", "exit")

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float]

# (name, type, help, key in snapshot["server"])
_SERVER_SERIES = (
    ("start_time_seconds", "gauge", "When the server started, in seconds since the epoch.", "start_time"),
    ("connections", "gauge", "Connections open now.", "connection_num"),
    ("accepts_total", "counter", "Connections accepted.", "accept_count"),
    ("closes_total", "counter", "Connections closed.", "close_count"),
    ("aborts_total", "counter", "Connections closed on an error.", "abort_count"),
    ("requests_total", "counter", "Requests (packages) received by the event workers.", "request_count"),
    ("responses_total", "counter", "Responses sent by the event workers.", "response_count"),
    ("dispatches_total", "counter", "Packages dispatched to the event workers.", "dispatch_count"),
    ("received_bytes_total", "counter", "Bytes received from clients.", "total_recv_bytes"),
    ("sent_bytes_total", "counter", "Bytes sent to clients.", "total_send_bytes"),
    ("tasks_total", "counter", "Tasks dispatched to the task workers.", "task_count"),
    ("tasking", "gauge", "Tasks dispatched and not yet started by a task worker.", "tasking_num"),
    ("session_round", "gauge", "The session id counter.", "session_round"),
    ("pipe_packet_msg_id", "gauge", "The last message id of a chunked pipe message.", "pipe_packet_msg_id"),
)
_WORKER_COUNTS = (("worker", "worker_num"), ("task_worker", "task_worker_num"), ("user", "user_worker_num"))
_IDLE_COUNTS = (("worker", "idle_worker_num"), ("task_worker", "task_idle_worker_num"))
# (name, type, help, key in each snapshot["workers"] item)
_WORKER_SERIES = (
    (
        "worker_requests_total",
        "counter",
        "Requests (tasks) handled under this worker id, across its restarts.",
        "requests",
    ),
    (
        "worker_dispatches_total",
        "counter",
        "Packages (tasks) dispatched to this worker id, across its restarts.",
        "dispatch",
    ),
    ("worker_rss_bytes", "gauge", "Resident memory of this worker process.", "rss_bytes"),
    ("worker_connections", "gauge", "Connections this worker process holds.", "connections"),
    ("worker_start_time_seconds", "gauge", "When this worker process started, in seconds since the epoch.", "started"),
    ("worker_pid", "gauge", "The process id of this worker.", "pid"),
)


def render_metrics(snapshot: Mapping[str, Any]) -> str:
    """The snapshot as Prometheus text format 0.0.4, one family after another, ending in a newline."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        rows = list(samples)
        if not rows:
            return
        lines.append(f"# HELP {PREFIX}{name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {PREFIX}{name} {kind}")
        lines.extend(f"{PREFIX}{name}{_labels(labels)} {_value(value)}" for labels, value in rows)

    if "mode" in snapshot:
        info = (
            ("mode", str(snapshot["mode"])),
            ("master_pid", str(snapshot.get("master_pid", ""))),
            ("manager_pid", str(snapshot.get("manager_pid", ""))),
        )
        family("info", "gauge", "The server's mode and process ids; always 1.", [(info, 1)])
    server: Mapping[str, Any] = snapshot.get("server", {})
    for name, kind, help_text, key in _SERVER_SERIES:
        family(name, kind, help_text, [((), server[key])] if key in server else [])
    family(
        "workers",
        "gauge",
        "Processes configured, by type.",
        [((("type", kind),), server[key]) for kind, key in _WORKER_COUNTS if key in server],
    )
    family(
        "idle_workers",
        "gauge",
        "Processes idle now, by type.",
        [((("type", kind),), server[key]) for kind, key in _IDLE_COUNTS if key in server],
    )

    workers: list[Mapping[str, Any]] = snapshot.get("workers", [])
    for name, kind, help_text, key in _WORKER_SERIES:
        family(name, kind, help_text, [(_worker_labels(worker), worker[key]) for worker in workers if key in worker])
    family(
        "worker_status",
        "gauge",
        "1 for the status the worker is in now (busy, idle, exit), 0 for the others.",
        [
            (_worker_labels(worker) + (("status", status),), int(worker["status"] == status))
            for worker in workers
            if "status" in worker
            for status in WORKER_STATUSES
        ],
    )

    restarts: Mapping[str, Any] = snapshot.get("restarts", {})
    family(
        "worker_restarts_total",
        "counter",
        "Worker processes restarted, by cause.",
        [((("cause", cause),), count) for cause, count in restarts.items()],
    )
    if "reloads" in snapshot:
        family("reloads_total", "counter", "Reloads of the workers.", [((), snapshot["reloads"])])
    if "dropped_pipe_messages" in snapshot:
        family(
            "dropped_pipe_messages_total",
            "counter",
            "Pipe messages refused because their reader was behind.",
            [((), snapshot["dropped_pipe_messages"])],
        )
    http: Mapping[str, Any] = snapshot.get("http", {})
    family(
        "http_responses_total",
        "counter",
        "HTTP responses sent, by status class.",
        [((("class", status_class),), count) for status_class, count in http.items()],
    )
    return "\n".join(lines) + "\n"


def _worker_labels(worker: Mapping[str, Any]) -> Labels:
    return (("worker", str(worker.get("id", ""))), ("type", str(worker.get("type", ""))))


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label(value)}"' for name, value in labels) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
