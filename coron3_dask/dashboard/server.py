"""A read-only web server for one campaign output root (tornado, in a thread or in the foreground).

Endpoints (GET and HEAD only; every other method is answered 405):

* ``/``: the live page (:mod:`coron3_dask.dashboard.page`);
* ``/api/state``: the database snapshot with derived figures (:func:`state_payload`);
* ``/files/<relative path>``: a regular file inside the output root (thumbnails, the report,
  products), streamed, with its content type.

It never writes: the database is read through :func:`coron3_dask.files.serving.campaign_snapshot`
(which creates no journal files), and paths are checked by
:func:`coron3_dask.files.serving.served_file` (inside the root after resolving symlinks; no hidden
files, no database, no directories) after refusing any percent-encoded dot, slash, backslash or
percent sign in the raw URL.  Bound to loopback, it also refuses requests whose ``Host`` is not a
loopback name (a web page cannot reach it through DNS rebinding).  The request handlers are in
:mod:`coron3_dask.dashboard.handlers`, the state JSON in :mod:`coron3_dask.dashboard.api`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
from pathlib import Path

import tornado.httpserver

from coron3_dask.dashboard.api import StateCache, state_payload
from coron3_dask.dashboard.handlers import Context, application, content_type, is_loopback

__all__ = ["DashboardServer", "content_type", "state_payload"]

log = logging.getLogger(__name__)


class DashboardServer:
    """Serve the dashboard of one campaign output root.

    Parameters
    ----------
    root : path
        The campaign output root (it need not exist yet: the page says it is waiting).
    host : str
        Address to listen on; loopback unless told otherwise (there is no authentication).
    port : int
        TCP port; 0 picks a free one (see :attr:`url`).

    Raises
    ------
    ValueError
        ``port`` outside 0..65535.

    Examples
    --------
    >>> server = DashboardServer("campaign_out").start()  # doctest: +SKIP
    >>> server.url  # doctest: +SKIP
    'http://127.0.0.1:41733/'
    >>> server.stop()  # doctest: +SKIP
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        self.root = Path(root).absolute()
        self.host = host
        self._port = int(port)
        self._sockets: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        """The port listened on (the requested one, maybe 0, before :meth:`bind` or :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """The page's URL (a wildcard address is shown as this host's name)."""
        host = self.host if self.host not in ("", "0.0.0.0", "::") else socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def start(self) -> DashboardServer:
        """Listen, and serve from a daemon thread with its own event loop; return ``self``.

        Raises
        ------
        OSError
            The address cannot be bound (e.g. the port is in use).
        """
        if self._thread is not None:
            raise RuntimeError("dashboard server already started")
        self.bind()
        ready = threading.Event()

        def serve() -> None:
            try:
                asyncio.run(self._serve(ready))
            except BaseException as exc:  # reported to start() or logged, never lost
                self._failure = exc
                log.exception("dashboard server stopped")
            finally:
                ready.set()

        self._thread = threading.Thread(target=serve, name="coron3-dask-dashboard", daemon=True)
        self._thread.start()
        ready.wait()
        if self._failure is not None:
            raise RuntimeError(f"dashboard server failed to start: {self._failure}") from self._failure
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the connections and the sockets; wait for the thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close_sockets()

    def bind(self) -> DashboardServer:
        """Listen (without serving yet), so that :attr:`url` is known; return ``self``.

        Raises
        ------
        OSError
            The address cannot be bound (e.g. the port is in use).
        """
        if not self._sockets:
            self._sockets = [_listen(self.host, self._port)]
            self._port = int(self._sockets[0].getsockname()[1])
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (``KeyboardInterrupt`` propagates).

        Listens first if :meth:`bind` was not called.
        """
        self.bind()
        try:
            asyncio.run(self._serve(None))
        finally:
            self._close_sockets()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    async def _serve(self, ready: threading.Event | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        readers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="coron3-dask-dashboard")
        context = Context(self.root, StateCache(self.root), readers, is_loopback(self.host))
        server = tornado.httpserver.HTTPServer(application(context))
        server.add_sockets(self._sockets)
        if ready is not None:
            ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.stop()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.close_all_connections(), 2.0)
            readers.shutdown(wait=False, cancel_futures=True)


def _listen(host: str, port: int) -> socket.socket:
    """Listen on ``host`` (IPv4 first when it has both) with a non-blocking socket, closed on failure."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = min(infos, key=lambda info: info[0] != socket.AF_INET)
    sock = socket.create_server(address, family=family, backlog=128)
    sock.setblocking(False)
    return sock
