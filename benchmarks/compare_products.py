"""Compare every product under two output trees array by array, byte for byte.

A refactor must not move a value: run the same inputs through two versions of coron3_dask and
compare the products.  Every HDU's data (images and tables, C3D_PROV excepted: it records paths
and times) must have the same dtype, shape and bytes, and the HDU lists must match.

Usage (the second tree made by another commit, e.g. from a ``git worktree``)::

    python benchmarks/compare_products.py OLD_TREE NEW_TREE

Exit status 0 when everything is identical, 1 otherwise (each difference listed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

SKIP = {"C3D_PROV", "ASDF"}


def compare(a: Path, b: Path) -> tuple[int, int, list[str]]:
    n_files = n_arrays = 0
    bad: list[str] = []
    for fa in sorted(a.rglob("*.fits")):
        if "inputs" in fa.relative_to(a).parts:
            continue
        fb = b / fa.relative_to(a)
        if not fb.exists():
            bad.append(f"missing {fb}")
            continue
        n_files += 1
        with fits.open(fa) as ha, fits.open(fb) as hb:
            if [h.name for h in ha] != [h.name for h in hb]:
                bad.append(f"{fa.relative_to(a)}: HDUs {[h.name for h in ha]} != {[h.name for h in hb]}")
                continue
            for h in ha[1:]:
                if h.name in SKIP:
                    continue
                n_arrays += 1
                x, y = h.data, hb[h.name].data
                if x is None and y is None:
                    continue
                if x is None or y is None or x.dtype != y.dtype or x.shape != y.shape:
                    bad.append(f"{fa.relative_to(a)}[{h.name}]: dtype/shape differ")
                elif np.asarray(x).tobytes() != np.asarray(y).tobytes():
                    bad.append(f"{fa.relative_to(a)}[{h.name}]: bytes differ")
    for p in b.rglob("*.fits"):
        if "inputs" not in p.relative_to(b).parts and not (a / p.relative_to(b)).exists():
            bad.append(f"extra {p}")
    return n_files, n_arrays, bad


def main() -> int:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    n_files, n_arrays, bad = compare(a, b)
    print(f"{n_files} products, {n_arrays} extensions compared; {len(bad)} differences")
    for line in bad:
        print(f"  {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
