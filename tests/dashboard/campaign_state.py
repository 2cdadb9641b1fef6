"""A campaign output root with a state database in every state, filled through CampaignDB's write API.

Plain helpers (``from campaign_state import make_campaign``); the fixtures are in conftest.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coron3_dask.files.campaign_db import DB_NAME, CampaignDB
from coron3_dask.files.checksums import digest

WORKERS = ("tcp://127.0.0.1:40001", "tcp://127.0.0.1:40002", "tcp://127.0.0.1:40003")
DASK_DASHBOARD = "http://127.0.0.1:8787/status"


@dataclass
class Campaign:
    """The root, the association ids by name, and the writer (open unless closed)."""

    root: Path
    ids: dict[str, int]
    session: int
    db: CampaignDB | None = None
    products: dict[str, list[Path]] = field(default_factory=dict)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def write_png(path: Path, seed: int = 0) -> Path:
    from matplotlib.image import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, np.random.default_rng(seed).random((16, 24)), format="png")
    return path


def make_campaign(root: Path, *, keep_open: bool = False) -> Campaign:
    """Four associations: ``alpha`` done (products, thumbnail, spans on two workers), ``beta`` failed
    after a retried attempt, ``gamma`` running (klip 3/10), ``delta`` pending."""
    root.mkdir(parents=True, exist_ok=True)
    db = CampaignDB(root / DB_NAME)
    session = db.begin_session(
        command="coron3-dask campaign asn/ -o out",
        cluster="tcp://127.0.0.1:8786",
        dask_dashboard=DASK_DASHBOARD,
        max_concurrent=2,
    )
    names = ["alpha", "beta", "gamma", "delta"]
    ids = dict(zip(names, db.register([f"/data/asn/{n}_asn.json" for n in names]), strict=True))
    camp = Campaign(root, ids, session, db)
    t = 1_700_000_000.0
    # alpha: done, 2 products, thumbnail, spans on two workers
    out = root / "jw_alpha"
    out.mkdir()
    products = [out / "jw_alpha_i2d.fits", out / "jw_alpha_psfsub.fits"]
    for i, p in enumerate(products):
        p.write_bytes(b"SIMPLE  =                    T" + bytes(2850 + i))
    camp.products["alpha"] = products
    write_png(root / "campaign_thumbnails" / "jw_alpha.png")
    attempt = db.start(ids["alpha"], session, product_name="jw_alpha", output_dir=str(out))
    db.progress(ids["alpha"], "klip", 5, 10)
    db.finish(
        ids["alpha"],
        "done",
        attempt=attempt,
        products=[digest(p) for p in products],
        wall_seconds=12.5,
        spans=[(WORKERS[0], t, t + 8, 7.5), (WORKERS[1], t + 1, t + 9, 6.0)],
        thumbnail="campaign_thumbnails/jw_alpha.png",
    )
    # beta: failed twice (the first attempt retried)
    for k in range(2):
        attempt = db.start(ids["beta"], session, product_name="jw_beta", output_dir=str(root / "jw_beta"))
        db.finish(
            ids["beta"],
            "failed",
            attempt=attempt,
            error="ValueError: <b>bad</b> input\nsecond line of the error",
            spans=[(WORKERS[2], t + 10 * k, t + 10 * k + 4, 3.0)],
            wall_seconds=4.0,
        )
    # gamma: running
    db.start(ids["gamma"], session, product_name="jw_gamma", output_dir=str(root / "jw_gamma"))
    db.progress(ids["gamma"], "klip", 3, 10)
    if not keep_open:
        camp.close()
    return camp


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry below ``root`` (and ``root``) with its mtime (ns) and size: to check nothing changed."""
    state = {".": (os.stat(root).st_mtime_ns, 0)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = os.lstat(path)
            state[str(path.relative_to(root))] = (info.st_mtime_ns, info.st_size)
    return state
