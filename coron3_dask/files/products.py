"""Official calwebb_coron3 product names, header bookkeeping and FITS layouts.

Names follow stpipe (spec sections 2.2-2.3): exposure-based products are
``{exposure root}_{asn_id}_{suffix}.fits`` and source-based ones ``{product}_{suffix}.fits``.
Layouts follow the jwst data models (``CubeModel``, ``QuadModel``, ``ImageModel``) so that
``stdatamodels.jwst.datamodels.open`` recognises each product.  Every product records how it
was made: a ``C3D_PROV`` table with the coron3_dask version, resolved parameters and inputs.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coron3_dask import __version__

__all__ = [
    "KNOWN_SUFFIXES",
    "Provenance",
    "exposure_product_name",
    "exposure_root",
    "product_primary",
    "provenance_table",
    "source_product_name",
]

#: stpipe's known suffixes (``jwst.lib.suffix.KNOW_SUFFIXES``): one trailing one is removed
KNOWN_SUFFIXES: tuple[str, ...] = tuple(
    """adaptive_trace_model adaptivetracemodelstep align_refs alignrefsstep ami ami-oi ami3pipeline
    ami_analyze ami_normalize amianalyzestep aminorm aminorm-oi aminormalizestep assign_mtwcs assign_wcs
    assignmtwcsstep assignwcsstep backgroundstep badpixselfcalstep barshadowstep bkg_subtract blot bsub
    bsubints c1d cal calints cat chargemigrationstep clean_flicker_noise cleanflickernoisestep
    combine1dstep combine_1d coron3pipeline crf crfints cube_build cubebuildstep dark dark_current
    darkcurrentstep darkpipeline detector1pipeline dq_init dqinitstep emicorr emicorrstep engdblog
    extract1dstep extract2dstep extract_1d extract_2d firstframe firstframestep flat_field flatfieldstep
    fringe fringestep gain_scale gainscalestep group_scale groupscalestep guider_cds guidercdsstep
    guiderpipeline hlsp hlspstep i2d image2pipeline image3pipeline imprint imprintstep ipc ipcstep jump
    jumpstep klip klipstep lastframe lastframestep linearity linearitystep master_background
    masterbackgroundmosstep masterbackgroundstep mbsub median msaflagopenstep outlier_detection
    outlierdetectionstep pathloss pathlossstep persistence persistencestep phot photom photomstep
    picture_frame pictureframestep pixelreplacestep psfalign psfstack psfsub ramp ramp_fit rampfitstep
    rate rateints refpix refpixstep resample resample_spec resamplespecstep resamplestep reset resetstep
    residual_fringe residualfringestep rscd rscdstep s2d s3d saturation saturationstep skymatch
    skymatchstep snr source_catalog sourcecatalogstep sourcetypestep spec2nrslamp spec2pipeline
    spec3pipeline spectral_leak spectralleakstep srctype stackrefs stackrefsstep straylight
    straylightstep superbias superbiasstep targ_centroid targcentroidstep tso3pipeline tsophotometrystep
    tweakreg tweakregstep uncal wavecorrstep wfscmb wfscombine wfscombinestep wfsscontamstep white_light
    whitelightstep whtlt x1d x1dints""".split()
)
_SUFFIX_RE = re.compile(r"^(?P<root>.+?)(?:[_-](?:" + "|".join(map(re.escape, KNOWN_SUFFIXES)) + r"))?$")

#: step status keywords written by each step
STEP_KEYWORDS = {
    "outlier_detection": "S_OUTLIR",
    "stack_refs": "S_PSFSTK",
    "align_refs": "S_PSFALI",
    "klip": "S_KLIP",
    "resample": "S_RESAMP",
}


def exposure_root(filename: str | Path) -> str:
    """Exposure root of a member file name: extension and one known suffix removed.

    Examples
    --------
    >>> exposure_root("jw01386002001_03108_00001_nrcalong_calints.fits")
    'jw01386002001_03108_00001_nrcalong'
    >>> exposure_root("x_c1020_crfints.fits")
    'x_c1020'
    """
    stem = Path(filename).name
    if "." in stem:
        stem = stem[: stem.index(".")]
    match = _SUFFIX_RE.match(stem)
    return match.group("root") if match else stem


def exposure_product_name(member: str | Path, asn_id: str, suffix: str) -> str:
    """``{exposure root}_{asn_id}_{suffix}.fits`` (crfints, psfalign, psfsub).

    Examples
    --------
    >>> exposure_product_name("jw01386002001_03108_00001_nrcalong_calints.fits", "c1020", "psfsub")
    'jw01386002001_03108_00001_nrcalong_c1020_psfsub.fits'
    """
    return f"{exposure_root(member)}_{asn_id}_{suffix}.fits"


def source_product_name(product: str, suffix: str) -> str:
    """``{product}_{suffix}.fits`` (psfstack, i2d).

    Examples
    --------
    >>> source_product_name("jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r", "i2d")
    'jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r_i2d.fits'
    """
    return f"{product}_{suffix}.fits"


class Provenance:
    """How a run was made: software version, resolved parameters, inputs.

    Parameters
    ----------
    parameters : mapping
        The resolved configuration (``Coron3Config.to_dict()``).
    inputs : sequence of path
        Association and every member and reference file used.
    """

    def __init__(self, parameters: Mapping[str, Any], inputs: Sequence[str | Path]) -> None:
        self.parameters = dict(parameters)
        self.inputs = [str(p) for p in inputs]
        self.created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable record."""
        import dask
        import xarray

        return {
            "software": "coron3_dask",
            "version": __version__,
            "created_utc": self.created,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "dask": dask.__version__,
            "xarray": xarray.__version__,
            "parameters": self.parameters,
            "inputs": self.inputs,
        }


def provenance_table(provenance: Provenance, sources: Sequence[str | Path] = ()) -> np.ndarray:
    """Structured (key, value) array for the ``C3D_PROV`` binary-table extension.

    Parameters
    ----------
    provenance : Provenance
        The run's record.
    sources : sequence of path
        The input files this particular product was made from.

    Returns
    -------
    ndarray
        Rows ``(key, value)``; non-string values are JSON-encoded.
    """
    record = provenance.to_dict()
    record["sources"] = [Path(s).name for s in sources]
    rows = [(k, v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in record.items()]
    width = max(len(v) for _, v in rows)
    return np.array(rows, dtype=[("key", "S16"), ("value", f"S{width}")])


_DROP = {
    "SIMPLE",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "NAXIS3",
    "NAXIS4",
    "EXTEND",
    "EXTNAME",
    "XTENSION",
    "PCOUNT",
    "GCOUNT",
    "CHECKSUM",
    "DATASUM",
}


def clean_header(header: Mapping[str, Any]) -> dict[str, Any]:
    """Copy header cards, dropping structural keywords that the writer sets itself."""
    return {k: v for k, v in header.items() if k not in _DROP and not k.startswith("NAXIS")}


def product_primary(
    primary: Mapping[str, Any],
    *,
    filename: str,
    datamodel: str,
    steps: Mapping[str, str],
    asn: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """PRIMARY header of a product: the input's cards with product bookkeeping updated.

    Parameters
    ----------
    primary : mapping
        The input exposure's PRIMARY cards.
    filename : str
        The product's file name (FILENAME).
    datamodel : str
        ``CubeModel``, ``QuadModel`` or ``ImageModel`` (DATAMODL).
    steps : mapping
        Step name to status (``{"klip": "COMPLETE"}``), written as ``S_*`` keywords.
    asn : mapping, optional
        ``{"ASNPOOL": ..., "ASNTABLE": ...}``.

    Returns
    -------
    dict
    """
    cards = clean_header(primary)
    cards.update(FILENAME=filename, DATAMODL=datamodel, ORIGIN=cards.get("ORIGIN", "STSCI"))
    cards["CAL_VER"] = (cards.get("CAL_VER", ""), "calibration software version")
    cards["C3D_VER"] = (__version__, "coron3_dask version that made this product")
    for step, status in steps.items():
        cards[STEP_KEYWORDS[step]] = status
    if asn:
        cards.update(asn)
    return cards
