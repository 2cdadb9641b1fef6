"""A campaign's state: a SQLite database in the output root (``OUT/campaign.sqlite``).

One row per association (status, attempts, error, times, task-seconds, workers, provenance),
its products and inputs with size and SHA-256, the time spans each worker spent on it, the
client sessions that ran the campaign, and a checksum cache.  The campaign client is the only
writer (it holds the output root's lock); dashboards and ``campaign status`` open the file
read-only, concurrently with the writer (WAL journal).  Every change is one transaction, so
the file is consistent whenever the client dies.

The schema is versioned (``meta.schema_version``, :data:`SCHEMA_VERSION`): a newer file is
refused with a message, an older one is migrated in place (there is none yet).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from coron3_dask.files.checksums import FileDigest
from coron3_dask.files.fits_read import InputError

__all__ = ["DB_NAME", "SCHEMA_VERSION", "STATUSES", "CampaignDB"]

DB_NAME = "campaign.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, finished REAL, host TEXT, pid INTEGER, version TEXT,
    command TEXT, cluster TEXT, dask_dashboard TEXT, dashboard TEXT, max_concurrent INTEGER, outcome TEXT);
CREATE TABLE associations (
    id INTEGER PRIMARY KEY, asn TEXT NOT NULL UNIQUE, position INTEGER NOT NULL,
    product_name TEXT, output_dir TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, fingerprint TEXT,
    started REAL, finished REAL, wall_seconds REAL, task_seconds REAL, workers TEXT,
    step TEXT, tasks_done INTEGER, tasks_total INTEGER, session INTEGER REFERENCES sessions(id),
    thumbnail TEXT, provenance TEXT);
CREATE TABLE products (
    association INTEGER NOT NULL REFERENCES associations(id) ON DELETE CASCADE,
    name TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (association, name));
CREATE TABLE inputs (
    association INTEGER NOT NULL REFERENCES associations(id) ON DELETE CASCADE,
    path TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (association, path));
CREATE TABLE spans (
    association INTEGER NOT NULL REFERENCES associations(id) ON DELETE CASCADE, attempt INTEGER NOT NULL,
    worker TEXT NOT NULL, start REAL NOT NULL, stop REAL NOT NULL, task_seconds REAL NOT NULL);
CREATE TABLE checksums (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
"""


class CampaignDB:
    """The state database of one campaign output root.

    Parameters
    ----------
    path : path
        The SQLite file (``OUT/campaign.sqlite``).
    readonly : bool
        Open for reading only (dashboards, ``campaign status``); the file must exist.

    Raises
    ------
    InputError
        Not a campaign database, written by a newer coron3_dask, or cannot be opened (naming the file).

    Notes
    -----
    One connection shared by the client's threads, each call serialised by a lock and committed
    as one transaction.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._immutable = False
        self._lock = threading.RLock()
        try:
            if readonly:
                self._db = self._open_readonly()
            else:
                if not self.path.exists():
                    self._create()
                self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA foreign_keys=ON")
            self._db.row_factory = sqlite3.Row
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            if readonly and self._immutable and Path(f"{self.path}-wal").exists():  # a writer came meanwhile
                self._db.close()
                self._db = self._open_readonly()
                self._db.row_factory = sqlite3.Row
                self._check_schema()
                return
            raise InputError(f"{self.path}: not a usable campaign database ({exc})") from None

    def _create(self) -> None:
        """Create the database complete under a temporary name, then rename it into place.

        A reader (a dashboard started first) never sees a file without its schema.
        """
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        tmp.unlink(missing_ok=True)
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
            db.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created', ?)", (SCHEMA_VERSION, _now()))
        finally:
            db.close()  # checkpoints: the file alone holds everything
        tmp.replace(self.path)

    def _open_readonly(self) -> sqlite3.Connection:
        """Open for reading without creating or changing any file.

        With a writer attached (a ``-wal`` file exists) a ``mode=ro`` connection shares its WAL;
        without one, ``mode=ro`` would create ``-wal``/``-shm`` files and leave them behind, so the
        (checkpointed, closed) file is opened ``immutable`` instead.
        """
        if not self.path.is_file():
            raise InputError(f"{self.path}: no campaign database here (has a campaign run in this directory?)")
        self._immutable = not Path(f"{self.path}-wal").exists()
        flag = "immutable=1" if self._immutable else "mode=ro"
        uri = f"file:{quote(str(self.path.resolve()))}?{flag}"
        return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10, isolation_level=None)

    def _check_schema(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            raise InputError(f"{self.path}: not a campaign database (no meta table)")
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise InputError(
                f"{self.path}: campaign database schema {version} is newer than this coron3_dask's "
                f"({SCHEMA_VERSION}): upgrade coron3_dask"
            )
        if version < 1:
            raise InputError(f"{self.path}: not a campaign database (schema version {version})")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise RuntimeError(f"{self.path} is open read-only")
        with self._lock:
            yield self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> CampaignDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions -------------------------------------------------------------------------
    def begin_session(self, **fields: Any) -> int:
        """Record a client session (``command``, ``cluster``, ``dask_dashboard``, ...); return its id."""
        from coron3_dask import __version__

        row = {"started": _now(), "host": socket.gethostname(), "pid": os.getpid(), "version": __version__, **fields}
        with self._transaction() as db:
            cur = db.execute(
                f"INSERT INTO sessions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )
        return int(cur.lastrowid or 0)

    def update_session(self, session: int, **fields: Any) -> None:
        """Change fields of a session (e.g. ``dashboard``, or ``outcome`` and ``finished`` at the end)."""
        with self._transaction() as db:
            db.execute(
                f"UPDATE sessions SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?", (*fields.values(), session)
            )

    # -- associations ---------------------------------------------------------------------
    def register(self, asns: Sequence[str], names: Sequence[str | None] = ()) -> list[int]:
        """Add associations not yet known (as pending); return the ids of all, in order.

        ``names`` are their product names where known (shown until an attempt reads the ASN).
        An association left ``running`` by a client that died goes back to ``pending``.
        """
        names = list(names) or [None] * len(asns)
        with self._transaction() as db:
            db.execute("UPDATE associations SET status='pending', step=NULL WHERE status='running'")
            start = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM associations").fetchone()[0]
            db.executemany(
                "INSERT OR IGNORE INTO associations (asn, position, product_name) VALUES (?, ?, ?)",
                [(asn, start + i, name) for i, (asn, name) in enumerate(zip(asns, names, strict=True))],
            )
            ids = {r["asn"]: r["id"] for r in db.execute("SELECT id, asn FROM associations")}
        return [int(ids[a]) for a in asns]

    def row(self, association: int) -> dict[str, Any]:
        """One association's row, with ``products`` and ``inputs`` lists."""
        with self._lock:
            row = dict(self._db.execute("SELECT * FROM associations WHERE id=?", (association,)).fetchone())
            row["products"] = self._files("products", association)
            row["inputs"] = self._files("inputs", association)
        return row

    def _files(self, table: str, association: int) -> list[dict[str, Any]]:
        key = "name" if table == "products" else "path"
        rows = self._db.execute(
            f"SELECT {key}, size, sha256 FROM {table} WHERE association=? ORDER BY {key}", (association,)
        )
        return [dict(r) for r in rows]

    def start(self, association: int, session: int, *, product_name: str = "", output_dir: str = "") -> int:
        """Mark an association running (one more attempt); return the attempt number."""
        with self._transaction() as db:
            db.execute(
                "UPDATE associations SET status='running', attempts=attempts+1, started=?, finished=NULL, error=NULL, "
                "step=NULL, tasks_done=0, tasks_total=NULL, session=?, product_name=COALESCE(NULLIF(?, ''), "
                "product_name), output_dir=COALESCE(NULLIF(?, ''), output_dir) WHERE id=?",
                (_now(), session, product_name, output_dir, association),
            )
            return int(db.execute("SELECT attempts FROM associations WHERE id=?", (association,)).fetchone()[0])

    def describe(self, association: int, *, product_name: str, output_dir: str) -> None:
        """Record where an association writes (known once its ASN is read)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE associations SET product_name=?, output_dir=? WHERE id=?",
                (product_name, output_dir, association),
            )

    def progress(self, association: int, step: str, done: int, total: int) -> None:
        """Record a running association's current step and task counts."""
        with self._transaction() as db:
            db.execute(
                "UPDATE associations SET step=?, tasks_done=?, tasks_total=? WHERE id=? AND status='running'",
                (step, done, total, association),
            )

    def finish(
        self,
        association: int,
        status: str,
        *,
        error: str = "",
        attempt: int = 0,
        fingerprint: str | None = None,
        provenance: dict[str, Any] | None = None,
        products: Iterable[FileDigest] = (),
        inputs: Iterable[FileDigest] = (),
        spans: Iterable[tuple[str, float, float, float]] = (),
        wall_seconds: float | None = None,
        thumbnail: str | None = None,
        count_attempt: bool = True,
    ) -> None:
        """Record the end of an attempt: ``done`` (with products, inputs, provenance), ``failed`` or ``pending``.

        ``spans`` are ``(worker, start, stop, task_seconds)``.  A ``pending`` end (the campaign
        stopped, or the cluster was lost) does not count as an attempt unless ``count_attempt``.
        """
        if status not in STATUSES or status == "running":
            raise ValueError(f"cannot finish an association as {status!r}")
        spans = list(spans)
        workers = sorted({s[0] for s in spans})
        task_seconds = sum(s[3] for s in spans) if spans else None
        with self._transaction() as db:
            if status == "done":
                for table in ("products", "inputs"):
                    db.execute(f"DELETE FROM {table} WHERE association=?", (association,))
                db.executemany(
                    "INSERT INTO products VALUES (?, ?, ?, ?)",
                    [(association, Path(d.path).name, d.size, d.sha256) for d in products],
                )
                db.executemany(
                    "INSERT INTO inputs VALUES (?, ?, ?, ?)", [(association, d.path, d.size, d.sha256) for d in inputs]
                )
            db.executemany(
                "INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?)", [(association, attempt, *span) for span in spans]
            )
            db.execute(
                "UPDATE associations SET status=?, error=?, finished=?, wall_seconds=COALESCE(?, wall_seconds), "
                "task_seconds=COALESCE(?, task_seconds), workers=COALESCE(?, workers), step=NULL, "
                "fingerprint=COALESCE(?, fingerprint), provenance=COALESCE(?, provenance), "
                "thumbnail=COALESCE(?, thumbnail), attempts=attempts - ?, "
                "tasks_done=CASE WHEN ?='done' THEN tasks_total ELSE tasks_done END WHERE id=?",
                (
                    status,
                    error or None,
                    _now(),
                    wall_seconds,
                    task_seconds,
                    json.dumps(workers) if spans else None,
                    fingerprint,
                    json.dumps(provenance) if provenance is not None else None,
                    thumbnail,
                    0 if count_attempt else 1,
                    status,
                    association,
                ),
            )

    def reset(self, association: int) -> None:
        """Forget an association's previous outcome (``--force``, or changed inputs or parameters)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE associations SET status='pending', fingerprint=NULL, error=NULL, attempts=0 WHERE id=?",
                (association,),
            )

    # -- checksum cache -------------------------------------------------------------------
    def cached_sha256(self, path: str, size: int, mtime_ns: int) -> str | None:
        """Return the stored SHA-256 of ``path`` if its size and mtime are unchanged."""
        with self._lock:
            row = self._db.execute(
                "SELECT sha256 FROM checksums WHERE path=? AND size=? AND mtime_ns=?", (path, size, mtime_ns)
            ).fetchone()
        return None if row is None else str(row[0])

    def store_sha256(self, path: str, size: int, mtime_ns: int, sha256: str) -> None:
        """Remember a file's SHA-256 for its current size and mtime."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO checksums VALUES (?, ?, ?, ?)", (path, size, mtime_ns, sha256))

    # -- reading --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything a dashboard or a report shows, as JSON-ready data (one consistent read)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                rows = [dict(r) for r in db.execute("SELECT * FROM associations ORDER BY position")]
                products: dict[int, list[dict[str, Any]]] = {}
                for r in db.execute("SELECT * FROM products ORDER BY association, name"):
                    products.setdefault(r["association"], []).append({k: r[k] for k in ("name", "size", "sha256")})
                spans = [dict(r) for r in db.execute("SELECT * FROM spans ORDER BY start")]
                sessions = [dict(r) for r in db.execute("SELECT * FROM sessions ORDER BY id")]
            finally:
                db.execute("COMMIT")
        for row in rows:
            row["products"] = products.get(row["id"], [])
            row["workers"] = json.loads(row["workers"]) if row["workers"] else []
            row.pop("provenance", None)
        counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
        return {
            "schema_version": SCHEMA_VERSION,
            "now": _now(),
            "counts": counts,
            "total": len(rows),
            "session": sessions[-1] if sessions else None,
            "sessions": sessions,
            "associations": rows,
            "spans": spans,
        }


def _now() -> float:
    return round(time.time(), 3)
