"""The pyswoole HTTP demo: an HttpServer on http://127.0.0.1:9501/.

- ``/`` (``index.html``) and ``/style.css`` are static files from ``http_public/``: in PROCESS mode the reactor
  threads answer them, no worker is involved.
- ``/hello?name=you``: a plain Request callback.
- ``/form``: a form with a file upload; its POST shows the fields and the uploads (their temp files are removed
  once the callback is over).
- ``/countdown``: a chunked response, written a line at a time by a coroutine; the worker serves others meanwhile.
- ``/stats``: the server's counters, as JSON.

Try ``curl -N http://127.0.0.1:9501/countdown`` or ``curl -F note=hi -F file=@README.md
http://127.0.0.1:9501/form``. Ctrl-C stops it.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from pyswoole import HttpServer, Mode, Request, Response

PUBLIC = Path(__file__).resolve().parent / "http_public"

server = HttpServer(os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "9501")), Mode.PROCESS)
server.set(
    worker_num=int(os.environ.get("WORKERS", "2")),
    document_root=str(PUBLIC),
    enable_static_handler=True,
    http_index_files=["index.html"],
    package_max_length=16 * 1024 * 1024,  # the largest request, uploads included
)

FORM = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Upload</title><link rel="stylesheet" href="/style.css"></head>
<body><h1>A form with an upload</h1>
<form method="post" action="/form" enctype="multipart/form-data">
  <p><label>Note <input name="note" value="hello"></label></p>
  <p><input type="file" name="file"></p>
  <p><button>Send</button></p>
</form>{result}</body></html>
"""


def hello(request: Request, response: Response) -> None:
    name = (request.get or {}).get("name", "world")
    response.header("Content-Type", "text/plain; charset=utf-8")
    response.end(f"hello {name}\n")


def form(request: Request, response: Response) -> None:
    result = ""
    if request.get_method() == "POST":
        uploads = {
            field: {"name": upload["name"], "type": upload["type"], "size": upload["size"]}
            for field, upload in (request.files or {}).items()
        }
        shown = json.dumps({"fields": request.post, "uploads": uploads}, indent=2)
        result = f"<h2>Received</h2><pre>{html.escape(shown)}</pre>"
    response.header("Content-Type", "text/html; charset=utf-8")
    response.end(FORM.format(result=result))


async def countdown(request: Request, response: Response) -> None:
    response.header("Content-Type", "text/plain; charset=utf-8")
    for left in range(3, 0, -1):
        if not response.write(f"{left}...\n"):
            return  # the client went away
        await asyncio.sleep(0.3)
    response.end("liftoff\n")


def stats(request: Request, response: Response) -> None:
    response.header("Content-Type", "application/json")
    response.end(json.dumps(server.stats(), indent=2, default=str))


ROUTES: dict[str, Callable[[Request, Response], Awaitable[None] | None]] = {
    "/hello": hello,
    "/form": form,
    "/countdown": countdown,
    "/stats": stats,
}


@server.on("Start")
def on_start(server: HttpServer) -> None:
    print(f"pyswoole HTTP demo: open http://{server.host}:{server.port}/", flush=True)


@server.on("Request")
def on_request(request: Request, response: Response) -> Awaitable[None] | None:
    route = ROUTES.get(request.server["path_info"])
    if route is None:
        response.status(404)
        response.end("not found\n")
        return None
    return route(request, response)  # a coroutine (countdown) is run by the worker's loop


if __name__ == "__main__":
    server.start()
