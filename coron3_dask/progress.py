"""Per-stage progress (counts, elapsed, ETA) for every scheduler choice.

Tasks are grouped into pipeline stages by their key names.  ``pipeline.run`` names every key
after its step (:mod:`coron3_dask.graph_names`), so ``key_split`` of a key *is* its stage; the
substring rules below still file the raw (unrenamed) keys of a freshly built graph, as the
benchmarks see them.  Local schedulers (threads, processes, synchronous) report through a dask
callback; distributed clusters through a scheduler-side ``MultiProgress`` grouped by
:func:`stage_of` (so ``coron3_dask`` must be importable on the scheduler, as it is on the
workers).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, TextIO

from dask.callbacks import Callback
from dask.utils import key_split

__all__ = ["CHECK", "STAGES", "STEPS", "LocalProgress", "StageBoard", "stage_of"]

STAGES = ("read", "outlier_detection", "stack_refs", "align_refs", "klip", "resample", "write")
#: the usable-data guard (per-integration usable-pixel counts and the check that gates alignment
#: and KLIP): real work named for the dashboard, not one of the calwebb_coron3 steps the
#: progress line lists (its tasks count towards the total)
CHECK = "check"
#: every step a task is named after, in pipeline order (the guard runs once the inputs are flagged)
STEPS = ("read", "outlier_detection", CHECK, "stack_refs", "align_refs", "klip", "resample", "write")
_LABELS = {
    "read": "read",
    "outlier_detection": "outliers",
    "stack_refs": "stack",
    "align_refs": "align",
    "klip": "klip",
    "resample": "drizzle",
    "write": "write",
}
_STEP_SET = frozenset(STEPS)
#: exact task names (``key_split``) that a substring rule would misfile
_EXACT = {
    "finalize": "resample",  # resample's one division (dask's own finalize-* tasks are plumbing)
    "block": "write",  # np.block assembling a small whole array for a writer task
    "concatenate": "stack_refs",  # the reference stack
}
#: (stage, substrings of the task name), first match wins: the kernels' and writers' function names
_RULES = (
    ("write", ("write", "preallocate", "finish", "shifts_table")),
    ("resample", ("drizzle", "pixmap", "combine")),
    ("klip", ("klip", "regions_block", "add_point_sources")),
    ("align_refs", ("align_blocks", "align_one", "median_replace", "shift_blocks")),
    ("outlier_detection", ("flag_exposure",)),
    (CHECK, ("count_block", "join_counts", "require_usable", "after_guard")),
    ("read", ("read", "load-", "psfmask")),
)


def stage_of(key: Any) -> str:
    """Pipeline stage a task key belongs to (``"other"`` for plumbing tasks).

    The one task-to-stage map of the package: progress bars and benchmarks share it.  A key
    named after its step (:func:`coron3_dask.graph_names.name_by_step`, as every key of a
    run is) maps to that step; a raw key is filed by the name of the function it calls.

    Examples
    --------
    >>> stage_of(("klip-jw01386-c1000_t001-3f9a0c2e1b7d4a65", 0, 0))
    'klip'
    >>> stage_of(("outlier_detection-jw01386-c1000_t001-0b1c2d3e4f5a6b7c",))
    'outlier_detection'
    >>> stage_of(("check-jw01386-c1000_t001-0b1c2d3e4f5a6b7c", 2)), stage_of("require_usable-379d2e68")
    ('check', 'check')
    >>> stage_of(("_align_blocks-1f2e", 3, 0, 0, 0))
    'align_refs'
    >>> stage_of("write_cube-5b0b3db7")
    'write'
    >>> stage_of("finalize-5b0b3db7"), stage_of("finalize-hlgfinalizecompute-5b0b")
    ('resample', 'other')
    """
    name = key_split(key)
    if name in _STEP_SET:  # named after its step
        return name
    if name in _EXACT:
        return _EXACT[name]
    for stage, needles in _RULES:
        if any(n in name for n in needles):
            return stage
    return "other"


class StageBoard:
    """Counts per stage and a one-line rendering with elapsed time and ETA.

    Parameters
    ----------
    stream : file, optional
        Where to draw (default ``sys.stderr``).  On a terminal the line is redrawn in
        place; otherwise a line is written at most every ``log_interval`` seconds.
    log_interval : float
        Seconds between lines when the stream is not a terminal.
    """

    def __init__(self, stream: TextIO | None = None, log_interval: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_interval = log_interval
        self.all: Counter[str] = Counter()
        self.remaining: Counter[str] = Counter()
        self.start = time.monotonic()
        self._last_line = 0.0
        self._lock = threading.Lock()

    def update(self, all: Mapping[str, int], remaining: Mapping[str, int]) -> None:
        """Replace the counts (stage name to number of tasks)."""
        with self._lock:
            self.all, self.remaining = Counter(all), Counter(remaining)

    def line(self) -> str:
        """Render the progress line: per-stage done/total, overall percent, elapsed and ETA."""
        with self._lock:
            total, left = sum(self.all.values()), sum(self.remaining.values())
            parts = [f"{_LABELS[s]} {self.all[s] - self.remaining[s]}/{self.all[s]}" for s in STAGES if self.all[s]]
        done = total - left
        elapsed = time.monotonic() - self.start
        eta = f"ETA {_clock(elapsed * left / done)}" if 0 < done < total else ""
        pct = 100.0 * done / total if total else 0.0
        return f"[{pct:5.1f}%] " + " | ".join(parts) + f" | {_clock(elapsed)} elapsed {eta}".rstrip()

    def draw(self, final: bool = False) -> None:
        """Draw the line (in place on a terminal, rate-limited otherwise)."""
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line() + ("\n" if final else ""))
        elif final or now - self._last_line >= self.log_interval:
            self.stream.write(self.line() + "\n")
            self._last_line = now
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(seconds + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{sec:02d}" if minutes >= 60 else f"{minutes}:{sec:02d}"


class LocalProgress(Callback):
    """Progress for the local schedulers (threads, processes, synchronous).

    Parameters
    ----------
    board : StageBoard
        Where counts go.
    interval : float
        Seconds between redraws.
    """

    def __init__(self, board: StageBoard, interval: float = 0.2) -> None:
        super().__init__()
        self.board = board
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stages: dict[Any, str] = {}

    def _start_state(self, dsk: Mapping[Any, Any], state: Mapping[str, Any]) -> None:
        self._stages = {key: stage_of(key) for key in dsk}
        counts = Counter(self._stages.values())
        self._all, self._remaining = counts, Counter(counts)
        self.board.update(self._all, self._remaining)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        self._remaining[self._stages.get(key, "other")] -= 1

    def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.board.update(self._all, self._remaining)
        self.board.draw(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.board.update(self._all, self._remaining)
            self.board.draw()
