"""Loading the application that ``pyswoole serve`` names (``MODULE:ATTR``) where it runs: in each worker.

The process that runs ``pyswoole serve`` never imports the application: it checks the import once in a forked
child (:func:`check_in_child`), which reports the interface or why the import failed and exits, and mounts a
stand-in (:class:`AsgiEntry` or :class:`WsgiEntry`) that imports the application on its first call in each worker.
So every worker, the ones a reload starts included, runs the application's code as it is on disk at that moment
(gunicorn without ``--preload``), and frameworks that set themselves up once per process at import (Django) find a
fresh process.

Invariant: an :class:`ImportedApp` imports at most once per process; when that fails, the traceback is logged
once and every later call raises :class:`LoadError` (the adapters answer 500).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..log import logger
from .mount import interface_of


class LoadError(Exception):
    """The application (or task handler) named on the command line cannot be loaded; the message says why."""


def import_from_string(spec: str) -> Any:
    """The object ``MODULE:ATTR`` names (``ATTR`` may be dotted); :class:`LoadError` with uvicorn's wording."""
    module_name, _, attrs = spec.partition(":")
    if not module_name or not attrs:
        raise LoadError(f'Import string "{spec}" must be in format "<module>:<attribute>".')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise  # a module the application imports is missing: the traceback says which
        raise LoadError(f'Could not import module "{module_name}".') from None
    instance: Any = module
    try:
        for attr in attrs.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise LoadError(f'Attribute "{attrs}" not found in module "{module_name}".') from None
    return instance


def load_app(spec: str, factory: bool) -> Any:
    """The application: the imported object, or what it returns when it is a factory (``--factory``)."""
    app = import_from_string(spec)
    if factory:
        if not callable(app):
            raise LoadError(f'"{spec}" is not callable, so it cannot be an application factory (--factory).')
        app = app()
    if not callable(app):
        raise LoadError(f'"{spec}" is not callable ({type(app).__name__}), so it is not an application.')
    return app


def check_in_child(spec: str, factory: bool, interface: str, task_handler: str | None) -> str:
    """Import the application (and the task handler) in a forked child, which exits after; return the
    application's interface (``"asgi"`` or ``"wsgi"``), or raise :class:`LoadError` with what went wrong (the
    traceback of an exception raised by the application's own code included)."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running anything of the parent's
        os.close(read_end)
        try:
            answer = {"interface": interface_of(load_app(spec, factory), interface)}
            if task_handler is not None and not callable(import_from_string(task_handler)):
                raise LoadError(f'The task handler "{task_handler}" is not callable.')
        except LoadError as exc:
            answer = {"error": str(exc)}
        except ValueError as exc:  # interface_of: neither ASGI nor WSGI
            answer = {"error": str(exc)}
        except BaseException:
            answer = {"error": f'Error loading "{spec}":\n{traceback.format_exc().rstrip()}'}
        with os.fdopen(write_end, "w") as pipe:
            pipe.write(json.dumps(answer))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    try:
        answer = json.loads(text)
    except ValueError:
        raise LoadError(f'Error loading "{spec}": the import ended the process') from None
    if "error" in answer:
        raise LoadError(answer["error"])
    return str(answer["interface"])


class ImportedApp:
    """The application, imported on first use in this process (see the module's docstring)."""

    def __init__(self, spec: str, factory: bool = False) -> None:
        self.spec = spec
        self.factory = factory
        self._app: Any = None
        self._failed = False

    def get(self) -> Any:
        if self._app is None:
            if self._failed:
                raise LoadError(f'"{self.spec}" could not be loaded in this worker (see the log)')
            try:
                self._app = load_app(self.spec, self.factory)
            except BaseException:
                self._failed = True
                logger.exception('cannot load the application "%s" in process %d', self.spec, os.getpid())
                raise
        return self._app


Scope = dict[str, Any]
Message = dict[str, Any]


class AsgiEntry:
    """The ASGI callable ``pyswoole serve`` mounts: the application of this worker, with the middleware given."""

    def __init__(self, imported: ImportedApp, wrap: Callable[[Any], Any] = lambda app: app) -> None:
        self.imported = imported
        self.wrap = wrap
        self._app: Any = None

    def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> Awaitable[None]:
        # Not a coroutine itself: the server awaits the application's own, one layer less per request.
        app = self._app
        if app is None:
            app = self._app = self.wrap(self.imported.get())
        result: Awaitable[None] = app(scope, receive, send)
        return result


class WsgiEntry:
    """The WSGI callable ``pyswoole serve`` mounts: the application of this worker, with the middleware given."""

    def __init__(self, imported: ImportedApp, wrap: Callable[[Any], Any] = lambda app: app) -> None:
        self.imported = imported
        self.wrap = wrap
        self._app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = self._app
        if app is None:
            app = self._app = self.wrap(self.imported.get())
        result: Iterable[bytes] = app(environ, start_response)
        return result


class ImportedCallable:
    """A callback named ``MODULE:FUNC`` (the Task callback of ``--task-handler``), imported on its first call in
    the process that runs it."""

    def __init__(self, spec: str) -> None:
        self.imported = ImportedApp(spec)

    def __call__(self, *args: Any) -> Any:
        return self.imported.get()(*args)
