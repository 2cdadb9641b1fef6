"""coron3_dask.files: associations, lazy calints, PSFMASK lookup, streaming writer."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from astropy.io import fits

from coron3_dask import files
from coron3_dask.files import Extension, InputError, fits_stream
from coron3_dask.files.fits_stream import ExtensionSpec

CRDS = Path(__file__).parents[3] / "shared" / "data" / "crds"  # /work/shared/data/crds for the repo at /work/main
SHAPE = (3, 8, 10)


# --------------------------------------------------------------------------- helpers
def _forbid_compute(dsk, keys, **kwargs):
    raise AssertionError("something computed")


def _cube(rng: np.random.Generator, shape=SHAPE) -> np.ndarray:
    return rng.normal(size=shape).astype(np.float32)


def make_calints(path: Path, shape=SHAPE, *, seed=0, skip=(), extra=(), int_numbers=None, primary=None) -> dict:
    """Write a small calints file with write_fits (big-endian on disk); return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "SCI": _cube(rng, shape), "ERR": np.abs(_cube(rng, shape)),
        "DQ": rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32),
        "VAR_POISSON": np.abs(_cube(rng, shape)), "VAR_RNOISE": np.abs(_cube(rng, shape)),
        "AREA": np.abs(_cube(rng, shape[1:])) + 1,
    }
    arrays["DQ"].flat[:2] = [0, 2**32 - 1]
    arrays.update(extra)
    sci_header = {"BUNIT": "MJy/sr", "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 5.0, "CRVAL1": 80.5,
                  "CDELT1": 1.7e-5, "RA_REF": 80.5, "ROLL_REF": 12.5}
    exts = [Extension(name, arr, sci_header if name == "SCI" else {})
            for name, arr in arrays.items() if name not in skip]
    if int_numbers is not None:
        columns = [("integration_number", ">i4"), ("int_mid_MJD_UTC", ">f8")]
        table = np.zeros(len(int_numbers), dtype=columns)
        table["integration_number"] = int_numbers
        table["int_mid_MJD_UTC"] = 60000.5 + np.arange(len(int_numbers))
        exts.append(Extension("INT_TIMES", table, table=True))
    cards = {"TELESCOP": "JWST", "INSTRUME": "NIRCAM", "NINTS": shape[0], "EXPTIME": 12.5, "IS_PSF": False,
             "COMMENT": "a comment", "HISTORY": "a history"}
    files.write_fits(path, cards | (primary or {}), exts)
    return arrays


def write_asn(tmp_path: Path, doc, name="asn.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


@pytest.fixture
def asn_dir(tmp_path):
    for name in ("sci1_calints.fits", "sci2_calints.fits", "psf1_calints.fits", "psf2_calints.fits", "ta_cal.fits"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def valid_asn() -> dict:
    return {
        "asn_type": "coron3", "asn_rule": "candidate_Asn_Lv3NRCCoron", "asn_id": "c1020",
        "asn_pool": "jw01386_20220909t073458_pool.csv",
        "products": [{
            "name": "jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r",
            "members": [
                {"expname": "sci1_calints.fits", "exptype": "science"},
                {"expname": "psf1_calints.fits", "exptype": "PSF"},
                {"expname": "sci2_calints.fits", "exptype": "Science", "exposerr": "null"},
                {"expname": "psf2_calints.fits", "exptype": "psf"},
                {"expname": "ta_cal.fits", "exptype": "target_acquisition"},
            ],
        }],
    }


# --------------------------------------------------------------------------- association
def test_association_round_trip(asn_dir, tmp_path_factory, monkeypatch):
    path = write_asn(asn_dir, valid_asn())
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # members resolve against the ASN's folder, not cwd
    asn = files.read_association(os.path.relpath(path))
    assert asn.path == path.resolve()
    assert (asn.asn_id, asn.asn_pool, asn.asn_table) == ("c1020", "jw01386_20220909t073458_pool.csv", "asn.json")
    assert asn.product_name == "jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r"
    assert asn.science == (asn_dir / "sci1_calints.fits", asn_dir / "sci2_calints.fits")
    assert asn.psf == (asn_dir / "psf1_calints.fits", asn_dir / "psf2_calints.fits")
    assert all(p.is_absolute() for p in asn.science + asn.psf)
    assert asn.raw == valid_asn()


def _drop(*keys):
    def edit(doc):
        target = doc
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
        return doc
    return edit


def _set(value, *keys):
    def edit(doc):
        target = doc
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        return doc
    return edit


def _members(predicate):
    def edit(doc):
        doc["products"][0]["members"] = [m for m in doc["products"][0]["members"] if predicate(m)]
        return doc
    return edit


BAD_ASNS = {
    "invalid-json": ('{\n  "asn_type": "coron3",\n  "asn_id": ,\n}', ["not valid JSON", "line 3 column 13"]),
    "not-an-object": ("[1, 2]", ["expected an object"]),
    "asn_type-missing": (_drop("asn_type"), ["asn_type missing"]),
    "asn_type-wrong": (_set("image3", "asn_type"), ["asn_type is 'image3', expected 'coron3'"]),
    "asn_id-missing": (_drop("asn_id"), ["asn_id missing"]),
    "products-missing": (_drop("products"), ["products missing"]),
    "products-empty": (_set([], "products"), ["products is empty"]),
    "name-missing": (_drop("products", 0, "name"), ["products[0].name missing"]),
    "members-missing": (_drop("products", 0, "members"), ["products[0].members missing"]),
    "members-empty": (_set([], "products", 0, "members"), ["products[0].members is empty"]),
    "expname-missing": (_drop("products", 0, "members", 1, "expname"), ["products[0].members[1].expname missing"]),
    "exptype-missing": (_drop("products", 0, "members", 2, "exptype"), ["products[0].members[2].exptype missing"]),
    "no-psf": (_members(lambda m: m["exptype"].lower() != "psf"), ["no psf members"]),
    "no-science": (_members(lambda m: m["exptype"].lower() != "science"), ["no science members"]),
    "file-missing": (_set("x_calints.fits", "products", 0, "members", 3, "expname"),
                     ["products[0].members[3].expname 'x_calints.fits' not found"]),
    "duplicate": (_set("sci1_calints.fits", "products", 0, "members", 2, "expname"),
                  ["products[0].members[2].expname 'sci1_calints.fits' duplicates members[0]"]),
    "several-at-once": (lambda d: _set("image3", "asn_type")(_set("x_calints.fits", "products", 0, "members", 3,
                                                                  "expname")(d)),
                        ["products[0].members[3].expname 'x_calints.fits' not found",
                         "asn_type is 'image3', expected 'coron3'"]),
}


@pytest.mark.parametrize("case", list(BAD_ASNS))
def test_bad_association_names_file_and_field(asn_dir, case):
    edit, expected = BAD_ASNS[case]
    path = write_asn(asn_dir, edit if isinstance(edit, str) else edit(valid_asn()))
    with pytest.raises(InputError) as info:
        files.read_association(path)
    message = str(info.value)
    assert "asn.json" in message
    for fragment in expected:
        assert fragment in message


def test_missing_association_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.json"):
        files.read_association(tmp_path / "nope.json")


# --------------------------------------------------------------------------- calints
def test_calints_round_trip_values_dtypes_and_metadata(tmp_path):
    path = tmp_path / "jw01_calints.fits"
    written = make_calints(path, int_numbers=[5, 6, 7], primary={"INTSTART": 5})
    with fits.open(path) as hdul:  # really big-endian on disk
        assert hdul["SCI"].data.dtype.byteorder == ">"
    ds = files.open_calints(path)
    assert set(ds.data_vars) == {"sci", "err", "dq", "var_poisson", "var_rnoise", "area"}
    assert ds["sci"].dims == ("integration", "y", "x") and ds["area"].dims == ("y", "x")
    expected_dtypes = {"sci": np.float32, "err": np.float32, "dq": np.uint32, "var_poisson": np.float32,
                       "var_rnoise": np.float32, "area": np.float32}
    loaded = ds.compute()
    for name, dtype in expected_dtypes.items():
        assert ds[name].dtype == np.dtype(dtype)
        assert loaded[name].values.dtype == np.dtype(dtype) and loaded[name].values.dtype.isnative
        np.testing.assert_array_equal(loaded[name].values, written[name.upper()])
    assert list(ds["int_number"].values) == [5, 6, 7]
    assert list(ds["source"].values) == ["jw01_calints.fits"] * 3
    assert ds.attrs["filename"] == "jw01_calints.fits" and ds.attrs["path"] == str(path.resolve())
    primary = ds.attrs["primary_header"]
    assert primary["INSTRUME"] == "NIRCAM" and primary["NINTS"] == 3 and primary["IS_PSF"] is False
    assert "COMMENT" not in primary and "HISTORY" not in primary
    assert all(isinstance(k, str) and (v is None or type(v) in (str, int, float, bool)) for k, v in primary.items())
    sci_header = ds.attrs["sci_header"]
    assert sci_header["CTYPE1"] == "RA---TAN" and sci_header["CRPIX1"] == 5.0 and sci_header["BUNIT"] == "MJy/sr"
    assert [row["integration_number"] for row in ds.attrs["int_times"]] == [5, 6, 7]
    assert ds.attrs["int_times"][1]["int_mid_MJD_UTC"] == pytest.approx(60001.5)


def test_calints_without_optional_extensions(tmp_path):
    path = tmp_path / "bare_calints.fits"
    make_calints(path, skip=("VAR_POISSON", "VAR_RNOISE", "AREA"))
    ds = files.open_calints(path)
    assert set(ds.data_vars) == {"sci", "err", "dq"}
    assert list(ds["int_number"].values) == [1, 2, 3]
    assert "int_times" not in ds.attrs


def test_open_calints_reads_no_pixels(tmp_path, monkeypatch):
    path = tmp_path / "lazy_calints.fits"
    make_calints(path)
    reads = []
    real_getdata = fits.getdata

    def counting_getdata(*args, **kwargs):
        reads.append(kwargs.get("extname"))
        return real_getdata(*args, **kwargs)

    monkeypatch.setattr(fits, "getdata", counting_getdata)
    with dask.config.set(scheduler=_forbid_compute):
        ds = files.open_calints(path)
    assert reads == []
    assert all(var.data.npartitions == 1 for var in ds.data_vars.values())  # one read task per extension
    ds.compute(scheduler="sync")
    assert sorted(reads) == sorted(["SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "AREA"])


def test_graph_holds_paths_not_pixels_and_survives_pickling(tmp_path):
    path = tmp_path / "big_calints.fits"
    written = make_calints(path, shape=(4, 320, 320))
    ds = files.open_calints(path)
    graph = dict(ds.__dask_graph__())
    assert len(pickle.dumps(graph)) < 50_000
    assert len(pickle.dumps(ds)) < 50_000
    restored = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(restored["sci"].values, written["SCI"])


def test_task_names_are_deterministic(tmp_path):
    path = tmp_path / "det_calints.fits"
    make_calints(path)
    first, second = files.open_calints(path), files.open_calints(str(path))
    for name in first.data_vars:
        assert first[name].data.name == second[name].data.name
        assert first[name].data.name.startswith(f"read-{name}-")
    assert set(dict(first.__dask_graph__())) == set(dict(second.__dask_graph__()))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a rewritten file gets new keys
    assert files.open_calints(path)["sci"].data.name != first["sci"].data.name


@pytest.mark.parity
def test_calints_written_by_stdatamodels(tmp_path):
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    rng = np.random.default_rng(3)
    shape = (2, 6, 7)
    model = datamodels.CubeModel(shape)
    model.data = _cube(rng, shape)
    model.err = np.abs(_cube(rng, shape))
    model.dq = rng.integers(0, 2**31, size=shape).astype(np.uint32)
    model.var_poisson = np.abs(_cube(rng, shape))
    model.var_rnoise = np.abs(_cube(rng, shape))
    model.var_flat = np.abs(_cube(rng, shape))
    model.area = np.ones(shape[1:], np.float32)
    model.int_times = [(i + 1, 60000.0 + i, 0.0, 0.0, 0.0, 0.0, 0.0) for i in range(2)]
    model.meta.instrument.name = "NIRCAM"
    model.meta.instrument.filter = "F335M"
    model.meta.instrument.coronagraph = "MASKA335R"
    model.meta.subarray.name = "SUB320A335R"
    model.meta.exposure.nints = 2
    path = tmp_path / "stsci_calints.fits"
    model.save(path)
    ds = files.open_calints(path).compute()
    assert set(ds.data_vars) == {"sci", "err", "dq", "var_poisson", "var_rnoise", "var_flat", "area"}
    for name, attr in [("sci", "data"), ("err", "err"), ("dq", "dq"), ("var_poisson", "var_poisson"),
                       ("var_flat", "var_flat"), ("area", "area")]:
        np.testing.assert_array_equal(ds[name].values, getattr(model, attr))
    assert ds["dq"].dtype == np.uint32 and ds["sci"].dtype == np.float32
    assert list(ds["int_number"].values) == [1, 2]
    primary = ds.attrs["primary_header"]
    assert (primary["INSTRUME"], primary["CORONMSK"], primary["DATAMODL"]) == ("NIRCAM", "MASKA335R", "CubeModel")
    model.close()


@pytest.mark.parametrize(
    ("cut", "fragment"),
    [(-3000, "truncated: AREA"), (2880 * 3 + 100, "truncated: SCI"), (2880 * 8 + 100, "corrupt or truncated"),
     (100, "not a readable FITS")],
    ids=["in-last-data", "in-sci-data", "in-err-header", "in-primary-header"],
)
def test_truncated_calints_names_the_file(tmp_path, cut, fragment):
    path = tmp_path / "cut_calints.fits"
    make_calints(path, shape=(4, 32, 32))  # PRIMARY, SCI header at 2880, SCI data 5760-22144, ERR header at 23040
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(InputError) as info:
        files.open_calints(path)
    assert "cut_calints.fits" in str(info.value) and fragment in str(info.value)


def test_not_fits(tmp_path):
    path = tmp_path / "text_calints.fits"
    path.write_text("hello, I am not FITS\n" * 200)
    with pytest.raises(InputError, match=r"text_calints\.fits.*not a readable FITS"):
        files.open_calints(path)
    with pytest.raises(InputError, match=r"absent_calints\.fits"):
        files.open_calints(tmp_path / "absent_calints.fits")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"skip": ("DQ",)}, "missing extension(s) DQ"),
        ({"skip": ("ERR", "DQ")}, "missing extension(s) ERR, DQ"),
        ({"extra": {"SCI": np.zeros((8, 10), np.float32)}}, "expected 3-D"),
        ({"extra": {"ERR": np.zeros((3, 8, 9), np.float32)}}, "ERR shape (3, 8, 9) != SCI shape (3, 8, 10)"),
        ({"extra": {"VAR_RNOISE": np.zeros((2, 8, 10), np.float32)}}, "VAR_RNOISE shape"),
        ({"extra": {"AREA": np.zeros((8, 9), np.float32)}}, "AREA shape"),
    ],
    ids=["no-dq", "no-err-dq", "2d-sci", "err-shape", "var-shape", "area-shape"],
)
def test_malformed_calints(tmp_path, kwargs, fragment):
    path = tmp_path / "bad_calints.fits"
    make_calints(path, **kwargs)
    with pytest.raises(InputError) as info:
        files.open_calints(path)
    assert "bad_calints.fits" in str(info.value) and fragment in str(info.value)


def test_open_exposures_and_check_same_frame(tmp_path):
    a, b, c = (tmp_path / f"{n}_calints.fits" for n in "abc")
    make_calints(a)
    make_calints(b, seed=1)
    make_calints(c, shape=(3, 8, 12))
    assert [ds.attrs["filename"] for ds in files.open_exposures([a, b])] == [a.name, b.name]
    with pytest.raises(InputError) as info:
        files.open_exposures([a, b, c])
    assert "a_calints.fits" in str(info.value) and "c_calints.fits" in str(info.value)
    assert "(8, 10)" in str(info.value) and "(8, 12)" in str(info.value)
    bad = tmp_path / "bad_calints.fits"
    make_calints(bad, skip=("DQ",))
    with pytest.raises(InputError) as info:
        files.open_exposures([bad, tmp_path / "gone_calints.fits"])
    assert "bad_calints.fits" in str(info.value) and "gone_calints.fits" in str(info.value)


# --------------------------------------------------------------------------- PSFMASK
def _science_header(**cards):
    return {"TELESCOP": "JWST", "DATE-OBS": "2023-06-01", "TIME-OBS": "12:00:00.123"} | cards


REAL_MASKS = [
    (dict(INSTRUME="NIRCAM", FILTER="F335M", CORONMSK="MASKA335R", SUBARRAY="SUB320A335R"),
     "nircam/jwst_nircam_psfmask_0019.fits", (320, 320)),
    (dict(INSTRUME="NIRCAM", FILTER="F335M", CORONMSK="MASKA430R", SUBARRAY="SUB320A430R"),
     "nircam/jwst_nircam_psfmask_0027.fits", (320, 320)),
    (dict(INSTRUME="NIRCAM", FILTER="F210M", CORONMSK="MASKA210R", SUBARRAY="SUB640A210R"),
     "nircam/jwst_nircam_psfmask_0049.fits", (640, 640)),
    (dict(INSTRUME="MIRI", FILTER="F2300C", CORONMSK="LYOT_2300", SUBARRAY="MASKLYOT"),
     "miri/jwst_miri_psfmask_0009.fits", (304, 320)),
]


@pytest.fixture
def crds():
    if not CRDS.is_dir():
        pytest.skip(f"shared CRDS cache not found at {CRDS}")
    return CRDS


@pytest.mark.parametrize(("selectors", "expected", "shape"), REAL_MASKS, ids=lambda v: str(v)[:40])
def test_find_and_read_real_psfmask(crds, selectors, expected, shape):
    found = files.find_psfmask(_science_header(**selectors), crds_path=crds)
    assert found == crds / "references" / "jwst" / expected
    mask = files.read_psfmask(found, shape=shape)
    assert mask.shape == shape and mask.dtype == np.float32 and mask.dtype.isnative
    assert np.isfinite(mask).all() and mask.min() >= 0 and mask.max() <= 1
    lazy = files.lazy_psfmask(found, shape)
    assert lazy.npartitions == 1 and lazy.dtype == np.float32
    assert lazy.name == files.lazy_psfmask(found, shape).name
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), mask)


def test_find_psfmask_uses_crds_path_env(crds, monkeypatch):
    monkeypatch.setenv("CRDS_PATH", str(crds))
    header = _science_header(**REAL_MASKS[0][0])
    assert files.find_psfmask(header).name == "jwst_nircam_psfmask_0019.fits"
    monkeypatch.delenv("CRDS_PATH")
    with pytest.raises(InputError, match="CRDS_PATH"):
        files.find_psfmask(header)


def test_find_psfmask_lists_selectors_when_nothing_matches(crds):
    header = _science_header(INSTRUME="NIRCAM", FILTER="F444W", CORONMSK="MASKA335R", SUBARRAY="SUB320A335R")
    with pytest.raises(InputError) as info:
        files.find_psfmask(header, crds_path=crds)
    message = str(info.value)
    for fragment in ("FILTER='F444W'", "CORONMSK='MASKA335R'", "SUBARRAY='SUB320A335R'", "INSTRUME='NIRCAM'",
                     str(crds / "references" / "jwst" / "nircam"), "3 file(s)"):
        assert fragment in message
    early = _science_header(**REAL_MASKS[0][0]) | {"DATE-OBS": "2010-01-01"}  # before every USEAFTER
    with pytest.raises(InputError, match="USEAFTER"):
        files.find_psfmask(early, crds_path=crds)
    with pytest.raises(InputError, match="lacks CORONMSK"):
        files.find_psfmask({"INSTRUME": "NIRCAM", "FILTER": "F335M", "SUBARRAY": "SUB320A335R"}, crds_path=crds)


def test_read_psfmask_shape_mismatch_and_wrong_file(crds, tmp_path):
    path = crds / "references" / "jwst" / "nircam" / "jwst_nircam_psfmask_0019.fits"
    with pytest.raises(InputError) as info:
        files.read_psfmask(path, shape=(640, 640))
    assert "(320, 320)" in str(info.value) and "(640, 640)" in str(info.value) and path.name in str(info.value)
    with pytest.raises(InputError, match="does not match"):
        files.lazy_psfmask(path, (304, 320))
    calints = tmp_path / "x_calints.fits"
    make_calints(calints)
    with pytest.raises(InputError, match="not a PSFMASK"):
        files.read_psfmask(calints)


def _fake_psfmask(folder: Path, name: str, useafter: str, coronmsk: str, value: float, **cards) -> None:
    primary = {"REFTYPE": "PSFMASK", "DATAMODL": "PsfMaskModel", "INSTRUME": "MIRI", "FILTER": "F1550C",
               "CORONMSK": coronmsk, "SUBARRAY": "MASK1550", "USEAFTER": useafter} | cards
    files.write_fits(folder / name, primary, [Extension("SCI", np.full((4, 5), value, np.float32))])


def test_psfmask_useafter_and_mask_spellings(tmp_path):
    folder = tmp_path / "references" / "jwst" / "miri"
    folder.mkdir(parents=True)
    _fake_psfmask(folder, "jwst_miri_psfmask_0001.fits", "2014-01-01T00:00:00", "4QPM_1550", 0.1)
    _fake_psfmask(folder, "jwst_miri_psfmask_0002.fits", "Jan 01 2022 00:00:00", "MASK1550", 0.2)
    _fake_psfmask(folder, "jwst_miri_psfmask_0003.fits", "2030-01-01T00:00:00", "4QPM_1550", 0.3)
    _fake_psfmask(folder, "jwst_miri_psfmask_0004.fits", "2023-01-01T00:00:00", "4QPM_1550", 0.4, FILTER="F1140C")
    header = {"INSTRUME": "miri", "FILTER": "f1550c", "CORONMSK": "4QPM_1550", "SUBARRAY": "MASK1550"}
    assert files.find_psfmask(header | {"DATE-OBS": "2023-03-01"}, tmp_path).name == "jwst_miri_psfmask_0002.fits"
    assert files.find_psfmask(header | {"DATE-OBS": "2020-03-01"}, tmp_path).name == "jwst_miri_psfmask_0001.fits"
    assert files.find_psfmask(header | {"DATE-OBS": "2031-03-01"}, tmp_path).name == "jwst_miri_psfmask_0003.fits"
    assert files.find_psfmask(header | {"CORONMSK": "MASK1550"}, tmp_path).name == "jwst_miri_psfmask_0003.fits"
    assert files.read_psfmask(folder / "jwst_miri_psfmask_0002.fits", (4, 5))[0, 0] == np.float32(0.2)


def test_psfmask_maska_equivalence_both_ways(crds, tmp_path):
    header = _science_header(INSTRUME="NIRCAM", FILTER="F335M", CORONMSK="MASK335R", SUBARRAY="SUB320A335R")
    assert files.find_psfmask(header, crds).name == "jwst_nircam_psfmask_0019.fits"
    folder = tmp_path / "references" / "jwst" / "nircam"
    folder.mkdir(parents=True)
    shutil.copy(crds / "references" / "jwst" / "nircam" / "jwst_nircam_psfmask_0019.fits", folder)
    with pytest.raises(InputError, match="MASKB335R"):  # module B is a different mask
        files.find_psfmask(header | {"CORONMSK": "MASKB335R"}, tmp_path)


# --------------------------------------------------------------------------- streaming writer
def _quad_specs(shape=(3, 4, 16, 20)):
    return [
        ExtensionSpec("SCI", shape, np.float32, {"BUNIT": "MJy/sr"}),
        ExtensionSpec("ERR", shape, np.float32, {"BUNIT": ("MJy/sr", "error unit")}),
        ExtensionSpec("DQ", shape, np.uint32),
    ]


@pytest.mark.parity
def test_streamed_quad_opens_with_astropy_and_stdatamodels(tmp_path):
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    rng = np.random.default_rng(7)
    shape = (3, 4, 16, 20)
    arrays = {"SCI": _cube(rng, shape), "ERR": np.abs(_cube(rng, shape)),
              "DQ": rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32)}
    arrays["DQ"].flat[:3] = [0, 1, 2**32 - 1]
    final = tmp_path / "out" / "x_c1020_psfalign.fits"
    table = np.zeros(3, dtype=[("integration_number", "i4"), ("shift_x", "f8")])
    table["integration_number"] = [1, 2, 3]
    with files.atomic_path(final) as tmp:
        offsets = fits_stream.preallocate_fits(tmp, {"DATAMODL": "QuadModel", "TELESCOP": "JWST",
                                               "INSTRUME": ("NIRCAM", "instrument")}, _quad_specs(shape))
        assert offsets == fits_stream.preallocate_fits(tmp_path / "again.fits", {"DATAMODL": "QuadModel",
                                                     "TELESCOP": "JWST", "INSTRUME": ("NIRCAM", "instrument")},
                                                     _quad_specs(shape))
        assert all(offset % 2880 == 0 for offset in offsets.values())
        jobs = [(name, i) for name in arrays for i in range(shape[0])][::-1]
        with ThreadPoolExecutor(4) as pool:
            def write(job):
                name, i = job
                return fits_stream.write_block(tmp, offsets[name], i, arrays[name][i][None], arrays[name].dtype)

            written = list(pool.map(write, jobs))
        assert written == [arrays[name][i].nbytes for name, i in jobs]
        fits_stream.append_table(tmp, "ALIGN_SHIFTS", table, {"EXTVER": 1})
        assert not final.exists()
    assert final.exists() and not list(final.parent.glob(".*partial"))
    assert final.stat().st_size % 2880 == 0
    with fits.open(final) as hdul:
        hdul.verify("exception")
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ERR", "DQ", "ALIGN_SHIFTS"]
        assert hdul["SCI"].header["BUNIT"] == "MJy/sr" and hdul["ERR"].header.comments["BUNIT"] == "error unit"
        for name, arr in arrays.items():
            assert hdul[name].data.dtype.newbyteorder("=") == arr.dtype
            np.testing.assert_array_equal(hdul[name].data, arr)
        np.testing.assert_array_equal(hdul["ALIGN_SHIFTS"].data["integration_number"], [1, 2, 3])
    with datamodels.open(final) as model:
        assert type(model).__name__ == "QuadModel"
        np.testing.assert_array_equal(model.data, arrays["SCI"])
        np.testing.assert_array_equal(model.err, arrays["ERR"])
        np.testing.assert_array_equal(model.dq, arrays["DQ"])
        assert model.meta.instrument.name == "NIRCAM"


@pytest.mark.parity
def test_streamed_cube_from_dask_workers(tmp_path):
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    shape = (5, 12, 14)
    sci = da.random.default_rng(1).normal(size=shape, chunks=(1, 12, 14)).astype(np.float32)
    dq = da.arange(np.prod(shape), chunks=-1).reshape(shape).rechunk((1, 12, 14)).astype(np.uint32)
    final = tmp_path / "psfsub.fits"
    with files.atomic_path(final) as tmp:
        offsets = fits_stream.preallocate_fits(tmp, {"DATAMODL": "CubeModel"},
                                               [ExtensionSpec("SCI", shape, np.float32),
                                                ExtensionSpec("DQ", shape, "u4")])
        writes = [dask.delayed(fits_stream.write_block)(tmp, offsets[name], i, arr[i : i + 1], arr.dtype)
                  for name, arr in (("SCI", sci), ("DQ", dq)) for i in range(shape[0])]
        nbytes = dask.compute(*writes, scheduler="threads")
    assert sum(nbytes) == 2 * np.prod(shape) * 4
    expected_sci, expected_dq = dask.compute(sci, dq, scheduler="sync")
    with fits.open(final) as hdul:
        np.testing.assert_array_equal(hdul["SCI"].data, expected_sci)
        np.testing.assert_array_equal(hdul["DQ"].data, expected_dq)
    with datamodels.open(final) as model:
        assert type(model).__name__ == "CubeModel"
        np.testing.assert_array_equal(model.data, expected_sci)
        np.testing.assert_array_equal(model.dq, expected_dq)


def test_write_block_low_level_and_unwritten_areas(tmp_path):
    path = tmp_path / "raw.fits"
    specs = [ExtensionSpec("A", (2, 3), np.float64), ExtensionSpec("B", (4,), ">i2"),
             ExtensionSpec("DQ", (3, 700, 1000), np.uint32), ExtensionSpec("C", (2, 2), np.uint16),
             ExtensionSpec("D", (5, 5), np.float32)]
    offsets = fits_stream.preallocate_fits(path, {}, specs)
    assert fits_stream.write_block(path, offsets["A"], 1, np.array([[1.5, 2.5, 3.5]]), np.float64) == 24
    assert fits_stream.write_block(path, offsets["DQ"], 2, np.full((1, 700, 1000), 7), np.uint32) == 2_800_000
    with fits.open(path) as hdul:  # unwritten slabs read as 0, unsigned (BZERO) ones included
        np.testing.assert_array_equal(hdul["A"].data, [[0, 0, 0], [1.5, 2.5, 3.5]])
        assert hdul["B"].data.shape == (4,) and hdul["B"].data.dtype == np.dtype(">i2")
        dq = hdul["DQ"].data
        assert dq.dtype == np.uint32 and not dq[:2].any() and (dq[2] == 7).all()
        assert hdul["C"].data.dtype == np.uint16 and not hdul["C"].data.any()
        assert not np.signbit(hdul["D"].data).any()  # nothing spilled past DQ's reserved area
    assert path.stat().st_size == offsets["D"] + 2880


def test_streaming_writer_validation(tmp_path):
    offsets = fits_stream.preallocate_fits(tmp_path / "v.fits", {}, _quad_specs())
    with pytest.raises(ValueError, match="index must be >= 0"):
        fits_stream.write_block(tmp_path / "v.fits", offsets["SCI"], -1, np.zeros((1, 4, 16, 20)), np.float32)
    with pytest.raises(ValueError, match="structural"):
        ExtensionSpec("SCI", (2, 2), np.float32, {"NAXIS1": 3})
    with pytest.raises(ValueError, match="cannot be stored"):
        ExtensionSpec("SCI", (2, 2), np.complex64)
    with pytest.raises(ValueError, match="duplicate"):
        twice = [ExtensionSpec("A", (1,), "f4"), ExtensionSpec("A", (1,), "f4")]
        fits_stream.preallocate_fits(tmp_path / "d.fits", {}, twice)
    with pytest.raises(ValueError, match="structural"):
        fits_stream.preallocate_fits(tmp_path / "p.fits", {"BITPIX": 16}, [])


def test_write_block_from_several_processes(tmp_path):
    shape = (6, 5, 7)
    arr = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    path = tmp_path / "mp.fits"
    offsets = fits_stream.preallocate_fits(path, {}, [ExtensionSpec("SCI", shape, np.float32)])
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method (spawn is too slow for this fast suite)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12 warns about fork with threads alive
        with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("fork")) as pool:
            jobs = [pool.submit(fits_stream.write_block, path, offsets["SCI"], i, arr[i : i + 1], np.float32)
                    for i in range(shape[0])]
            assert [job.result() for job in jobs] == [arr[0].nbytes] * shape[0]
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul["SCI"].data, arr)


@pytest.mark.parity
def test_gwcs_from_the_asdf_extension_is_read(tmp_path):
    """A data-model file's gWCS (where real files keep their distortion) reaches attrs['asdf_wcs']."""
    gwcs = pytest.importorskip("gwcs")
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf
    from stdatamodels.jwst import datamodels

    distortion = models.Mapping((0, 1, 0, 1)) | (models.Polynomial2D(2, c1_0=1.0, c2_0=1e-4)
                                                  & models.Polynomial2D(2, c0_1=1.0, c0_2=-2e-4))
    distortion.inverse = models.Identity(2)
    sky = (models.Shift(-8) & models.Shift(-8) | models.Scale(1.75e-5) & models.Scale(1.75e-5)
           | models.Pix2Sky_TAN() | models.RotateNative2Celestial(150.0, -30.0, 180))
    wcs = gwcs.wcs.WCS([(cf.Frame2D(name="detector", unit=(u.pix, u.pix)), distortion | sky),
                        (cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg)), None)])
    model = datamodels.CubeModel((2, 16, 16))
    model.err = np.ones((2, 16, 16), np.float32)
    model.meta.wcs = wcs
    model.save(tmp_path / "g_calints.fits")
    ds = files.open_calints(tmp_path / "g_calints.fits")
    got = ds.attrs["asdf_wcs"]
    np.testing.assert_allclose(got(12.0, 3.0), wcs(12.0, 3.0), rtol=0, atol=1e-12)
    assert got(12.0, 3.0) != sky(12.0, 3.0), "the distortion must survive"
    plain = tmp_path / "plain_calints.fits"
    files.write_fits(plain, {}, [files.Extension(n, np.zeros((1, 4, 4), t)) for n, t in
                              [("SCI", np.float32), ("ERR", np.float32), ("DQ", np.uint32)]])
    assert "asdf_wcs" not in files.open_calints(plain).attrs
