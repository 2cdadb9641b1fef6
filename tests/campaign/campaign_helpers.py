"""Campaign test helpers: small simulated associations, product comparison, a real cluster of processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

BIN = Path(sys.executable).parent


def make_programmes(root: Path, n: int, seed: int = 100) -> tuple[list[Path], Path]:
    """``n`` small programmes (1 dither, 2 integrations), each with its own product name; ASNs and a PSFMASK."""
    from coron3_dask.simulate import simulate_programme

    asns = []
    for k in range(n):
        sim = simulate_programme(root / f"p{k:02d}", n_science_ints=2, n_ref_ints=2, n_dither=1, seed=seed + k)
        asn = json.loads(sim.asn_path.read_text())
        asn["products"][0]["name"] = f"{asn['products'][0]['name']}-p{k:02d}"
        sim.asn_path.write_text(json.dumps(asn))
        asns.append(sim.asn_path)
    return asns, sim.psfmask_path


def product_content(root: Path) -> dict[tuple[str, str], bytes]:
    """Every product HDU's header cards and data bytes, keyed by (relative path, HDU); DATE and provenance aside.

    Products record when they were made (DATE, the C3D_PROV table): everything else must be equal
    byte for byte between two runs of the same inputs.
    """
    out = {}
    for path in sorted(root.rglob("*.fits")):
        rel = str(path.relative_to(root))
        with fits.open(path) as hdul:
            for hdu in hdul:
                if hdu.name == "C3D_PROV":
                    continue
                cards = "".join(str(c) for c in hdu.header.cards if c.keyword not in ("DATE", "DATE-BEG"))
                data = b"" if hdu.data is None else np.ascontiguousarray(hdu.data).tobytes()
                out[rel, hdu.name] = cards.encode() + data
    return out


class Cluster:
    """A real `dask scheduler` and `dask worker` processes on 127.0.0.1."""

    def __init__(self, work: Path, n_workers: int = 2) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = work / "scheduler.json"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.scheduler = subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(self.scheduler_file)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=open(work / "scheduler.log", "ab"),
            start_new_session=True)
        deadline = time.monotonic() + 60
        while not self.scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.scheduler_file.exists(), "scheduler did not start"
        self.workers = [self.add_worker(f"w{i}") for i in range(n_workers)]
        self.wait_for(n_workers)

    def add_worker(self, name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(BIN / "dask"), "worker", "--scheduler-file", str(self.scheduler_file), "--nthreads", "1",
             "--memory-limit", "2GiB", "--name", name, "--no-dashboard", "--local-directory", str(self.work)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def client(self):
        from distributed import Client

        return Client(scheduler_file=str(self.scheduler_file), timeout=30)

    def wait_for(self, n: int) -> None:
        with self.client() as client:
            client.wait_for_workers(n, timeout=60)

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid of the worker process itself (not its nanny)."""
        with self.client() as client:
            return client.run(os.getpid)

    def close(self) -> None:
        """Kill every process group (a nanny and its worker share one): nothing here needs a graceful end."""
        for p in [*self.workers, self.scheduler]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        for p in [*self.workers, self.scheduler]:
            p.wait(timeout=20)
