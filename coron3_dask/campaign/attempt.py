"""One attempt at one association of a campaign: decide whether it is current, else run it and record it.

An association is *current* (skipped) when the database says it is done with the same
fingerprint (coron3_dask version, resolved parameters, every input's SHA-256) and its products
are all on disk with the recorded sizes.  Otherwise it runs through :func:`pipeline.run` (the
output directory's lock, private partial files renamed into place only when complete); its
products are then checksummed, a thumbnail of the i2d is drawn and the outcome is recorded in
one transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from coron3_dask import __version__, files, pipeline
from coron3_dask.config import Coron3Config
from coron3_dask.files.campaign_db import CampaignDB
from coron3_dask.files.checksums import FileDigest, digest

__all__ = ["Executor", "Outcome", "Settings", "fingerprint", "run_attempt"]

log = logging.getLogger(__name__)

#: (worker, first start, last stop, task-seconds)
Span = tuple[str, float, float, float]


class Executor(Protocol):
    """Where graphs run (the CLI provides one for a distributed cluster and one for local schedulers)."""

    @property
    def slots(self) -> int:
        """Default number of associations in flight."""
        ...

    @property
    def dashboard_link(self) -> str:
        """The Dask dashboard's URL, or empty."""
        ...

    def compute(self, collections: Sequence[Any], label: str) -> tuple[list[Any], list[Span]]:
        """Run one association's graph; return its results and per-worker spans."""
        ...

    def progress(self, label: str) -> tuple[str, int, int] | None:
        """Return the current step, tasks done and total of a graph in flight."""
        ...

    def cancel(self) -> None:
        """Cancel every graph in flight."""
        ...

    def lost(self) -> str | None:
        """Why the cluster is unusable, or None."""
        ...


@dataclass(frozen=True)
class Settings:
    """What every association of a campaign shares."""

    root: Path
    config: Coron3Config
    psfmask: Path | None = None
    crds_path: Path | None = None
    force: bool = False
    thumbnail: Callable[[Path, Path], Path] | None = None


@dataclass
class Outcome:
    """The end of one attempt.

    ``status``: ``done``, ``skipped`` (current), ``failed`` (``final``: not worth retrying, e.g.
    bad input) or ``pending`` (stopped or cluster lost: not an attempt that counts).
    """

    asn: str
    status: str
    product_name: str = ""
    products: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    error: str = ""
    final: bool = False
    attempt: int = 0


def fingerprint(config: Coron3Config, inputs: Sequence[FileDigest]) -> str:
    """SHA-256 over the version, the resolved parameters and every input's path, size and checksum."""
    record = {
        "version": __version__,
        "parameters": config.to_dict(),
        "inputs": [[d.path, d.size, d.sha256] for d in inputs],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _current(row: dict[str, Any], print_: str, out: Path) -> bool:
    if row["status"] != "done" or row["fingerprint"] != print_ or not row["products"]:
        return False
    for product in row["products"]:
        path = out / product["name"]
        if not path.is_file() or path.stat().st_size != product["size"]:
            return False
    return True


def run_attempt(
    db: CampaignDB, session: int, association: int, asn: Path, settings: Settings, executor: Executor
) -> Outcome:
    """Process one association once (see the module notes); never raises for the association's own errors.

    Returns
    -------
    Outcome
    """
    start = time.perf_counter()
    outcome = Outcome(asn=str(asn), status="failed")
    attempt = 0
    spans: list[Span] = []
    try:
        parsed = files.read_association(asn)
        outcome.product_name = parsed.product_name
        out = settings.root / parsed.product_name
        db.describe(association, product_name=parsed.product_name, output_dir=str(out))
        inputs = pipeline.open_inputs(asn, settings.config, psfmask=settings.psfmask, crds_path=settings.crds_path)
        digests = [digest(p, db.cached_sha256, db.store_sha256) for p in inputs.files]
        print_ = fingerprint(settings.config, digests)
        row = db.row(association)
        if not settings.force and _current(row, print_, out):
            outcome.status, outcome.products = "skipped", [p["name"] for p in row["products"]]
            return outcome
        attempt = outcome.attempt = db.start(association, session)

        def compute(*collections: Any) -> list[Any]:
            tasks = set().union(*(c.__dask_graph__().keys() for c in collections))
            db.progress(association, "read", 0, len(tasks))  # the total is known before the first task ends
            results, found = executor.compute(collections, parsed.product_name)
            spans.extend(found)
            return results

        result = pipeline.run(inputs, settings.config, out, compute=compute)
        written = [digest(p) for p in result.paths]
        thumb = _thumbnail(settings, out, parsed.product_name, result.paths)
        outcome.wall_seconds = round(time.perf_counter() - start, 3)
        db.finish(
            association,
            "done",
            attempt=attempt,
            fingerprint=print_,
            provenance=_provenance(settings.config, digests, result.paths),
            products=written,
            inputs=digests,
            spans=spans,
            wall_seconds=outcome.wall_seconds,
            thumbnail=thumb,
        )
        outcome.status, outcome.products = "done", [p.name for p in result.paths]
    except (Exception, asyncio.CancelledError) as exc:  # one association's failure is recorded, never raised
        outcome.error = _one_line(exc)
        # bad input or parameters: a retry cannot help (unless an I/O error, maybe passing, was the cause)
        outcome.final = isinstance(exc, ValueError) and not isinstance(exc.__context__, OSError)
        outcome.wall_seconds = round(time.perf_counter() - start, 3)
        lost = executor.lost()
        if lost or _cancelled(exc):
            outcome.status, outcome.error = "pending", lost or "cancelled"
        log.debug("%s: %s", asn, outcome.error, exc_info=True)
        if attempt:
            db.finish(
                association,
                outcome.status,
                error=outcome.error,
                attempt=attempt,
                spans=spans,
                wall_seconds=outcome.wall_seconds,
                count_attempt=outcome.status == "failed",
            )
        elif outcome.status == "failed":
            attempt = outcome.attempt = db.start(association, session)  # failed before it could start: count it
            db.finish(association, "failed", error=outcome.error, attempt=attempt, wall_seconds=outcome.wall_seconds)
    return outcome


def _cancelled(exc: BaseException) -> bool:
    import concurrent.futures

    return isinstance(exc, asyncio.CancelledError | concurrent.futures.CancelledError)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, ValueError | OSError) else f"{type(exc).__name__}: {text}"


def _thumbnail(settings: Settings, out: Path, name: str, paths: Sequence[Path]) -> str | None:
    i2d = next((p for p in paths if Path(p).name.endswith("_i2d.fits")), None)
    if settings.thumbnail is None or i2d is None:
        return None
    target = settings.root / "campaign_thumbnails" / f"{name}.png"
    try:
        settings.thumbnail(out / Path(i2d).name, target)
    except Exception as exc:  # noqa: BLE001 - a missing picture never fails an association
        log.warning("%s: no thumbnail: %s", name, exc)
        return None
    return str(target.relative_to(settings.root))


def _provenance(config: Coron3Config, inputs: Sequence[FileDigest], products: Sequence[Path]) -> dict[str, Any]:
    import platform

    return {
        "software": "coron3_dask",
        "version": __version__,
        "python": platform.python_version(),
        "parameters": config.to_dict(),
        "inputs": [{"path": d.path, "size": d.size, "sha256": d.sha256} for d in inputs],
        "products": [Path(p).name for p in products],
    }
