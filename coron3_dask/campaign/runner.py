"""Reprocessing campaigns: many associations, one cluster, resumable after failures.

Each association gets its own output directory (``OUT/<product name>/``).  An association is
complete when its run record (written atomically, after every product was renamed into
place) exists; a rerun of the same campaign skips complete associations and retries the
rest.  A failure is recorded and the campaign goes on with the next association.  The
campaign's own record, ``OUT/campaign.json``, is rewritten atomically after every
association, so it is always current.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coron3_dask import __version__, files, pipeline
from coron3_dask.config import Coron3Config
from coron3_dask.files import records
from coron3_dask.files.records import read_list

__all__ = ["AssociationOutcome", "read_list", "run_campaign"]

log = logging.getLogger(__name__)


@dataclass
class AssociationOutcome:
    """What happened to one association of a campaign."""

    asn: str
    status: str  # "done", "skipped" (already complete) or "failed"
    output_dir: str = ""
    products: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    error: str = ""


def run_campaign(
    associations: Sequence[str | Path],
    output_root: str | Path,
    config: Coron3Config,
    *,
    psfmask: str | Path | None = None,
    crds_path: str | Path | None = None,
    force: bool = False,
    compute: Callable[..., Sequence[Any]] | None = None,
    on_outcome: Callable[[AssociationOutcome], None] | None = None,
) -> list[AssociationOutcome]:
    """Process associations one after another on the current scheduler.

    Parameters
    ----------
    associations : sequence of path
        coron3 association files.
    output_root : path
        Each association writes to ``output_root/<product name>/``.
    config : Coron3Config
        Parameters for every association.
    psfmask, crds_path : path, optional
        PSFMASK override, or the CRDS cache to look each one up in.
    force : bool
        Reprocess associations that are already complete.
    compute : callable, optional
        Passed to :func:`pipeline.run` (the CLI's distributed submit with progress).
    on_outcome : callable, optional
        Called after each association (progress reporting).

    Returns
    -------
    list of AssociationOutcome
        In input order.
    """
    root = records.ensure_dir(output_root, "--output-root")
    outcomes: list[AssociationOutcome] = []
    for asn in associations:
        start = time.perf_counter()
        outcome = AssociationOutcome(asn=str(asn), status="failed")
        try:
            association = files.read_association(asn)
            out = root / association.product_name
            outcome.output_dir = str(out)
            record = out / pipeline.run_record_name(association.product_name)
            if record.exists() and not force:
                outcome.status = "skipped"
                outcome.products = records.read_json(record).get("products", [])
            else:
                inputs = pipeline.open_inputs(asn, config, psfmask=psfmask, crds_path=crds_path)
                result = pipeline.run(inputs, config, out, compute=compute)
                outcome.status, outcome.products = "done", [p.name for p in result.paths]
        except Exception as exc:  # noqa: BLE001 - one bad association must not stop a campaign
            outcome.error = f"{type(exc).__name__}: {exc}"
            log.warning("%s failed: %s", asn, outcome.error)
            log.debug("%s", traceback.format_exc())
        outcome.wall_seconds = round(time.perf_counter() - start, 3)
        outcomes.append(outcome)
        _write_record(root, config, outcomes, len(associations))
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


def _write_record(root: Path, config: Coron3Config, outcomes: list[AssociationOutcome], total: int) -> None:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    record = {
        "version": __version__,
        "parameters": config.to_dict(),
        "total": total,
        **counts,
        "associations": [asdict(o) for o in outcomes],
    }
    records.write_json(root / "campaign.json", record)
