"""On-disk form of a simulated programme: calints headers, INT_TIMES, PSFMASK, association, truth.

:func:`exposure_headers` and :func:`int_times` build the keywords and the ``INT_TIMES``
table of one ``_calints.fits`` (written by :func:`~coron3_dask.simulate.simulate_programme`);
:func:`write_products` writes the PSFMASK reference file, the contrast-calibration files
(``<product>_psfmodel.fits``, ``<product>_transmission.fits``), the coron3 association and
``truth.json`` and returns the :class:`SimulatedProgramme`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from coron3_dask import dq, files
from coron3_dask.files import records
from coron3_dask.simulate.instrument import psf_model, psfmask, transmission_map
from coron3_dask.simulate.optics import Coronagraph
from coron3_dask.simulate.plan import ASN_ID, PROGRAM, Exposure, exposure_times
from coron3_dask.simulate.presets import Companion, Preset
from coron3_dask.wcs.tan import pixel_to_sky

__all__ = ["SimulatedProgramme", "exposure_headers", "int_times", "subarray_cards", "write_products"]

#: the association pool of the simulated programme (stage-2 headers and the coron3 ASN name it)
POOL = f"jw{PROGRAM}_20231221t060000_pool.csv"


@dataclass(frozen=True)
class SimulatedProgramme:
    """Paths of a simulated programme.

    ``psf_model_path`` and ``transmission_path`` are the contrast-calibration files (the
    normalised off-axis PSF and the mask's intensity transmission on the detector grid).
    """

    directory: Path
    asn_path: Path
    psfmask_path: Path
    truth_path: Path
    science_files: tuple[Path, ...]
    psf_files: tuple[Path, ...]
    product_name: str
    asn_id: str
    psf_model_path: Path | None = None
    transmission_path: Path | None = None


def subarray_cards(p: Preset) -> dict[str, Any]:
    """SUBARRAY, SUBSTRT*, SUBSIZE*, FASTAXIS and SLOWAXIS keywords of a preset."""
    return {
        "SUBARRAY": p.subarray,
        "SUBSTRT1": p.substrt[0],
        "SUBSTRT2": p.substrt[1],
        "SUBSIZE1": p.shape[1],
        "SUBSIZE2": p.shape[0],
        "FASTAXIS": p.axes[0],
        "SLOWAXIS": p.axes[1],
    }


def _iso(mjd: float) -> tuple[str, str]:
    t = dt.datetime(1858, 11, 17) + dt.timedelta(days=mjd)
    return t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S.%f")[:12]


def exposure_headers(
    p: Preset, e: Exposure, n_dither: int, crpix: tuple[float, float], pc: NDArray[np.float64]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Primary and SCI header cards of one calints file.

    Parameters
    ----------
    p : Preset
        Mode.
    e : Exposure
        The exposure.
    n_dither : int
        Reference dither points of the programme.
    crpix : tuple of float
        1-based ``(CRPIX1, CRPIX2)``.
    pc : ndarray, (2, 2)
        ``PC`` matrix of the exposure's roll.

    Returns
    -------
    primary, sci : dict
        Card name -> value.
    """
    readpatt, nframes, groupgap, ngroups, tframe = p.readout
    tgroup, eff, t_int = exposure_times(p)
    duration = e.nints * t_int
    end = e.start + duration / 86400
    date, time = _iso(e.start)
    pattern = (
        ("5-POINT-BOX" if p.instrument == "NIRCAM" else "5-POINT-SMALL-GRID")
        if n_dither == 5
        else (("9-POINT-CIRCLE" if p.instrument == "NIRCAM" else "9-POINT-SMALL-GRID") if n_dither == 9 else "NONE")
    )
    prim: dict[str, Any] = {
        "DATE": f"{date}T00:00:00.000",
        "ORIGIN": "coron3_dask.simulate",
        "TIMESYS": "UTC",
        "FILENAME": e.file,
        "DATAMODL": "CubeModel",
        "TELESCOP": "JWST",
        "DATE-OBS": date,
        "TIME-OBS": time,
        "PROGRAM": PROGRAM,
        "ASNPOOL": POOL,  # stage-2 products name the association pool they came from
        "OBSERVTN": f"{e.observation:03d}",
        "VISIT": "001",
        "VISITGRP": "03",
        "SEQ_ID": "1",
        "ACT_ID": "0a" if e.is_psf else "08",
        "EXPOSURE": f"{e.number:05d}",
        "VISIT_ID": f"{PROGRAM}{e.observation:03d}001",
        "TEMPLATE": f"{p.instrument.title()} Coronagraphic Imaging",
        "TARGPROP": e.target[0],
        "TARGNAME": e.target[0],
        "TARGTYPE": "FIXED",
        "TARG_RA": e.target[1],
        "TARG_DEC": e.target[2],
        "INSTRUME": p.instrument,
        "DETECTOR": p.detector,
        "FILTER": p.filter,
        "PUPIL": p.pupil,
        "CORONMSK": p.coronmsk,
        "EXP_TYPE": p.exp_type,
        "EXPSTART": e.start,
        "EXPMID": (e.start + end) / 2,
        "EXPEND": end,
        "READPATT": readpatt,
        "NOUTPUTS": 1,
        "NINTS": e.nints,
        "NGROUPS": ngroups,
        "NFRAMES": nframes,
        "GROUPGAP": groupgap,
        "TFRAME": tframe,
        "TGROUP": tgroup,
        "EFFINTTM": eff,
        "EFFEXPTM": eff * e.nints,
        "TMEASURE": eff,
        "DURATION": duration,
        "IS_PSF": e.is_psf,
        **subarray_cards(p),
        "APERNAME": p.aperture,
        "PATTTYPE": "NONE",
        "SMGRDPAT": pattern if e.is_psf else "NONE",
        "PATT_NUM": e.dither[0],
        "NUMDTHPT": n_dither if e.is_psf else 1,
        "SUBPXPTS": 1,
        "XOFFSET": e.dither[1][1] * p.pixel_scale_arcsec,
        "YOFFSET": e.dither[1][0] * p.pixel_scale_arcsec,
        **{
            f"S_{step}": "COMPLETE"
            for step in ("DQINIT", "SATURA", "REFPIX", "LINEAR", "DARK", "JUMP", "RAMP", "WCS", "FLAT", "PHOTOM")
        },
    }
    if p.instrument == "NIRCAM":
        prim.update(MODULE="A", CHANNEL="LONG" if p.detector.endswith("LONG") else "SHORT")
    scale = p.pixel_scale_arcsec / 3600
    crval = (e.target[1], e.target[2])
    corners = [(-0.5, -0.5), (p.shape[1] - 0.5, -0.5), (p.shape[1] - 0.5, p.shape[0] - 0.5), (-0.5, p.shape[0] - 0.5)]
    sky = [pixel_to_sky(x + 1, y + 1, crval, crpix, pc, scale) for x, y in corners]
    sci = {
        "BUNIT": "MJy/sr",
        "WCSAXES": 2,
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CRPIX1": crpix[0],
        "CRPIX2": crpix[1],
        "CRVAL1": crval[0],
        "CRVAL2": crval[1],
        "CDELT1": scale,
        "CDELT2": scale,
        "PC1_1": pc[0, 0],
        "PC1_2": pc[0, 1],
        "PC2_1": pc[1, 0],
        "PC2_2": pc[1, 1],
        "RADESYS": "ICRS",
        "RA_REF": crval[0],
        "DEC_REF": crval[1],
        "ROLL_REF": e.roll,
        "V2_REF": p.v2v3_ref[0],
        "V3_REF": p.v2v3_ref[1],
        "V3I_YANG": p.v3i_yang,
        "VPARITY": -1,
        "PA_V3": e.roll,
        "S_REGION": "POLYGON ICRS " + " ".join(f"{a:.9f} {d:.9f}" for a, d in sky),
        "PIXAR_SR": math.radians(scale) ** 2,
        "PIXAR_A2": p.pixel_scale_arcsec**2,
        "PHOTMJSR": p.photmjsr,
        "PHOTUJA2": p.photmjsr * 1e12 * math.radians(scale) ** 2 / p.pixel_scale_arcsec**2,
    }
    return prim, sci


def int_times(start: float, nints: int, t_int: float) -> NDArray[np.void]:
    """INT_TIMES rows; BJD_TDB is approximated as UTC + 69.184 s (TT - UTC), with no light-time term."""
    times = np.zeros(
        nints,
        dtype=[("integration_number", "i4")]
        + [(f"int_{w}_{s}", "f8") for s in ("MJD_UTC", "BJD_TDB") for w in ("start", "mid", "end")],
    )
    times["integration_number"] = np.arange(1, nints + 1)
    for k, w in enumerate(("start", "mid", "end")):
        mjd = start + (np.arange(nints) + k / 2) * t_int / 86400
        times[f"int_{w}_MJD_UTC"], times[f"int_{w}_BJD_TDB"] = mjd, mjd + 69.184 / 86400
    return times


def write_products(
    out: Path,
    p: Preset,
    plan: list[Exposure],
    params: dict[str, Any],
    comps: tuple[Companion, ...],
    sky: list[tuple[float, float]],
    exposures: list[dict[str, Any]],
    cosmic: list[dict[str, Any]],
    dq_frame: NDArray[np.uint32],
    ratio: float,
    flux: float,
    optics: Coronagraph,
    static: NDArray[np.float64],
) -> SimulatedProgramme:
    """Write the PSFMASK, the contrast-calibration files, the association and truth.json.

    ``optics`` and ``static`` (the seed's static aberration) give the off-axis PSF model and the
    mask transmission map; the other arguments are what :func:`~coron3_dask.simulate.simulate_programme`
    planned and simulated.

    Returns
    -------
    SimulatedProgramme
        Paths and names of everything the programme wrote.
    """
    inst = p.instrument.lower()
    bad = np.argwhere(((dq_frame & dq.DO_NOT_USE) > 0) & ((dq_frame & dq.NON_SCIENCE) == 0)).tolist()
    mask_path = out / f"jwst_{inst}_psfmask_sim.fits"
    files.write_fits(
        mask_path,
        {
            "DATE": "2023-12-01T00:00:00.000",
            "FILENAME": mask_path.name,
            "DATAMODL": "PsfMaskModel",
            "TELESCOP": "JWST",
            "REFTYPE": "PSFMASK",
            "PEDIGREE": "SIMULATION",
            "DESCRIP": "Simulated PSFMASK reference file",
            "AUTHOR": "coron3_dask.simulate",
            "USEAFTER": "2022-01-01T00:00:00",
            "INSTRUME": p.instrument,
            "DETECTOR": p.detector,
            "FILTER": p.filter,
            "PUPIL": p.pupil,
            "CORONMSK": p.coronmsk,
            "EXP_TYPE": p.exp_type,
            **subarray_cards(p),
        },
        [files.Extension("SCI", psfmask(p))],
    )
    opt_elem = "-".join(sorted((v.lower() for v in (p.filter, p.pupil) if v), key=str.lower))
    subarray = "" if p.subarray == "FULL" else f"-{p.subarray.lower()}"
    product = f"jw{PROGRAM}-{ASN_ID}_t001_{inst}_{opt_elem}{subarray}"
    members = sorted(exposures, key=lambda x: (x["exptype"] != "science", x["file"]))
    asn = {
        "asn_type": "coron3",
        "asn_rule": f"candidate_Asn_Lv3{'NRC' if inst == 'nircam' else 'MIR'}Coron",
        "version_id": POOL.split("_")[1],
        "code_version": "coron3_dask.simulate",
        "degraded_status": "No known degraded exposures in association.",
        "program": PROGRAM,
        "constraints": "simulated: program 01386, one target, coronagraphic science + PSF reference",
        "asn_id": ASN_ID,
        "target": "t001",
        "asn_pool": POOL,
        "products": [
            {
                "name": product,
                "members": [
                    {
                        "expname": m["file"],
                        "exptype": m["exptype"],
                        "exposerr": "null",
                        "asn_candidate": f"[('{ASN_ID}', 'coron')]",
                    }
                    for m in members
                ],
            }
        ],
    }
    asn_path = out / f"jw{PROGRAM}-{ASN_ID}_{dt.date(2023, 12, 21):%Y%m%d}t060000_coron3_00001_asn.json"
    psf_path, trans_path, fwhm, frac = _write_calibration(out, p, product, optics, static)
    host = flux * p.photmjsr / p.gain  # SCI = e- per integration * PHOTMJSR / (EFFINTTM * GAIN)
    truth = {
        "seed": params["seed"],
        "parameters": params,
        "preset": dataclasses.asdict(p),
        "conventions": "pixels are 0-based numpy (y=row, x=column), FITS/WCS pixel = +1; offsets (dx, dy) move "
        "the star toward larger indices; star position = mask_center + offset",
        "mask_center_yx": list(p.mask_center),
        "star_flux_e_per_s": flux,
        "reference_flux_ratio": ratio,
        "units": {"sci": "MJy/sr", "e_per_s_to_mjysr": p.photmjsr / p.gain},
        "bad_pixel_count": len(bad),
        "bad_pixels_yx": bad,
        "non_science_columns": p.non_science_columns,
        "companions": [
            {**dataclasses.asdict(c), "ra": ra, "dec": dec, "flux_image_units": c.contrast * host}
            for c, (ra, dec) in zip(comps, sky, strict=True)
        ],
        "exposures": exposures,
        "cosmic_rays": cosmic,
        "psf_model_file": psf_path.name,
        "psf_model_fraction": frac,
        "transmission_file": trans_path.name,
        "host_flux_image_units": host,
        "reference_flux_image_units": host * ratio,
        "fwhm_px": fwhm,
    }
    truth_path = out / "truth.json"
    for path, obj in ((asn_path, asn), (truth_path, truth)):
        records.write_json(path, obj, indent=1)
    return SimulatedProgramme(
        directory=out,
        asn_path=asn_path,
        psfmask_path=mask_path,
        truth_path=truth_path,
        science_files=tuple(out / e.file for e in plan if not e.is_psf),
        psf_files=tuple(out / e.file for e in plan if e.is_psf),
        product_name=product,
        asn_id=ASN_ID,
        psf_model_path=psf_path,
        transmission_path=trans_path,
    )


def _write_calibration(
    out: Path, p: Preset, product: str, optics: Coronagraph, static: NDArray[np.float64]
) -> tuple[Path, Path, float, float]:
    """Write ``<product>_psfmodel.fits`` and ``<product>_transmission.fits``; return their paths, FWHM and PSFFRAC."""
    psf, fwhm = psf_model(optics, static)
    frac = float(psf.sum())
    common = {
        "DATE": "2023-12-01T00:00:00.000",
        "ORIGIN": "coron3_dask.simulate",
        "TELESCOP": "JWST",
        "INSTRUME": p.instrument,
        "DETECTOR": p.detector,
        "FILTER": p.filter,
        "PUPIL": p.pupil,
        "CORONMSK": p.coronmsk,
        "PIXSCALE": (p.pixel_scale_arcsec, "[arcsec] pixel scale"),
        "WAVELEN": (p.wavelength_um, "[um] wavelength of the monochromatic model"),
    }
    psf_path = out / f"{product}_psfmodel.fits"
    files.write_fits(
        psf_path,
        {
            "FILENAME": psf_path.name,
            **common,
            "FWHM": (fwhm, "[px] measured FWHM, pixel-integrated"),
            "PSFFRAC": (frac, "energy fraction in this cut-out"),
            "COMMENT": "Unocculted off-axis PSF through the Lyot stop, pixel-integrated, static aberration of "
            "this seed; normalised so that the total (untruncated) off-axis PSF sums to 1; centred on the "
            "central pixel.",
        },
        [files.Extension("SCI", psf)],
    )
    trans_path = out / f"{product}_transmission.fits"
    files.write_fits(
        trans_path,
        {
            "FILENAME": trans_path.name,
            **common,
            "COMMENT": "Intensity transmission of the coronagraphic focal-plane mask at every detector pixel "
            "centre (pointing offset 0): the factor applied to companions' flux in the simulation.",
        },
        [files.Extension("SCI", transmission_map(optics), {"BUNIT": "UNITLESS"})],
    )
    return psf_path, trans_path, fwhm, frac
