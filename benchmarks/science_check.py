"""Science check: offsets recovered by align_refs and companion S/N, per alignment mode.

Simulates a programme with known pointing offsets and companions, runs the pipeline in the
default mode (``each``: float64 fit, every reference aligned to every science integration),
``first`` (float64 fit against integration 0) and ``jwst_compat`` (jwst 3.0.0 exactly), and
prints a markdown table: fitted-vs-true offset errors and each companion's S/N in psfsub (the
mean of each roll's integrations) and in the i2d.

    .venv/bin/python benchmarks/science_check.py [--science-ints 4 --ref-ints 3 --seed 0]

``--contrast`` (issue 12) instead simulates, per preset (NIRCam SUB320A335R, MIRI MASK1550), a
programme with per-integration pointing jitter and a ladder of faint companions (contrasts spaced
by factors of 2), and compares three reductions of the same data: official (``--jwst-compat``),
our default, and our best (ADI+RDI / optimisation regions / truncation, chosen on a tuning seed
by the deepest 5-sigma calibrated contrast at 1", then reported on another seed): companion S/N,
faintest companion at S/N >= 5, 5-sigma calibrated contrast at 0.5/1/2", measured noise over the
photon-noise floor propagated from the science integrations' ERR, wall times.

    .venv/bin/python benchmarks/science_check.py --contrast [--presets SUB320A335R MASK1550 --seed 1 --tune-seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import dask
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from coron3_dask import contrast, pipeline
from coron3_dask.analysis import companion_snr, shift_errors
from coron3_dask.analysis.detection import aperture_sums, measure_companion
from coron3_dask.config import load_config
from coron3_dask.files.contrast_products import read_psf_model
from coron3_dask.simulate import Companion, simulate_programme
from coron3_dask.simulate.presets import PRESETS
from coron3_dask.wcs.input_wcs import radec_to_pixel, wcs_from_header
from coron3_dask.wcs.tan import offset_sky

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
    snrs["i2d"] = [
        companion_snr(
            image,
            tuple(np.asarray(wcs.world_to_pixel_values(c["ra"], c["dec"]), float)),
            (float(star[0]), float(star[1])),
        ).snr
        for c in truth["companions"]
    ]
    return snrs


# ---------------------------------------------------------------------------------------------
# --contrast: issue 12 science gain (official vs default vs best ADI+RDI/regions/truncation)
# ---------------------------------------------------------------------------------------------

OFFICIAL = ["align_refs.align_to=first", "align_refs.jwst_compat=true"]
TRUNCATIONS = "5,10,20,40"
#: candidates of "our best", tuned on the tuning seed (every truncation of the list is scored)
CANDIDATES: dict[str, list[str]] = {
    "rdi, 3 annuli x 2 subsections": ["klip.mode=rdi", "klip.annuli=3", "klip.subsections=2"],
    "adi+rdi, full frame": ["klip.mode=adi+rdi"],
    "adi+rdi, 2 annuli": ["klip.mode=adi+rdi", "klip.annuli=2"],
    "adi+rdi, 3 annuli x 2 subsections": ["klip.mode=adi+rdi", "klip.annuli=3", "klip.subsections=2"],
    "adi+rdi, 6 log annuli x 4 subsections": [
        "klip.mode=adi+rdi",
        "klip.annuli=6",
        "klip.subsections=4",
        "klip.annuli_spacing=log",
    ],
}
#: ladder of faint companions: (separation arcsec, position angle deg); contrast c0 / step**k (step 2)
LADDERS: dict[str, dict[str, Any]] = {
    "SUB320A335R": {
        "c0": 4e-5,
        "seps": [0.5, 0.71, 0.93, 1.14, 1.36, 1.57, 1.79, 2.0],
        "pas": [20.0, 157.0, 295.0, 72.0, 210.0, 347.0, 125.0, 262.0],
    },
    # MIRI's FWHM is 0.58": fewer, sparser rungs (radial neighbours 144 deg apart), contrasts spaced by 4
    "MASK1550": {
        "c0": 1.6e-2,
        "step": 4.0,
        "seps": [1.0, 1.4, 1.8, 2.2, 2.6, 3.0],
        "pas": [30.0, 174.0, 318.0, 102.0, 246.0, 30.0],
    },
}
SEPS = (0.5, 1.0, 2.0)
#: radius (FWHM) of the disks that hide the other companions when one is measured
MASK_FWHM = 0.75


def ladder(preset: str) -> list[Companion]:
    spec = LADDERS[preset]
    return [
        Companion(s, pa, spec["c0"] / spec.get("step", 2.0) ** k)
        for k, (s, pa) in enumerate(zip(spec["seps"], spec["pas"], strict=True))
    ]


def simulate_contrast(work: Path, preset: str, seed: int, args: argparse.Namespace, *, twin: bool = False) -> Any:
    """The programme with the companion ladder, or (``twin``) its companion-free twin: same seed, so the same
    speckles, pointings and jitter (the photon noise is drawn again: the stream consumes differently)."""
    return simulate_programme(
        work / f"{preset}_seed{seed}{'_twin' if twin else ''}" / "inputs",
        preset=preset,
        n_science_ints=args.science_ints,
        n_ref_ints=args.ref_ints,
        n_dither=args.dither,
        n_rolls=2,
        roll_separation_deg=args.roll,
        companions=[] if twin else ladder(preset),
        seed=seed,
        jitter_px=args.jitter,
        background=args.background,
        speckle_drift_nm=tuple(args.speckle_drift),
    )


def photon_floor(sim: Any, truth: dict, fwhm: float, seps_px: np.ndarray, ext: str = "ERR") -> np.ndarray:
    """Aperture noise (image units) of the combined image from the science integrations' errors alone.

    Per roll: variance of the integration mean = sum(ERR**2) / N**2; rolls combined as a mean
    (/ n_exp); aperture noise = sqrt(sum of the variance over the matched aperture), averaged over
    the apertures tiled on the circle of each separation (detector frame, around the star).
    ``ext="POISSON+RNOISE"`` uses VAR_POISSON + VAR_RNOISE instead of ERR**2 (no flat-field term).
    """
    sci = [e for e in truth["exposures"] if e["exptype"] == "science"]
    total, star = None, np.zeros(2)
    for e in sci:
        with fits.open(sim.asn_path.parent / e["file"]) as hdul:
            if ext == "ERR":
                var = np.asarray(hdul["ERR"].data, float) ** 2
            else:
                var = np.asarray(hdul["VAR_POISSON"].data, float) + np.asarray(hdul["VAR_RNOISE"].data, float)
            dq = np.asarray(hdul["DQ"].data)
        var = np.where((dq & 1) == 0, var, np.nan)
        n = var.shape[0]
        v = np.nanmean(var, axis=0) / n  # sum ERR^2 / N^2 (NaN-robust)
        total = v if total is None else total + v
        star += np.mean(e["star_xy_px"], axis=0)
    comb = total / len(sci) ** 2  # mean of the exposures
    cx, cy = star / len(sci)
    out = []
    for r in seps_px:
        n_ap = max(int(2 * np.pi * r / fwhm), 1)
        theta = np.arange(n_ap) * 2 * np.pi / n_ap
        sums, ok = aperture_sums(comb, cx + r * np.cos(theta), cy + r * np.sin(theta), fwhm)
        out.append(np.sqrt(np.mean(sums[ok])) if ok.any() else np.nan)
    return np.asarray(out)


def reduce_and_measure(
    sim: Any, truth: dict, overrides: list[str], out: Path, branches: int, *, throughput: bool = True
) -> dict[str, Any]:
    """Run one reduction and the contrast step on its combined image; time both."""
    psf, _ = read_psf_model(sim.psf_model_path)
    config = load_config(overrides=overrides)
    t0 = time.perf_counter()
    inputs = pipeline.open_inputs(sim.asn_path, config, psfmask=sim.psfmask_path)
    with dask.config.set(scheduler="threads"):
        pipeline.run(inputs, config, out)
    t_run = time.perf_counter() - t0
    image = contrast.read_combined(out, sim.product_name, config)
    opts = contrast.ContrastOptions(
        psf_model=psf,
        fwhm=truth["fwhm_px"],
        host_flux=truth["host_flux_image_units"],
        companions=tuple((c["separation_arcsec"], c["position_angle_deg"]) for c in truth["companions"]),
        branches=branches,
        throughput=throughput,
    )
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        res = contrast.measure_contrast(inputs, config, image, opts)
    t_con = time.perf_counter() - t0
    masked = masked_snr(image, opts)
    return {
        "res": res,
        "masked": masked,
        "truncations": image.truncations,
        "kind": image.kind,
        "t_run": t_run,
        "t_contrast": t_con,
    }


def masked_snr(image: Any, opts: Any) -> np.ndarray:
    """S/N ``(mode, companion)`` of each known companion with the *other* companions masked (NaN disks of
    radius 1.5 FWHM, as the contrast curve masks them), so that a brighter neighbour of the ladder does not
    enter the ring of noise apertures (``measure_contrast``'s ``companions`` do not mask them)."""
    wcs = wcs_from_header(image.sci_header)
    ra0, dec0 = float(image.primary_header["TARG_RA"]), float(image.primary_header["TARG_DEC"])
    xy = [tuple(float(v) for v in radec_to_pixel(wcs, *offset_sky(ra0, dec0, s, pa))) for s, pa in opts.companions]
    cx, cy = (float(v) for v in radec_to_pixel(wcs, ra0, dec0))
    yy, xx = np.indices(image.planes.shape[1:])
    out = np.full((len(image.planes), len(xy)), np.nan)
    for j, (x, y) in enumerate(xy):
        hide = np.zeros(image.planes.shape[1:], bool)
        for i, (ox, oy) in enumerate(xy):
            if i != j:
                hide |= (xx - ox) ** 2 + (yy - oy) ** 2 <= (MASK_FWHM * opts.fwhm) ** 2
        for m, plane in enumerate(image.planes):
            found = measure_companion(
                np.where(hide, np.nan, plane), (x, y), (cx, cy), opts.fwhm, psf_model=opts.psf_model
            )
            out[m, j] = found.snr
    return out


def curve(res: Any, truncation: int, key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in res.rows if r["truncation"] == truncation]
    return np.array([r["separation_arcsec"] for r in rows]), np.array([r[key] for r in rows])


def at(res: Any, truncation: int, key: str, sep: float) -> float:
    x, y = curve(res, truncation, key)
    ok = np.isfinite(y)
    if not ok.any() or sep < x[ok].min() or sep > x[ok].max():
        return float("nan")
    return float(np.interp(sep, x[ok], y[ok]))


def summarise(
    m: dict[str, Any], twin: dict[str, Any], truncation: int, truth: dict, floor_px: tuple[np.ndarray, np.ndarray]
) -> dict:
    """Companion S/N from the ladder run ``m``; contrast, noise and throughput from the twin's run."""
    res = m["res"]
    plane = m["truncations"].index(truncation)
    snrs = [c.snr for (k, _, c, _) in res.companions if k == plane]
    snrs_masked = list(m["masked"][plane])
    contrasts = [c["contrast"] for c in truth["companions"]]
    detected = [c for c, s in zip(contrasts, snrs, strict=True) if s >= 5]
    detected_masked = [c for c, s in zip(contrasts, snrs_masked, strict=True) if s >= 5]
    res = twin["res"]
    scale = res.meta["pixel_scale_arcsec"]
    fsep, fnoise = floor_px
    host_ap = res.meta["host_aperture_flux"]
    ratio, floor_c = [], []
    for s in SEPS:
        f = float(np.interp(s / scale, fsep, fnoise))
        ratio.append(at(res, truncation, "noise", s) / f)
        floor_c.append(5 * f / host_ap / at(res, truncation, "throughput", s))
    return {
        "snr": snrs,
        "faintest": min(detected) if detected else float("nan"),
        "snr_masked": snrs_masked,
        "faintest_masked": min(detected_masked) if detected_masked else float("nan"),
        "c5": [at(res, truncation, "contrast", s) for s in SEPS],
        "ratio": ratio,
        "floor_c": floor_c,
        "wall": twin["t_run"] + twin["t_contrast"],
        "t_run": twin["t_run"],
        "t_contrast": twin["t_contrast"],
        "t_ladder": m["t_run"] + m["t_contrast"],
    }


def contrast_section(args: argparse.Namespace, work: Path) -> None:
    print(
        f"jitter {args.jitter} px, 2 rolls x {args.science_ints} ints ({args.roll} deg), {args.dither}-point "
        f"dither x {args.ref_ints} ref ints; tuning seed {args.tune_seed}, report seed {args.seed}; "
        f"branches: tuning {args.tune_branches}, report {args.branches}\n",
        flush=True,
    )
    for preset in args.presets:
        t_preset = time.perf_counter()
        # ---- tuning: choose the configuration and truncation on the tuning seed
        sim = simulate_contrast(work, preset, args.tune_seed, args, twin=True)
        truth = json.loads(sim.truth_path.read_text())
        base = sim.asn_path.parent.parent
        print(f'### {preset}: tuning (seed {args.tune_seed}, companion-free twin) — 5σ calibrated contrast at 1"\n')
        print("| candidate | " + " | ".join(f"K={k}" for k in TRUNCATIONS.split(",")) + " | run s | contrast s |")
        print("|---|" + "---:|" * (len(TRUNCATIONS.split(",")) + 2))
        best = None
        for name, ov in CANDIDATES.items():
            tag = "tune_" + "".join(ch if ch.isalnum() else "_" for ch in name)
            try:
                ov_k = [*ov, f"klip.truncate={TRUNCATIONS}"]
                m = reduce_and_measure(sim, truth, ov_k, base / tag, args.tune_branches)
            except Exception:  # noqa: BLE001 - report and go on with the other candidates
                print(f"| {name} | FAILED: {traceback.format_exc().splitlines()[-1]} |")
                traceback.print_exc()
                continue
            c1 = {k: at(m["res"], k, "contrast", 1.0) for k in m["truncations"]}
            print(
                f"| {name} | "
                + " | ".join(f"{c1[k]:.2e}" for k in m["truncations"])
                + f" | {m['t_run']:.0f} | {m['t_contrast']:.0f} |",
                flush=True,
            )
            for k, v in c1.items():
                if np.isfinite(v) and (best is None or v < best[2]):
                    best = (name, ov, v, k)
        assert best is not None, "every candidate failed"
        print(f'\nchosen: {best[0]}, K={best[3]} ({best[2]:.2e} at 1" on the tuning seed)\n', flush=True)
        # ---- report seed: the three reductions on the same data
        sim = simulate_contrast(work, preset, args.seed, args)
        truth = json.loads(sim.truth_path.read_text())
        base = sim.asn_path.parent.parent
        sim_twin = simulate_contrast(work, preset, args.seed, args, twin=True)
        truth_twin = json.loads(sim_twin.truth_path.read_text())
        base_twin = sim_twin.asn_path.parent.parent
        reductions = {
            "official (`--jwst-compat`)": (OFFICIAL, None),
            "ours, default": ([], None),
            f"ours, best: {best[0]}, K={best[3]}": ([*best[1], f"klip.truncate={best[3]}"], best[3]),
        }
        fwhm = truth["fwhm_px"]
        seps_px = np.arange(fwhm, 2.6 / PRESETS[preset].pixel_scale_arcsec, 0.5)
        floor = (seps_px, photon_floor(sim_twin, truth_twin, fwhm, seps_px))
        floor_pr = photon_floor(sim_twin, truth_twin, fwhm, seps_px, ext="POISSON+RNOISE")
        comps = truth["companions"]
        snr_head = ", ".join(f'{c["contrast"]:.1e}@{c["separation_arcsec"]:g}"' for c in comps)
        print(f"### {preset}: report (seed {args.seed})\n")
        roll1 = next(e for e in truth["exposures"] if e["exptype"] == "science")["companions"]
        trans = ", ".join(f"{c['transmission']:.2f}" for c in roll1)
        print(f"Companions (contrast@separation): {snr_head}; transmission (roll 1): {trans}\n")
        print(
            "| reduction | companion S/N (res.companions) | faintest S/N≥5 | companion S/N, others masked | faintest "
            '| 5σ 0.5" | 5σ 1" | 5σ 2" | noise/floor 0.5" | 1" | 2" | wall s: twin run + contrast; ladder run + S/N |'
        )
        print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        floor_lines = []
        for name, (ov, k) in reductions.items():
            tag = "rep_" + "".join(ch if ch.isalnum() else "_" for ch in name.split(":")[0])
            try:
                m = reduce_and_measure(sim, truth, ov, base / tag, args.branches, throughput=False)
                m_twin = reduce_and_measure(sim_twin, truth_twin, ov, base_twin / tag, args.branches)
            except Exception:  # noqa: BLE001 - report the traceback, go on
                print(f"| {name} | FAILED: {traceback.format_exc().splitlines()[-1]} |")
                traceback.print_exc()
                continue
            s = summarise(m, m_twin, m["truncations"][0] if k is None else k, truth, floor)
            floor_lines.append(f"{name}: " + ", ".join(f"{v:.2e}" for v in s["floor_c"]))
            print(
                f"| {name} | {', '.join(f'{v:.1f}' for v in s['snr'])} | {s['faintest']:.1e} | "
                f"{', '.join(f'{v:.1f}' for v in s['snr_masked'])} | {s['faintest_masked']:.1e} | "
                + " | ".join(f"{v:.2e}" for v in s["c5"])
                + " | "
                + " | ".join(f"{v:.2f}" for v in s["ratio"])
                + f" | {s['wall']:.0f} ({s['t_run']:.0f} + {s['t_contrast']:.0f}); ladder {s['t_ladder']:.0f} |",
                flush=True,
            )
        scale = PRESETS[preset].pixel_scale_arcsec
        err = ", ".join(f"{np.interp(s / scale, *floor):.3g}" for s in SEPS)
        pr = ", ".join(f"{np.interp(s / scale, seps_px, floor_pr):.3g}" for s in SEPS)
        print(
            f'\nfloor aperture noise at 0.5/1/2" (image units): from ERR {err}; '
            f"from VAR_POISSON+VAR_RNOISE (no flat term) {pr}"
        )
        print("\n5σ floor contrast (ERR; each reduction's throughput) at 0.5/1/2\":\n")
        for line in floor_lines:
            print(f"* {line}")
        print(f"\n{preset}: {time.perf_counter() - t_preset:.0f} s in all (simulations, tuning, report)\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--science-ints", type=int, default=None, help="default 4 (alignment table), 8 (--contrast)")
    parser.add_argument("--ref-ints", type=int, default=None, help="default 3 (alignment table), 2 (--contrast)")
    parser.add_argument("--seed", type=int, default=None, help="default 0 (alignment table), 1 (--contrast: report)")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--contrast", action="store_true", help="issue 12: official vs default vs best contrast")
    parser.add_argument("--presets", nargs="+", default=["SUB320A335R", "MASK1550"], choices=sorted(LADDERS))
    parser.add_argument("--tune-seed", type=int, default=0)
    parser.add_argument("--dither", type=int, default=5)
    parser.add_argument("--roll", type=float, default=10.0, help="roll separation, deg")
    parser.add_argument("--jitter", type=float, default=0.03, help="per-integration pointing jitter rms, px")
    parser.add_argument(
        "--speckle-drift",
        type=float,
        nargs=2,
        default=(2.0, 0.3),
        metavar=("EXPOSURE", "INTEGRATION"),
        help="wavefront random-walk step per exposure and per integration, nm (simulator default 2 0.3)",
    )
    parser.add_argument(
        "--background", type=float, default=None, help="sky background e-/s/px (default: the preset's; 0: subtracted)"
    )
    parser.add_argument("--branches", type=int, default=2, help="injection branches of the reported contrast")
    parser.add_argument("--tune-branches", type=int, default=1, help="injection branches while tuning")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="science_check_"))
    if args.contrast:
        args.science_ints = args.science_ints or 8
        args.ref_ints = args.ref_ints or 2
        args.seed = 1 if args.seed is None else args.seed
        if args.seed == args.tune_seed:
            parser.error("--seed (report) must differ from --tune-seed")
        contrast_section(args, work)
        return
    args.science_ints = args.science_ints or 4
    args.ref_ints = args.ref_ints or 3
    args.seed = args.seed or 0
    sim = simulate_programme(
        work / "inputs", n_science_ints=args.science_ints, n_ref_ints=args.ref_ints, seed=args.seed
    )
    truth = json.loads(sim.truth_path.read_text())
    print(
        f"programme: {sim.product_name}, {len(sim.science_files)} rolls x {args.science_ints} ints, "
        f"{len(sim.psf_files)} dithers x {args.ref_ints} ints, seed {args.seed}\n"
    )
    print(
        "| mode | fits | offset error median (px) | p90 | max | companion S/N: psfsub per roll "
        "(c1 mean, c1 int0, c2 mean, c2 int0) | i2d (c1, c2) |"
    )
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
        print(
            f"| {mode} | {len(err)} | {np.median(err):.4f} | {np.percentile(err, 90):.4f} | {err.max():.4f} "
            f"| {rolls} | {', '.join(f'{v:.1f}' for v in snrs['i2d'])} |"
        )


if __name__ == "__main__":
    main()
