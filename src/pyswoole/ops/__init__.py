"""What operators and their tools see of a running server: the standalone blocks of the operations tooling.

Every block works on the *snapshot*, the one JSON-able dict the server publishes every second (to its stats
file and to the admin server): ``{"time", "server": stats(), "master_pid", "manager_pid", "mode", "workers",
"restarts", "reloads", "dropped_pipe_messages", "http"}``.

- :mod:`.metrics`: the snapshot as Prometheus text.
- :mod:`.admin`: the admin endpoint (``/metrics``, ``/stats``, the dashboard page), driven by a select() loop.
- ``dashboard.html``: the self-contained page of live charts that the admin endpoint serves at ``/``.
- :mod:`.systemd`: ``sd_notify``, the watchdog, socket activation.
- :mod:`.jsonlog`: ``log_format="json"``.
- :mod:`.access_log`: the HTTP access log, written by a background thread.
- :mod:`.top`: ``pyswoole top``'s live terminal view.

None of them knows the server's processes: the server builds the snapshot (:func:`pyswoole.runtime.stats.snapshot`)
and calls in.
"""
