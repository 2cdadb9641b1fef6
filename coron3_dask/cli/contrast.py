"""``coron3-dask contrast``: S/N map, detections and calibrated contrast curve of a finished run.

Also ``coron3-dask run --contrast``, which runs the step at the end of the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from coron3_dask.cli import schedulers

__all__ = ["add_parser", "check_args", "contrast_args", "handle", "run_contrast"]


def _companion(text: str) -> tuple[float, float]:
    try:
        sep, pa = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SEP_ARCSEC,PA_DEG, got {text!r}") from None
    return sep, pa


def contrast_args(parser: argparse.ArgumentParser) -> None:
    """Add the contrast step's options (PSF model, host flux, aperture, injections, companions)."""
    group = parser.add_argument_group("contrast")
    group.add_argument("--psf-model", type=Path, help="off-axis PSF model FITS (unit total flux, odd sides, centred)")
    group.add_argument(
        "--host-flux",
        type=float,
        help="host star total (unocculted) flux in the SCI units summed over pixels, e.g. from its spectral "
        "energy distribution or an unocculted exposure (required: a Lyot coronagraph suppresses the star's halo "
        "too, so the occulted data cannot give it)",
    )
    group.add_argument(
        "--fwhm", type=float, help="matched-aperture diameter in pixels (default: the PSF model's FWHM card)"
    )
    group.add_argument("--sigma", type=float, default=5.0, help="contrast curve significance (default 5)")
    group.add_argument("--threshold", type=float, default=5.0, help="S/N threshold of the detection list (default 5)")
    group.add_argument("--branches", type=int, default=3, help="injection position angles per separation (default 3)")
    group.add_argument("--fake-snr", type=float, default=20.0, help="injected fakes' S/N in the raw image (default 20)")
    group.add_argument(
        "--companion",
        type=_companion,
        action="append",
        default=[],
        metavar="SEP,PA",
        help="known companion to measure: separation (arcsec), position angle (deg E of N); repeatable",
    )
    group.add_argument(
        "--transmission",
        type=Path,
        help="coronagraph intensity transmission map on the detector grid, FITS (default: the run's PSFMASK)",
    )
    group.add_argument("--no-throughput", action="store_true", help="skip injection-recovery (raw curve only)")


def check_args(args: argparse.Namespace) -> None:
    """Refuse, before anything runs, a contrast step without its PSF model and host flux.

    Raises
    ------
    files.InputError
        Naming what is missing, or a PSF model file that does not exist.
    """
    from coron3_dask import files

    if args.psf_model is None or args.host_flux is None:
        raise files.InputError(
            "the contrast step needs an off-axis PSF model and the host flux: --psf-model FILE --host-flux F"
        )
    for path in (args.psf_model, args.transmission):
        if path is not None and not Path(path).is_file():
            raise files.InputError(f"{path}: no such file")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``contrast``."""
    parser = sub.add_parser(
        "contrast",
        parents=[common],
        help="contrast curve, S/N map and detections of a finished run",
        description="Measure a finished run's products: S/N map and detections (Mawet et al. 2014 small-sample "
        "statistics), raw and throughput-calibrated contrast curves (injection-recovery through the same graph, "
        "on the Dask cluster), known companions. Writes PRODUCT_contrast.ecsv, _snr.fits and _contrast.png.",
    )
    parser.add_argument("run_dir", type=Path, help="output directory of a finished `coron3-dask run`")
    parser.add_argument("--asn", type=Path, help="association (default: the one in the run record)")
    parser.add_argument("--psfmask", type=Path, help="PSFMASK (default: the one the run used)")
    parser.add_argument("--crds-path", type=Path, help="CRDS-style cache root (default: $CRDS_PATH)")
    contrast_args(parser)
    schedulers.scheduler_args(parser)


def handle(args: argparse.Namespace) -> int:
    """Run the contrast step on a finished run directory."""
    from coron3_dask import files, pipeline
    from coron3_dask.config import config_from_parameters

    check_args(args)
    records = sorted(args.run_dir.glob("*_coron3_dask.json"))
    if len(records) != 1:
        raise files.InputError(f"{args.run_dir}: expected one run record (*_coron3_dask.json), found {len(records)}")
    record = files.read_json(records[0])
    config = config_from_parameters(record["parameters"], str(records[0]))
    psfmask = args.psfmask or record.get("psfmask") or record["inputs"][-1]  # older records: the last input
    inputs = pipeline.open_inputs(args.asn or record["association"], config, psfmask=psfmask, crds_path=args.crds_path)
    with schedulers.scheduler(args) as client:
        return run_contrast(args, inputs, config, args.run_dir, client)


def run_contrast(args: argparse.Namespace, inputs: Any, config: Any, run_dir: Path, client: Any) -> int:
    """Measure and write the contrast products of a run (``contrast`` and ``run --contrast``, after ``check_args``)."""
    import numpy as np

    from coron3_dask import contrast, files
    from coron3_dask.files import contrast_products
    from coron3_dask.files.products import Provenance

    psf, header = contrast_products.read_psf_model(args.psf_model)
    fwhm = args.fwhm or header.get("FWHM")
    if not fwhm:
        raise files.InputError(f"{args.psf_model}: no FWHM card: give the aperture with --fwhm PIXELS")
    transmission = None
    if args.transmission is not None:
        transmission, _ = files.read_image(args.transmission, "SCI")
        if transmission.shape != inputs.psfmask.shape:
            raise files.InputError(
                f"{args.transmission}: shape {transmission.shape} differs from the frames' {inputs.psfmask.shape}"
            )
    product = inputs.association.product_name
    image = contrast.read_combined(run_dir, product, config)
    opts = contrast.ContrastOptions(
        psf_model=psf,
        fwhm=float(fwhm),
        host_flux=args.host_flux,
        sigma=args.sigma,
        branches=args.branches,
        fake_snr=args.fake_snr,
        companions=tuple(args.companion),
        throughput=not args.no_throughput,
        threshold=args.threshold,
        transmission=transmission,
    )
    compute = schedulers.distributed_compute(client, None) if client is not None else None
    result = contrast.measure_contrast(inputs, config, image, opts, compute=compute)
    provenance = Provenance(
        config.to_dict(), [*inputs.files, args.psf_model, *([args.transmission] if transmission is not None else [])]
    )
    paths = contrast.write_products(result, run_dir, product, image, provenance)
    print(f"Contrast ({opts.sigma:g} sigma, host flux {opts.host_flux:.4g}), throughput-corrected:")
    for k in image.truncations:
        rows = [r for r in result.rows if r["truncation"] == k]
        sep = np.array([r["separation_arcsec"] for r in rows])
        values = [r["contrast"] for r in rows]
        at = ", ".join(
            f'{s:g}" {np.interp(s, sep, values):.2e}' for s in (0.5, 1.0, 2.0) if sep.size and sep[0] <= s <= sep[-1]
        )
        print(f"  KL {k}: {at}")
    for m, given, c, con in result.companions:
        print(
            f'  companion {given[0]:g}" PA {given[1]:g} (KL {image.truncations[m]}): '
            f"S/N {c.snr:.1f}, contrast {con:.3g}"
        )
    print(f"  {len(result.detections)} detections above S/N {opts.threshold:g}")
    for path in paths:
        print(f"  wrote {path.name}")
    sys.stdout.flush()
    return 0
