"""No silent garbage: an association whose needed pixels are all unusable stops before writing anything."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits

from coron3_dask.simulate import simulate_programme


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return simulate_programme(tmp_path_factory.mktemp("garbage"), n_science_ints=2, n_ref_ints=2, n_dither=1, seed=5)


def _copy(sim, tmp_path):
    inputs = tmp_path / "in"
    shutil.copytree(sim.directory, inputs)
    return inputs, inputs / sim.asn_path.name, inputs / sim.psfmask_path.name


def _run(asn, psfmask, out, *extra):
    return subprocess.run(
        [sys.executable, "-m", "coron3_dask.cli", "run", str(asn), "-o", str(out), "--psfmask", str(psfmask),
         "--scheduler", "synchronous", "--no-progress", *extra],
        capture_output=True, text=True, timeout=300, check=False,
    )


def _spoil(path, integrations, *, nan=True, flag=True):
    with fits.open(path, mode="update") as hdul:
        for i in integrations:
            if nan:
                hdul["SCI"].data[i] = np.nan
            if flag:
                hdul["DQ"].data[i] |= 1  # DO_NOT_USE


@pytest.mark.parametrize("extra", [[], ["--jwst-compat"]], ids=["default", "compat"])
def test_all_reference_integrations_unusable_writes_nothing(tiny, tmp_path, extra):
    inputs, asn, psfmask = _copy(tiny, tmp_path)
    for psf in tiny.psf_files:
        _spoil(inputs / psf.name, range(2))
    out = tmp_path / "out"
    result = _run(asn, psfmask, out, *extra)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coron3-dask: error:")
    assert tiny.psf_files[0].name in lines[0] and "no usable pixel" in lines[0] and "nothing was written" in lines[0]
    assert not [p for p in out.rglob("*") if p.is_file()], "no product, record, partial or lock file is left"


def test_science_integration_without_usable_pixel_in_the_mask(tiny, tmp_path):
    inputs, asn, psfmask = _copy(tiny, tmp_path)
    science = inputs / tiny.science_files[1].name
    mask = fits.getdata(psfmask, "SCI")
    with fits.open(science, mode="update") as hdul:  # every pixel inside the PSFMASK flagged, the rest kept
        hdul["DQ"].data[1][mask > 0] |= 1
    result = _run(asn, psfmask, tmp_path / "out")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and science.name in line and "integration(s) 2" in line and "PSFMASK" in line
    assert not list((tmp_path / "out").glob("*.fits"))


def test_one_unusable_reference_integration_is_named_and_earlier_products_survive(tiny, tmp_path):
    inputs, asn, psfmask = _copy(tiny, tmp_path)
    out = tmp_path / "out"
    assert _run(asn, psfmask, out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.fits")}
    _spoil(inputs / tiny.psf_files[0].name, [1], nan=False)  # flagged DO_NOT_USE everywhere, values kept
    result = _run(asn, psfmask, out)
    assert result.returncode == 1 and "integration(s) 2" in result.stderr and tiny.psf_files[0].name in result.stderr
    assert {p.name: p.read_bytes() for p in out.glob("*.fits")} == before, "a failed rerun changes nothing"
    assert not list(out.glob(".*partial"))
