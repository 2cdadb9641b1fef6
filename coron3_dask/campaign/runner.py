"""Reprocessing campaigns: many associations in flight on one cluster, state in SQLite, resumable.

:class:`Campaign` keeps up to ``max_concurrent`` associations in flight (each one a graph of
futures on the cluster, submitted from its own client thread) and starts the next as one
finishes, so the scheduler never holds more than that many graphs and workers do not idle
between associations.  A failing association never affects the others: it is retried up to
``retries`` times (unless its error is bad input, which a retry cannot mend), then marked
failed with its error.  Tasks lost with a dead worker are recomputed by the scheduler itself.

State lives in ``OUT/campaign.sqlite`` (:class:`~coron3_dask.files.campaign_db.CampaignDB`).
The output root is locked for the whole campaign, so a second client is refused at once.
Rerunning the same command resumes: current associations are skipped (see
:mod:`coron3_dask.campaign.attempt`), associations a killed client left ``running`` go back to
``pending``.

Stopping: :meth:`Campaign.request_stop` (the CLI's first SIGINT/SIGTERM) submits nothing new
and lets in-flight associations finish; :meth:`Campaign.cancel` (the second) cancels them too:
their partial files are removed and they go back to ``pending``.  When the scheduler is lost,
the campaign stops the same way and says so.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coron3_dask import files
from coron3_dask.campaign.attempt import Executor, Outcome, Settings, run_attempt
from coron3_dask.files.association import product_name_of
from coron3_dask.files.campaign_db import DB_NAME, CampaignDB
from coron3_dask.files.lock import OutputLock, OutputLockedError

__all__ = ["Campaign", "CampaignLockedError", "CampaignResult"]

log = logging.getLogger(__name__)

_WAIT_S = 0.25
_PROGRESS_S = 1.0


class CampaignLockedError(OutputLockedError):
    """Another campaign client holds the output root."""

    def __str__(self) -> str:
        return (
            f"campaign output root {self.directory} is in use by another campaign client "
            f"({files.lock.describe_holder(self.holder)}): wait for it to finish, or stop it first"
        )


@dataclass
class CampaignResult:
    """How a campaign invocation ended."""

    outcomes: list[Outcome] = field(default_factory=list)
    #: ``"complete"`` (nothing left), ``"stopped"`` (asked to stop), ``"lost"`` (cluster gone),
    #: ``"incomplete"`` (interrupted associations left after their retries) or ``"error"``
    ending: str = "complete"
    message: str = ""
    session: int = 0
    database: Path = Path()

    def count(self, status: str) -> int:
        """Count the associations whose last outcome has ``status``."""
        return sum(o.status == status for o in self.outcomes)


class Campaign:
    """Many associations processed concurrently on one executor (see the module notes).

    Parameters
    ----------
    associations : sequence of path
        coron3 association files (duplicates are processed once).
    settings : Settings
        Output root, parameters, PSFMASK or CRDS path, ``force``, thumbnail renderer.
    executor : Executor
        Where graphs run.
    max_concurrent : int, optional
        Associations in flight (default ``executor.slots``).
    retries : int
        Further attempts after a failure that is not bad input.
    """

    def __init__(
        self,
        associations: Sequence[str | Path],
        settings: Settings,
        executor: Executor,
        *,
        max_concurrent: int | None = None,
        retries: int = 1,
    ) -> None:
        self.associations = list(dict.fromkeys(Path(a).resolve() for a in associations))
        self.settings = settings
        self.executor = executor
        self.max_concurrent = max(1, max_concurrent or executor.slots)
        self.retries = max(0, retries)
        self._stopping = threading.Event()
        self._cancelled = threading.Event()

    def request_stop(self) -> None:
        """Submit nothing new; in-flight associations finish."""
        self._stopping.set()

    def cancel(self) -> None:
        """Stop and cancel the associations in flight (they go back to pending)."""
        self._stopping.set()
        self._cancelled.set()
        self.executor.cancel()

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stopping.is_set()

    def run(
        self,
        *,
        command: str = "",
        cluster: str = "",
        on_outcome: Callable[[Outcome], None] | None = None,
        on_session: Callable[[CampaignDB, int], None] | None = None,
    ) -> CampaignResult:
        """Process every association; return when none is left, or after a stop or a lost cluster.

        Parameters
        ----------
        command, cluster : str
            Recorded with the session (the command line; the scheduler address or kind).
        on_outcome : callable, optional
            Called in the calling thread after every attempt.
        on_session : callable, optional
            Called with the open database and session id before the first association starts.

        Raises
        ------
        CampaignLockedError
            Another client holds the output root.
        """
        root = files.ensure_dir(self.settings.root, "campaign output root")  # absolute: workers may run elsewhere
        self.settings = dataclasses.replace(self.settings, root=root)
        try:
            lock = OutputLock(root, association=f"campaign of {len(self.associations)} associations").acquire()
        except OutputLockedError as exc:
            raise CampaignLockedError(exc.directory, exc.holder, root / files.lock.LOCK_NAME) from None
        try:
            with CampaignDB(root / DB_NAME) as db:
                session = db.begin_session(
                    command=command,
                    cluster=cluster,
                    dask_dashboard=self.executor.dashboard_link or None,
                    max_concurrent=self.max_concurrent,
                )
                result = CampaignResult(session=session, database=root / DB_NAME)
                try:
                    if on_session is not None:
                        on_session(db, session)
                    self._loop(db, session, result, on_outcome)
                except BaseException:
                    result.ending = "error"
                    self.cancel()  # nothing keeps running for a campaign that is not there any more
                    raise
                finally:
                    db.update_session(session, finished=round(time.time(), 3), outcome=result.ending)
        finally:
            lock.release()
        return result

    def _loop(
        self, db: CampaignDB, session: int, result: CampaignResult, on_outcome: Callable[[Outcome], None] | None
    ) -> None:
        names = [product_name_of(a) for a in self.associations]
        ids = db.register([str(a) for a in self.associations], names)
        tries: dict[int, int] = {}
        last: dict[int, Outcome] = {}
        queue: deque[tuple[int, Path]] = deque()
        claimed: dict[str, Path] = {}
        for ident, asn, name in zip(ids, self.associations, names, strict=True):
            problem = _name_problem(name, claimed.get(name or ""))
            if problem:  # two associations would write the same directory, or one outside the root
                outcome = Outcome(asn=str(asn), status="failed", product_name=name or "", error=problem, final=True)
                attempt = db.start(ident, session)
                db.finish(ident, "failed", error=f"{asn}: {problem}", attempt=attempt)
                last[ident] = outcome
                if on_outcome is not None:
                    on_outcome(outcome)
                continue
            if name:
                claimed[name] = asn
            queue.append((ident, asn))
        inflight: dict[cf.Future[Outcome], tuple[int, Path]] = {}
        next_progress = 0.0
        with cf.ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="coron3-association") as pool:
            while queue or inflight:
                while queue and len(inflight) < self.max_concurrent and not self.stopping:
                    ident, asn = queue.popleft()
                    tries[ident] = tries.get(ident, 0) + 1
                    job = pool.submit(run_attempt, db, session, ident, asn, self.settings, self.executor)
                    inflight[job] = (ident, asn)
                if not inflight:
                    break
                finished, _ = cf.wait(inflight, timeout=_WAIT_S, return_when=cf.FIRST_COMPLETED)
                for job in finished:
                    ident, asn = inflight.pop(job)
                    try:
                        outcome = job.result()
                    except Exception as exc:  # recording the attempt itself failed (the database?)
                        log.error("%s: %s", asn, exc, exc_info=True)
                        outcome = Outcome(
                            asn=str(asn), status="failed", error=f"{type(exc).__name__}: {exc}", final=True
                        )
                    last[ident] = outcome
                    lost = self.executor.lost()
                    if outcome.status == "pending" and lost:
                        if not result.message:
                            result.ending, result.message = "lost", lost
                        self._stopping.set()
                    elif outcome.status == "pending" and not self.stopping and tries[ident] <= self.retries:
                        log.warning("%s was interrupted (attempt %d), retrying: %s", asn, tries[ident], outcome.error)
                        queue.append((ident, asn))  # e.g. its futures were cancelled by another client
                    elif outcome.status == "failed" and not outcome.final and tries[ident] <= self.retries:
                        log.warning("%s failed (attempt %d), retrying: %s", asn, tries[ident], outcome.error)
                        queue.append((ident, asn))
                    if on_outcome is not None:
                        on_outcome(outcome)
                if time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + _PROGRESS_S
                    self._record_progress(db, list(inflight.values()))
        left = bool(queue) or any(o.status == "pending" for o in last.values())
        if left and result.ending == "complete":
            result.ending = "stopped" if self.stopping else "incomplete"
        result.outcomes = [last[i] for i in ids if i in last]

    def _record_progress(self, db: CampaignDB, running: list[tuple[int, Path]]) -> None:
        for ident, _ in running:
            name = db.row(ident)["product_name"]
            progress = self.executor.progress(name) if name else None
            if progress is not None:
                db.progress(ident, *progress)


def _name_problem(name: str | None, other: Path | None) -> str:
    """Why an association's product name cannot be written into the campaign root ("" when it can)."""
    if name is None:
        return ""  # unreadable ASN: its attempt reports the problem with the file
    if other is not None:
        return f"product name {name!r} is also that of {other}: both would write the same directory"
    if "/" in name or "\\" in name or name.startswith(".") or name in ("", ".."):
        return f"product name {name!r} is not a plain directory name"
    return ""
