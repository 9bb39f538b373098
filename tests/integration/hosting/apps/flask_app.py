"""A Flask application: JSON, path and query parameters, a file upload, a streamed response, a redirect, an
error handler and an exception that becomes a 500."""

from __future__ import annotations

import hashlib
import os

from flask import Flask, Response, jsonify, redirect, request, stream_with_context

app = Flask(__name__)


@app.get("/")
def root():
    return jsonify(framework="flask", pid=os.getpid())


@app.get("/items/<int:item_id>")
def item(item_id: int):
    return jsonify(item_id=item_id, q=request.args.get("q"), scheme=request.scheme, remote=request.remote_addr)


@app.post("/items")
def create_item():
    payload = request.get_json()
    return jsonify(created=payload, double=payload["price"] * 2), 201


@app.post("/upload")
def upload():
    file = request.files["file"]
    data = file.read()
    return jsonify(filename=file.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   note=request.form["note"])  # fmt: skip


@app.get("/stream")
def stream():
    def lines():
        for i in range(4):
            yield f"row {i} of {request.args.get('name', 'x')}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.get("/old")
def old():
    return redirect("/items/1?q=moved", code=301)


@app.get("/boom")
def boom():
    raise RuntimeError("flask view failed on purpose")


@app.errorhandler(404)
def not_found(error):
    return jsonify(error="nothing here"), 404
