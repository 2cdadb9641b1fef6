"""The tornado application of the dashboard: the page, ``/api/state`` and ``/files/...``, GET and HEAD only.

Every handler answers 405 to other methods, plain-text errors without tracebacks, and, when the
server listens on loopback, 403 to a ``Host`` that is not a loopback name (so a web page cannot
reach it through DNS rebinding).  ``/files/`` refuses any percent-encoded dot, slash, backslash,
percent sign or NUL in the raw URL, then asks :func:`coron3_dask.files.serving.served_file`
(inside the root after resolving symlinks; no hidden files, no database, no directories).
Served files carry a sandboxing content security policy: a served HTML or SVG runs no script.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import tornado.iostream
import tornado.web

from coron3_dask.dashboard.api import StateCache
from coron3_dask.dashboard.page import render_page
from coron3_dask.files import serving
from coron3_dask.files.fits_read import InputError

__all__ = ["Context", "application", "content_type", "is_loopback"]

log = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_ENCODED_SEPARATORS = re.compile(r"%(2e|2f|5c|25|00)", re.IGNORECASE)
#: content types by suffix: a fixed table, the same on every machine (not the system's mime.types)
_TEXT = "text/plain; charset=utf-8"
_TYPES = {
    ".fits": "application/fits",
    ".fit": "application/fits",
    ".fts": "application/fits",
    ".asdf": "application/octet-stream",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".ecsv": _TEXT,
    ".txt": _TEXT,
    ".log": _TEXT,
    ".md": _TEXT,
    ".toml": _TEXT,
    ".yaml": _TEXT,
    ".yml": _TEXT,
    ".cfg": _TEXT,
    ".ini": _TEXT,
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".pdf": "application/pdf",
    ".gz": "application/gzip",
    ".zip": "application/zip",
}
_INLINE = ("text/", "image/", "application/json", "application/pdf")
#: what a served file may do in a browser: show itself and inline images, never run scripts
_FILE_POLICY = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
_PAGE_POLICY = (
    "default-src 'none'; connect-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def content_type(name: str) -> str:
    """Return the ``Content-Type`` a served file is sent with (``application/octet-stream`` when unknown)."""
    return _TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def is_loopback(host: str) -> bool:
    """Return whether a host name or address is this machine's loopback."""
    return host in _LOOPBACK or host.startswith("127.")


class Context:
    """What the handlers share: the root, the state cache, the reader threads, whether on loopback."""

    def __init__(self, root: Path, cache: StateCache, readers: concurrent.futures.Executor, loopback: bool) -> None:
        self.root, self.cache, self.readers, self.loopback = root, cache, readers, loopback
        self.page = render_page(str(root)).encode()


def application(context: Context) -> tornado.web.Application:
    """Build the tornado application serving one output root."""
    routes: list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]] = [
        (r"/", _PageHandler, {"context": context}),
        (r"/api/state", _StateHandler, {"context": context}),
        (r"/files/(.*)", _FileHandler, {"context": context}),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=_NotFoundHandler,
        default_handler_args={"context": context},
        compress_response=True,
        xsrf_cookies=False,
        log_function=_log_request,
    )


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log on this module's logger at DEBUG (tornado's own would print refusals to stderr)."""
    request = handler.request
    log.debug(
        "%d %s %s (%s) %.1f ms",
        handler.get_status(),
        request.method,
        request.uri,
        request.remote_ip,
        1000 * request.request_time(),
    )


class _Handler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD")

    def initialize(self, context: Context) -> None:
        self.context = context

    def set_default_headers(self) -> None:
        self.set_header("Server", "coron3_dask")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", _FILE_POLICY)

    def prepare(self) -> None:
        if self.context.loopback:
            try:
                host = urlsplit(f"//{self.request.host}").hostname or ""
            except ValueError:
                host = ""
            if not is_loopback(host):
                raise tornado.web.HTTPError(403, reason="Host not allowed")

    def compute_etag(self) -> None:
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:
            self.set_header("Allow", "GET, HEAD")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.clear_header("Content-Disposition")
        self.finish(f"{status_code} {self._reason}\n")


class _NotFoundHandler(_Handler):
    def get(self, *args: Any) -> None:
        raise tornado.web.HTTPError(404)

    head = get


class _PageHandler(_Handler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", _PAGE_POLICY)
        self.finish(self.context.page)

    head = get


class _StateHandler(_Handler):
    async def get(self) -> None:
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(self.context.readers, self.context.cache.body)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    head = get


class _FileHandler(_Handler):
    async def get(self, relative: str) -> None:
        await self._send(relative, body=True)

    async def head(self, relative: str) -> None:
        await self._send(relative, body=False)

    async def _send(self, relative: str, *, body: bool) -> None:
        raw = self.request.path.removeprefix("/files/")
        path = None if _ENCODED_SEPARATORS.search(raw) else serving.served_file(self.context.root, relative)
        if path is None:
            raise tornado.web.HTTPError(404)
        try:
            stream = serving.FileStream(path)
        except InputError:  # removed, or swapped for a symlink, since the check
            raise tornado.web.HTTPError(404) from None
        with stream:
            kind = content_type(path.name)
            self.set_header("Content-Type", kind)
            self.set_header("Content-Length", str(stream.size))
            self.set_header("Last-Modified", _http_date(stream.mtime))
            disposition = "inline" if kind.startswith(_INLINE) else "attachment"
            self.set_header("Content-Disposition", f"{disposition}; filename*=UTF-8''{quote(path.name, safe='')}")
            self.set_header("Cache-Control", "no-cache")
            if body:
                try:
                    for block in stream:
                        self.write(block)
                        await self.flush()
                except tornado.iostream.StreamClosedError:  # the client went away
                    return
            self.finish()


def _http_date(epoch: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))
