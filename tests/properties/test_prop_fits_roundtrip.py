"""Property: every product kind survives the streaming FITS writer bit for bit.

Random shapes, random dask chunkings (on every axis; the writer rechunks), every float32 bit
pattern (NaN payloads of both signs, signalling NaNs, +-inf, subnormals, -0.0), uint32 DQ and
int32 CON over their whole ranges, and the product tables (INT_TIMES, SHIFTS, C3D_PROV).  The
file goes through :func:`coron3_dask.files.writers.stream_product` and ``dask.compute``, and
is read back independently with astropy.io.fits; the raw bits of every array and table column
must equal the generated ones.  The parity property also opens each file with
``stdatamodels.jwst.datamodels.open`` and checks the declared model class and the arrays.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coron3_dask.files import writers

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

#: float32 bit patterns that a value-level comparison would get wrong or never generate
SPECIAL_F32 = np.array([
    0x00000000, 0x80000000,  # +0.0, -0.0
    0x7F800000, 0xFF800000,  # +inf, -inf
    0x7FC00000, 0xFFC00000,  # quiet NaN, negative quiet NaN
    0x7F800001, 0x7FBFFFFF, 0xFF812345,  # signalling NaNs, with payloads, of both signs
    0x7FC0BEEF, 0xFFFFFFFF,  # quiet NaN payloads
    0x00000001, 0x807FFFFF, 0x00400000,  # subnormals
    0x00800000, 0x7F7FFFFF, 0xFF7FFFFF,  # smallest normal, +-largest finite
], dtype=np.uint32)
SPECIAL_U32 = np.array([0, 1, 2**31 - 1, 2**31, 2**32 - 1], dtype=np.uint32)
SPECIAL_I32 = np.array([-(2**31), -1, 0, 1, 2**31 - 1], dtype=np.int32)

VAR = ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")
INT_TIMES_DTYPE = [("integration_number", "i4")] + [
    (f"int_{w}_{s}", "f8") for s in ("MJD_UTC", "BJD_TDB") for w in ("start", "mid", "end")
]


@dataclass(frozen=True)
class Layout:
    """One product kind: data model, image extensions in file order, and tables."""

    model: str
    extensions: tuple[str, ...]
    tables: tuple[str, ...]
    ndim: int  # of SCI


#: the layouts :func:`coron3_dask.files.writers.plan` writes (jwst's data models)
LAYOUTS = {
    "crfints": Layout("CubeModel", ("SCI", "ERR", "DQ", *VAR, "AREA"), ("C3D_PROV", "INT_TIMES"), 3),
    "psfsub": Layout("CubeModel", ("SCI", "ERR", "DQ", *VAR, "AREA"), ("C3D_PROV", "INT_TIMES"), 3),
    "psfstack": Layout("CubeModel", ("SCI", "ERR", "DQ"), ("C3D_PROV",), 3),
    "psfalign3d": Layout("CubeModel", ("SCI", "ERR"), ("C3D_PROV", "SHIFTS"), 3),
    "psfalign4d": Layout("QuadModel", ("SCI", "ERR"), ("C3D_PROV", "SHIFTS"), 4),
    "i2d": Layout("ImageModel", ("SCI", "ERR", "CON", "WHT", *VAR), ("C3D_PROV",), 2),
}


def _stream(path: Path, primary: Mapping[str, Any], extensions: Mapping[str, Any], tables: Mapping[str, Any]):
    """The one call of the writer under test (a signature change is a one-line fix here)."""
    task, _partial = writers.stream_product(path, primary, extensions, tables)
    return task


# --------------------------------------------------------------------------- generation
def _bits(a: np.ndarray) -> np.ndarray:
    """Native unsigned-integer view of the raw bits (NaN payloads and -0.0 compare exactly)."""
    a = np.ascontiguousarray(a)
    raw = a.view(np.dtype(f"u{a.dtype.itemsize}").newbyteorder(a.dtype.byteorder))
    return raw.astype(raw.dtype.newbyteorder("="))


def _fill(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype, special: np.ndarray) -> np.ndarray:
    """Uniform random bit patterns of ``dtype``, the special patterns first, then sprinkled."""
    size = int(np.prod(shape))
    flat = rng.integers(0, 2**32, size=size, dtype=np.uint64).astype(np.uint32)
    head = min(size, special.size)
    flat[:head] = special.view(np.uint32)[:head]
    sprinkle = rng.random(size) < 0.1
    flat[sprinkle] = rng.choice(special.view(np.uint32), size=int(sprinkle.sum()))
    return flat.view(dtype).reshape(shape)


@st.composite
def _chunks(draw: st.DrawFn, n: int) -> tuple[int, ...]:
    """A random chunking of an axis of length ``n``."""
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=min(n - 1, 4)))) if n > 1 else []
    edges = [0, *cuts, n]
    return tuple(b - a for a, b in itertools.pairwise(edges))


@st.composite
def _dask_array(draw: st.DrawFn, rng: np.random.Generator, shape: tuple[int, ...], dtype: Any,
                special: np.ndarray) -> tuple[np.ndarray, da.Array]:
    values = _fill(rng, shape, np.dtype(dtype), special)
    chunks = tuple(draw(_chunks(n)) for n in shape)
    return values, da.from_array(values, chunks=chunks)


def _table(rng: np.random.Generator, name: str, n_int: int, n_ref: int) -> np.ndarray:
    if name == "INT_TIMES":
        table = np.zeros(n_int, dtype=INT_TIMES_DTYPE)
        table["integration_number"] = np.arange(1, n_int + 1)
        for field in table.dtype.names[1:]:
            table[field] = 60000.0 + rng.random(n_int)
        return table
    if name == "SHIFTS":
        shifts = rng.normal(size=(n_int, n_ref, 3))
        shifts[0, 0, 0] = -0.0
        sources = np.array([f"jw0138600{k % 3 + 1}001_03108_00001_nrcalong_calints.fits" for k in range(n_ref)])
        return writers.shifts_table(shifts, sources, rng.integers(1, 9, n_ref))
    rows = [("version", "0.0.0"), ("parameters", '{"klip": {"truncate": 50}}'), ("sources", '["a.fits"]')]
    return np.array(rows, dtype=[("key", "S16"), ("value", "S40")])


@dataclass
class Product:
    kind: str
    layout: Layout
    primary: dict[str, Any]
    arrays: dict[str, np.ndarray]
    lazy: dict[str, da.Array]
    tables: dict[str, np.ndarray]
    delayed_tables: frozenset[str]


@st.composite
def products(draw: st.DrawFn, kind: str) -> Product:
    layout = LAYOUTS[kind]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_int, n_ref = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    ny, nx = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    frame = (ny, nx)
    sci_shape = {2: frame, 3: (n_ref if kind.startswith("psfalign") else n_int, *frame), 4: (n_int, n_ref, *frame)}
    arrays, lazy = {}, {}
    for name in layout.extensions:
        if name == "DQ":
            shape, dtype, special = sci_shape[layout.ndim], np.uint32, SPECIAL_U32
        elif name == "CON":
            shape, dtype, special = (draw(st.integers(1, 3)), *frame), np.int32, SPECIAL_I32
        elif name == "AREA":
            shape, dtype, special = frame, np.float32, SPECIAL_F32
        else:
            shape, dtype, special = sci_shape[layout.ndim], np.float32, SPECIAL_F32
        arrays[name], lazy[name] = draw(_dask_array(rng, shape, dtype, special))
    n_shift_int = 1 if kind == "psfalign3d" else n_int
    tables = {name: _table(rng, name, n_shift_int if name == "SHIFTS" else sci_shape[3][0], n_ref)
              for name in layout.tables}
    delayed_tables = frozenset(draw(st.sets(st.sampled_from(layout.tables))))
    primary = {"DATAMODL": layout.model, "TELESCOP": "JWST", "INSTRUME": ("NIRCAM", "instrument"),
               "FILENAME": f"x_{kind}.fits"}
    return Product(kind, layout, primary, arrays, lazy, tables, delayed_tables)


def _write(product: Product, folder: Path) -> Path:
    path = folder / product.primary["FILENAME"]
    headers = {name: {"BUNIT": "MJy/sr"} if name in ("SCI", "ERR") else {} for name in product.layout.extensions}
    extensions = {name: (product.lazy[name], headers[name]) for name in product.layout.extensions}
    tables = {name: dask.delayed(t) if name in product.delayed_tables else t for name, t in product.tables.items()}
    (done,) = dask.compute(_stream(path, product.primary, extensions, tables), scheduler="threads")
    assert Path(done) == path
    assert sorted(p.name for p in folder.iterdir()) == [path.name], "a temporary file was left behind"
    return path


# --------------------------------------------------------------------------- properties
@pytest.mark.parametrize("kind", sorted(LAYOUTS))
@SETTINGS
@given(data=st.data())
def test_every_product_kind_round_trips_bit_for_bit(kind, data):
    product = data.draw(products(kind))
    with tempfile.TemporaryDirectory() as folder:
        path = _write(product, Path(folder))
        assert path.stat().st_size % 2880 == 0
        with fits.open(path, memmap=False) as hdul:
            hdul.verify("exception")
            assert [h.name for h in hdul] == ["PRIMARY", *product.layout.extensions, *product.layout.tables]
            assert hdul[0].header["DATAMODL"] == product.layout.model
            assert hdul[0].header["INSTRUME"] == "NIRCAM"
            assert hdul[0].header.comments["INSTRUME"] == "instrument"
            for name, expected in product.arrays.items():
                got = hdul[name].data
                assert got.dtype.newbyteorder("=") == expected.dtype, name
                assert got.shape == expected.shape, name
                assert np.array_equal(_bits(got), _bits(expected)), f"{name}: bits differ"
                if name in ("SCI", "ERR"):
                    assert hdul[name].header["BUNIT"] == "MJy/sr"
            for name, expected in product.tables.items():
                got = hdul[name].data
                assert got.dtype.names == expected.dtype.names, name
                assert len(got) == len(expected), name
                for field in expected.dtype.names:
                    want, have = expected[field], np.asarray(got[field])
                    assert got.dtype[field].newbyteorder("=") == want.dtype, (name, field)
                    if want.dtype.kind == "S":  # astropy hands strings back decoded
                        assert have.tolist() == np.char.decode(want, "ascii").tolist(), (name, field)
                    else:
                        assert np.array_equal(_bits(have), _bits(want)), (name, field)


@pytest.mark.parity
@pytest.mark.parametrize("kind", sorted(LAYOUTS))
@settings(SETTINGS, max_examples=4)
@given(data=st.data())
def test_every_product_kind_opens_as_its_jwst_data_model(kind, data):
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    product = data.draw(products(kind))
    attribute = {"SCI": "data", "ERR": "err", "DQ": "dq", "AREA": "area", "CON": "con", "WHT": "wht",
                 **{name: name.lower() for name in VAR}}
    with tempfile.TemporaryDirectory() as folder:
        path = _write(product, Path(folder))
        with datamodels.open(path) as model:
            assert type(model).__name__ == product.layout.model
            for name, expected in product.arrays.items():
                got = np.asarray(getattr(model, attribute[name]))
                assert got.shape == expected.shape, name
                assert got.dtype.newbyteorder("=") == expected.dtype, name
                assert np.array_equal(_bits(got), _bits(expected)), f"{name}: bits differ"
            if "INT_TIMES" in product.tables:
                np.testing.assert_array_equal(model.int_times["integration_number"],
                                              product.tables["INT_TIMES"]["integration_number"])
