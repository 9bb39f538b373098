"""A Flask application served by pyswoole.

Serve it (from the repository's root; Flask comes with ``pip install flask``)::

    pyswoole serve flask_app:app --app-dir examples --workers 4

Then ``curl localhost:8000/``, ``curl localhost:8000/greet/ada``, ``curl -F file=@README.md localhost:8000/upload``.

A WSGI application runs in the worker, one request at a time, as under gunicorn's sync workers; in PROCESS mode
(the default) the master reads whole requests and buffers whole responses, so a slow client never holds a worker
and no nginx is needed in front for that. ``pyswoole reload PIDFILE`` (with ``--pid-file PIDFILE``) replaces the
workers with ones running the code as it is on disk, without a failed request.
"""

from __future__ import annotations

import hashlib
import os

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def hello():
    return jsonify(hello="from pyswoole", worker_pid=os.getpid())


@app.get("/greet/<name>")
def greet(name: str):
    return f"Hello, {name}!\n"


@app.post("/upload")
def upload():
    file = request.files["file"]
    data = file.read()
    return jsonify(filename=file.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest())
