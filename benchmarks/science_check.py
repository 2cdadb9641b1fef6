"""Science check: offsets recovered by align_refs and companion S/N, per alignment mode.

Simulates a programme with known pointing offsets and companions, runs the pipeline in the
default mode (``each``: float64 fit, every reference aligned to every science integration),
``first`` (float64 fit against integration 0) and ``jwst_compat`` (jwst 3.0.0 exactly), and
prints a markdown table: fitted-vs-true offset errors and each companion's S/N in psfsub (the
mean of each roll's integrations) and in the i2d.

    .venv/bin/python benchmarks/science_check.py [--science-ints 4 --ref-ints 3 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import dask
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from coron3_dask import pipeline
from coron3_dask.analysis import companion_snr, shift_errors
from coron3_dask.config import load_config
from coron3_dask.simulate import simulate_programme

MODES = {
    "each (default)": [],
    "first": ["align_refs.align_to=first"],
    "jwst_compat": ["align_refs.align_to=first", "align_refs.jwst_compat=true"],
}


def snr_table(out_dir: Path, truth: dict, asn_id: str) -> dict[str, list[float]]:
    """Companion S/N per product: psfsub (mean over integrations) per roll, and i2d."""
    snrs: dict[str, list[float]] = {}
    for exp in (e for e in truth["exposures"] if e["exptype"] == "science"):
        root = exp["file"].removesuffix("_calints.fits")
        sub = fits.getdata(out_dir / f"{root}_{asn_id}_psfsub.fits", "SCI")
        star = np.mean(exp["star_xy_px"], axis=0)
        values = []
        for comp in exp["companions"]:
            xy = np.mean(comp["xy_per_integration"], axis=0)
            values.append(companion_snr(sub.mean(axis=0), tuple(xy), tuple(star)).snr)
            values.append(companion_snr(sub[0], tuple(xy), tuple(star)).snr)
        snrs[f"psfsub {root[:13]} (mean, int0)"] = values
    i2d_path = next(out_dir.glob("*_i2d.fits"))
    with fits.open(i2d_path) as hdul:
        image, header = hdul["SCI"].data, hdul["SCI"].header
    wcs = WCS(header)
    star = wcs.world_to_pixel_values(*truth["exposures"][-1]["target_ra_dec"])
    snrs["i2d"] = [companion_snr(image, tuple(np.asarray(wcs.world_to_pixel_values(c["ra"], c["dec"]), float)),
                                 (float(star[0]), float(star[1]))).snr for c in truth["companions"]]
    return snrs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--science-ints", type=int, default=4)
    parser.add_argument("--ref-ints", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="science_check_"))
    sim = simulate_programme(work / "inputs", n_science_ints=args.science_ints, n_ref_ints=args.ref_ints,
                             seed=args.seed)
    truth = json.loads(sim.truth_path.read_text())
    print(f"programme: {sim.product_name}, {len(sim.science_files)} rolls x {args.science_ints} ints, "
          f"{len(sim.psf_files)} dithers x {args.ref_ints} ints, seed {args.seed}\n")
    print("| mode | fits | offset error median (px) | p90 | max | companion S/N: psfsub per roll "
          "(c1 mean, c1 int0, c2 mean, c2 int0) | i2d (c1, c2) |")
    print("|---|---|---|---|---|---|---|")
    for mode, overrides in MODES.items():
        out = work / mode.split()[0]
        config = load_config(overrides=overrides)
        inputs = pipeline.open_inputs(sim.asn_path, config, psfmask=sim.psfmask_path)
        with dask.config.set(scheduler="threads"):
            result = pipeline.run(inputs, config, out)
        err = shift_errors(result.shifts, result.references, truth)
        snrs = snr_table(out, truth, sim.asn_id)
        rolls = " / ".join(", ".join(f"{v:.1f}" for v in vals) for k, vals in snrs.items() if k != "i2d")
        print(f"| {mode} | {len(err)} | {np.median(err):.4f} | {np.percentile(err, 90):.4f} | {err.max():.4f} "
              f"| {rolls} | {', '.join(f'{v:.1f}' for v in snrs['i2d'])} |")


if __name__ == "__main__":
    main()
