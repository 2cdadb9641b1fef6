"""Products: official names (spec §2.3), jwst data-model layouts, headers, provenance, content.

Names are checked against the spec's literal examples and against jwst's own
``remove_suffix``.  Product files come from tiny runs of the command line (default and
``--jwst-compat``) and are read back independently with astropy and stdatamodels.
"""

from __future__ import annotations

import contextlib
import io as io_module
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from helpers import restored_process_state

import coron3_dask
from coron3_dask import cli
from coron3_dask.files.products import exposure_product_name, exposure_root, source_product_name
from coron3_dask.simulate import simulate_programme

N_SCI_INT = N_REF_INT = 2
STEP_KEYWORDS = ("S_OUTLIR", "S_PSFSTK", "S_PSFALI", "S_KLIP", "S_RESAMP")


# --------------------------------------------------------------------------- names (spec §2.3)
@pytest.mark.parametrize(("member", "asn_id", "suffix", "expected"), [
    # NIRCam regression set (spec §2.3 table)
    ("jw01386001001_0310a_00001_nrcalong_calints.fits", "c1020", "crfints",
     "jw01386001001_0310a_00001_nrcalong_c1020_crfints.fits"),
    ("jw01386002001_03108_00001_nrcalong_calints.fits", "c1020", "crfints",
     "jw01386002001_03108_00001_nrcalong_c1020_crfints.fits"),
    ("jw01386002001_03108_00001_nrcalong_calints.fits", "c1020", "psfalign",
     "jw01386002001_03108_00001_nrcalong_c1020_psfalign.fits"),
    ("jw01386002001_03108_00001_nrcalong_calints.fits", "c1020", "psfsub",
     "jw01386002001_03108_00001_nrcalong_c1020_psfsub.fits"),
    # MIRI example
    ("jw01386004001_04101_00001_mirimage_calints.fits", "c1002", "psfsub",
     "jw01386004001_04101_00001_mirimage_c1002_psfsub.fits"),
    # already-suffixed input: only the last known suffix goes
    ("x_c1020_crfints.fits", "c1020", "psfalign", "x_c1020_c1020_psfalign.fits"),
    ("x_cal_crfints.fits", "c1020", "psfsub", "x_cal_c1020_psfsub.fits"),
    # '-' separates a suffix as well as '_'
    ("jw01386002001_03108_00001_nrcalong-calints.fits", "c1020", "psfsub",
     "jw01386002001_03108_00001_nrcalong_c1020_psfsub.fits"),
    ("jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r_i2d.fits", "c1020", "psfsub",
     "jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r_c1020_psfsub.fits"),
    # a directory is not part of the name; a non-suffix ending is kept
    ("/data/run.v2/jw01386002001_03108_00001_nrcalong_calints.fits", "c1020", "crfints",
     "jw01386002001_03108_00001_nrcalong_c1020_crfints.fits"),
    ("x_recalints.fits", "a3001", "crfints", "x_recalints_a3001_crfints.fits"),
])
def test_exposure_product_name_matches_the_spec(member, asn_id, suffix, expected):
    assert exposure_product_name(member, asn_id, suffix) == expected
    assert exposure_product_name(Path(member), asn_id, suffix) == expected


@pytest.mark.parametrize(("filename", "root"), [
    ("jw01386002001_03108_00001_nrcalong_calints.fits", "jw01386002001_03108_00001_nrcalong"),
    ("x_c1020_crfints.fits", "x_c1020"),
    ("jw01386004001_04101_00001_mirimage_rateints.fits", "jw01386004001_04101_00001_mirimage"),
    ("x-ami-oi.fits", "x"),  # a suffix that itself contains '-'
    ("x_psfstack.fits", "x"),
    ("x_median.fits", "x"),
])
def test_exposure_root(filename, root):
    assert exposure_root(filename) == root


@pytest.mark.parametrize(("product", "suffix", "expected"), [
    ("jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r", "psfstack",
     "jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r_psfstack.fits"),
    ("jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r", "i2d",
     "jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r_i2d.fits"),
    ("jw01386-c1002_t001_miri_f1140c-mask1140", "i2d", "jw01386-c1002_t001_miri_f1140c-mask1140_i2d.fits"),
])
def test_source_product_name_matches_the_spec(product, suffix, expected):
    assert source_product_name(product, suffix) == expected


_STEMS = [f"jw01386002001_03108_00001_nrcalong{sep}{suffix}" for sep in "_-" for suffix in (
    "calints", "crfints", "cal", "rate", "rateints", "i2d", "psfalign", "psfstack", "psfsub", "median", "ami-oi",
    "c1020", "nrcalong", "calints_crfints", "crfints-psfsub")]


@pytest.mark.parity
@pytest.mark.parametrize("stem", _STEMS)
def test_exposure_root_agrees_with_jwst_remove_suffix(stem):
    suffix = pytest.importorskip("jwst.lib.suffix")
    assert exposure_root(f"{stem}.fits") == suffix.remove_suffix(stem)[0]


@pytest.mark.parity
def test_every_jwst_known_suffix_is_removed():
    suffix = pytest.importorskip("jwst.lib.suffix")
    differ = [s for s in sorted(suffix.KNOW_SUFFIXES)
              if exposure_root(f"x_{s}.fits") != suffix.remove_suffix(f"x_{s}")[0]]
    assert not differ, f"{len(differ)} jwst suffixes not removed, e.g. {differ[:5]}"


# --------------------------------------------------------------------------- runs
def _run_cli(*argv: Any) -> tuple[int, str]:
    stderr = io_module.StringIO()
    with restored_process_state(), contextlib.redirect_stdout(io_module.StringIO()), \
            contextlib.redirect_stderr(stderr):
        code = cli.main([str(a) for a in argv])
    return code, stderr.getvalue()


@dataclass(frozen=True)
class Run:
    mode: str
    out: Path
    asn_path: Path
    programme: Any

    @property
    def asn(self) -> dict[str, Any]:
        return json.loads(self.asn_path.read_text())

    def members(self, kind: str) -> list[str]:
        return [m["expname"] for m in self.asn["products"][0]["members"] if m["exptype"] == kind]

    def crfints(self, member: str) -> Path:
        return self.out / f"{member.removesuffix('_calints.fits')}_{self.asn['asn_id']}_crfints.fits"

    def product(self, member: str, suffix: str) -> Path:
        return self.out / f"{member.removesuffix('_calints.fits')}_{self.asn['asn_id']}_{suffix}.fits"

    def kinds(self) -> list[tuple[str, Path]]:
        """``(kind, path)`` of every product file, kind from the name's last ``_`` field."""
        return [(p.stem.rsplit("_", 1)[1], p) for p in sorted(self.out.glob("*.fits"))]


@pytest.fixture(scope="module")
def programme(tmp_path_factory):
    """2 science exposures (rolls) x 2 integrations, 1 reference exposure x 2 integrations."""
    return simulate_programme(tmp_path_factory.mktemp("prod_prog"), n_science_ints=N_SCI_INT,
                              n_ref_ints=N_REF_INT, n_dither=1, seed=31)


@pytest.fixture(scope="module", params=["default", "jwst_compat"])
def run(request, programme, tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp(f"prod_{request.param}") / "products"
    extra = ["--jwst-compat"] if request.param == "jwst_compat" else []
    code, stderr = _run_cli("run", programme.asn_path, "--output-dir", out, "--psfmask", programme.psfmask_path,
                            "--scheduler", "threads", "--no-progress", *extra)
    assert code == 0, stderr
    return Run(request.param, out, programme.asn_path, programme)


@pytest.fixture(scope="module")
def reordered_run(programme, tmp_path_factory) -> Run:
    """Two PSF members listed against name order: roll 1 (used as a reference), then the reference star."""
    asn = json.loads(programme.asn_path.read_text())
    science = [m for m in asn["products"][0]["members"] if m["exptype"] == "science"]
    psf = [m for m in asn["products"][0]["members"] if m["exptype"] == "psf"]
    assert science[0]["expname"] > psf[0]["expname"]  # so ASN order != sorted order below
    asn["products"][0]["members"] = [science[1], {**science[0], "exptype": "psf"}, *psf]
    asn["products"][0]["name"] += "-reordered"
    asn_path = programme.directory / "reordered_asn.json"
    asn_path.write_text(json.dumps(asn, indent=1))
    out = tmp_path_factory.mktemp("prod_reordered") / "products"
    code, stderr = _run_cli("run", asn_path, "--output-dir", out, "--psfmask", programme.psfmask_path,
                            "--scheduler", "synchronous", "--no-progress", "--set", "resample.skip=true")
    assert code == 0, stderr
    return Run("reordered", out, asn_path, programme)


def _data(path: Path, ext: str = "SCI") -> np.ndarray:
    return np.asarray(fits.getdata(path, ext))


def _provenance(path: Path) -> dict[str, str]:
    return {str(row["key"]).strip(): str(row["value"]).strip() for row in fits.getdata(path, "C3D_PROV")}


def _bits(a: np.ndarray) -> np.ndarray:
    """Native-endian raw bits of a 4-byte array, so NaN payloads compare too."""
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="))).view(np.uint32)


# --------------------------------------------------------------------------- layout and headers
def test_run_wrote_every_kind(run):
    n_sci, n_psf = len(run.members("science")), len(run.members("psf"))
    counts = {kind: sum(k == kind for k, _ in run.kinds()) for kind in ("crfints", "psfstack", "psfalign", "psfsub")}
    counts["i2d"] = sum(k == "i2d" for k, _ in run.kinds())
    assert counts == {"crfints": n_sci + n_psf, "psfstack": 1, "psfalign": n_sci, "psfsub": n_sci, "i2d": 1}


@pytest.mark.parity
def test_every_product_opens_as_its_data_model(run):
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    ny, nx = json.loads(run.programme.truth_path.read_text())["preset"]["shape"]
    n_ref = N_REF_INT * len(run.members("psf"))
    expected = {"crfints": "CubeModel", "psfstack": "CubeModel", "psfsub": "CubeModel", "i2d": "ImageModel",
                "psfalign": "QuadModel" if run.mode == "default" else "CubeModel"}
    shapes = {"crfints": (N_SCI_INT, ny, nx), "psfstack": (n_ref, ny, nx), "psfsub": (N_SCI_INT, ny, nx),
              "psfalign": (N_SCI_INT, n_ref, ny, nx) if run.mode == "default" else (n_ref, ny, nx)}
    for kind, path in run.kinds():
        with datamodels.open(path) as model:
            assert type(model).__name__ == expected[kind], path.name
            assert model.meta.filename == path.name
            assert model.data.dtype.newbyteorder("=") == np.float32, path.name
            if kind != "i2d":
                assert model.dq.dtype.newbyteorder("=") == np.uint32, path.name
                assert model.data.shape == shapes[kind], path.name  # N_SCI_INT == N_REF_INT for crfints


# which steps ran on each product's data, and which come later and must not be claimed
_RAN = {"crfints": {"S_OUTLIR"}, "psfstack": {"S_OUTLIR", "S_PSFSTK"},
        "psfalign": {"S_OUTLIR", "S_PSFSTK", "S_PSFALI"}, "psfsub": {"S_OUTLIR", "S_KLIP"},
        "i2d": {"S_OUTLIR", "S_KLIP", "S_RESAMP"}}
_LATER = {"crfints": {"S_PSFSTK", "S_PSFALI", "S_KLIP", "S_RESAMP"}, "psfstack": {"S_PSFALI", "S_KLIP", "S_RESAMP"},
          "psfalign": {"S_KLIP", "S_RESAMP"}, "psfsub": {"S_RESAMP"}, "i2d": set()}


def test_primary_headers(run):
    asn = run.asn
    datamodel = {"crfints": "CubeModel", "psfstack": "CubeModel", "psfsub": "CubeModel", "i2d": "ImageModel",
                 "psfalign": "QuadModel" if run.mode == "default" else "CubeModel"}
    for kind, path in run.kinds():
        header = fits.getheader(path, 0)
        assert header["FILENAME"] == path.name
        assert header["DATAMODL"] == datamodel[kind], path.name
        assert header["ASNPOOL"] == asn["asn_pool"], path.name
        assert header["ASNTABLE"] == run.asn_path.name, path.name
        assert header["C3D_VER"] == coron3_dask.__version__, path.name
        complete = {k for k in STEP_KEYWORDS if header.get(k) == "COMPLETE"}
        assert _RAN[kind] <= complete, f"{path.name}: {sorted(_RAN[kind] - complete)} not COMPLETE"
        assert not complete & _LATER[kind], f"{path.name} claims later steps {sorted(complete & _LATER[kind])}"


def test_provenance_lists_the_association_and_members(run):
    prog = run.programme
    wanted = {str(Path(p).resolve()) for p in (run.asn_path, *prog.science_files, *prog.psf_files)}
    for kind, path in run.kinds():
        prov = _provenance(path)
        assert prov["version"] == coron3_dask.__version__
        assert wanted <= {str(Path(p).resolve()) for p in json.loads(prov["inputs"])}, path.name
        params = json.loads(prov["parameters"])
        assert params["align_refs"]["jwst_compat"] is (run.mode == "jwst_compat")
        if kind == "crfints":
            assert len(json.loads(prov["sources"])) == 1
            assert path.name.startswith(json.loads(prov["sources"])[0].removesuffix("_calints.fits"))


def test_provenance_sources_of_exposure_products(reordered_run):
    run = reordered_run
    (stack,) = run.out.glob("*_psfstack.fits")
    assert json.loads(_provenance(stack)["sources"]) == run.members("psf")
    for member in run.members("science"):
        assert json.loads(_provenance(run.product(member, "psfsub"))["sources"]) == [member]


def test_psfalign_sources_name_its_science_exposure_and_every_reference(reordered_run):
    run = reordered_run
    for member in run.members("science"):
        sources = set(json.loads(_provenance(run.product(member, "psfalign"))["sources"]))
        assert {member, *run.members("psf")} <= sources


def test_i2d_sources_name_the_science_exposures(run):
    (i2d,) = run.out.glob("*_i2d.fits")
    assert json.loads(_provenance(i2d)["sources"]) == run.members("science")


def test_int_times_follow_the_inputs(run):
    prog = run.programme
    for member in (*prog.science_files, *prog.psf_files):
        truth = fits.getdata(member, "INT_TIMES")["integration_number"]
        products = [run.crfints(member.name)]
        if member in prog.science_files:
            products.append(run.product(member.name, "psfsub"))
        for path in products:
            table = fits.getdata(path, "INT_TIMES")
            nints = fits.getval(path, "NINTS")
            assert len(table) == nints == _data(path).shape[0], path.name
            np.testing.assert_array_equal(table["integration_number"], truth)


def test_psfalign_shifts_table_is_complete(run):
    n_ref = N_REF_INT * len(run.members("psf"))
    for member in run.members("science"):
        path = run.product(member, "psfalign")
        table = fits.getdata(path, "SHIFTS")
        pairs = list(zip(table["integration"].tolist(), table["ref"].tolist(), strict=True))
        n_int = N_SCI_INT if run.mode == "default" else 1  # compat: shifts from integration 0 only
        assert len(pairs) == n_int * n_ref, path.name
        assert set(pairs) == {(i, r) for i in range(n_int) for r in range(n_ref)}, path.name
        assert set(np.char.strip(table["ref_source"].astype(str))) == set(run.members("psf"))
        assert np.isfinite(table["sx"]).all() and np.isfinite(table["sy"]).all()


# --------------------------------------------------------------------------- content
def test_psfstack_is_the_psf_crfints_in_asn_order_bit_for_bit(reordered_run):
    run = reordered_run
    psf = run.members("psf")
    assert psf != sorted(psf)  # the order under test is not the name order
    (stack,) = run.out.glob("*_psfstack.fits")
    for ext in ("SCI", "ERR", "DQ"):
        stacked = _data(stack, ext)
        in_order = np.concatenate([_data(run.crfints(m), ext) for m in psf])
        assert stacked.shape == in_order.shape
        assert np.array_equal(_bits(stacked), _bits(in_order)), ext
        by_name = np.concatenate([_data(run.crfints(m), ext) for m in sorted(psf)])
        assert not np.array_equal(_bits(stacked), _bits(by_name)), f"{ext}: order would not be detected"
    assert np.isnan(_data(stack)).any()  # the NaNs (bad pixels) were part of the comparison


def test_psfsub_dq_is_the_science_crfints_dq_and_sci_has_no_nan(run):
    for member in run.members("science"):
        psfsub = run.product(member, "psfsub")
        np.testing.assert_array_equal(_data(psfsub, "DQ"), _data(run.crfints(member), "DQ"))
        assert np.isnan(_data(run.crfints(member))).any()  # there were NaNs to replace
        assert not np.isnan(_data(psfsub)).any(), psfsub.name


def test_i2d_layout_wcs_and_ndriz(run):
    prog = run.programme
    (i2d,) = run.out.glob("*_i2d.fits")
    with fits.open(i2d) as hdul:
        names = {hdu.name for hdu in hdul}
        assert {"SCI", "ERR", "WHT", "CON", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"} <= names
        sci = hdul["SCI"]
        assert sci.data.ndim == 2
        for name in ("ERR", "WHT", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"):
            assert hdul[name].data.shape == sci.data.shape, name
        n_images = N_SCI_INT * len(prog.science_files)
        assert hdul["CON"].data.shape == (math.ceil(n_images / 32), *sci.data.shape)
        assert hdul["CON"].data.dtype.newbyteorder("=") == np.int32
        assert hdul[0].header["NDRIZ"] == len(prog.science_files)  # exposures, not integrations
        wcs, (ny, nx) = WCS(sci.header), sci.data.shape
    assert wcs.has_celestial and wcs.pixel_n_dim == 2
    truth = json.loads(prog.truth_path.read_text())
    scale = float(np.mean(proj_plane_pixel_scales(wcs.celestial))) * 3600  # CUNIT deg
    assert scale == pytest.approx(truth["preset"]["pixel_scale_arcsec"], rel=0.02)
    ra, dec = next(e["target_ra_dec"] for e in truth["exposures"] if e["exptype"] == "science")
    x, y = wcs.world_to_pixel_values(ra, dec)
    assert 0 <= x < nx and 0 <= y < ny, f"target at pixel ({x}, {y}) outside the {nx}x{ny} i2d"
