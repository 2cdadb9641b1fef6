"""Beyond the official pipeline, end to end: truncation lists, optimisation regions, ADI+RDI, KL-mode cubes."""

from __future__ import annotations

import dataclasses
import json

import dask
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from coron3_dask import dq, pipeline
from coron3_dask.cli import main
from coron3_dask.config import load_config
from coron3_dask.wcs.tan import pc_matrix


def _run(sim, out, *overrides):
    config = load_config(overrides=list(overrides))
    inputs = pipeline.open_inputs(sim.asn_path, config, psfmask=sim.psfmask_path)
    with dask.config.set(scheduler="threads"):
        return pipeline.run(inputs, config, out)


@pytest.fixture(scope="module")
def official(small_programme, tmp_path_factory):
    out = tmp_path_factory.mktemp("official")
    _run(small_programme, out, "klip.truncate=8")
    return out


def _data(path):
    with fits.open(path) as hdul:
        return {h.name: np.array(h.data) for h in hdul if h.data is not None and h.name != "C3D_PROV"}


def test_truncation_list_keeps_the_official_products_and_adds_kl_mode_cubes(small_programme, official, tmp_path):
    result = _run(small_programme, tmp_path, "klip.truncate=8,3,12")
    names = {p.name for p in result.paths}
    for path in official.glob("*.fits"):  # every official product: the same arrays as the single-truncation run
        assert path.name in names
        ours = _data(tmp_path / path.name)
        for ext, data in _data(path).items():
            if data.dtype.names is None:
                np.testing.assert_array_equal(ours[ext], data, err_msg=f"{path.name}[{ext}]")
    science = [f.name.removesuffix("_calints.fits") for f in small_programme.science_files]
    for root in science:
        cube = tmp_path / f"{root}_{small_programme.asn_id}_klmodes.fits"
        with fits.open(cube) as hdul:
            assert hdul["SCI"].data.shape == (3, 3, 320, 320)  # (mode, integration, y, x)
            assert list(hdul["KLMODES"].data["truncation"]) == [8, 3, 12]
            assert list(hdul["KLMODES"].data["modes_used"]) == [8, 3, 10]  # a 10-frame library
            assert hdul[0].header["KLTRUNC"] == "8,3,12" and hdul[0].header["KLMODE"] == "RDI"
            psfsub = fits.getdata(tmp_path / f"{root}_{small_programme.asn_id}_psfsub.fits", "SCI")
            np.testing.assert_array_equal(hdul["SCI"].data[0], psfsub)
            # more modes subtract more of the references' speckle pattern
            rms = [np.std(hdul["SCI"].data[m]) for m in range(3)]
            assert rms[1] > rms[0] > rms[2]
    with fits.open(tmp_path / f"{small_programme.product_name}_klmodes.fits") as combined:
        i2d = fits.open(tmp_path / f"{small_programme.product_name}_i2d.fits")
        assert combined["SCI"].data.shape == (3, *i2d["SCI"].data.shape)
        np.testing.assert_array_equal(combined["SCI"].data[0], i2d["SCI"].data)
        assert WCS(combined["SCI"].header).celestial.wcs.compare(WCS(i2d["SCI"].header).wcs)
        i2d.close()


def test_regions_leave_the_inner_working_angle_unprocessed_and_flagged(small_programme, official, tmp_path):
    _run(small_programme, tmp_path, "klip.annuli=3", "klip.subsections=2", "klip.iwa=6", "klip.truncate=8")
    truth = json.loads(small_programme.truth_path.read_text())
    exp = next(e for e in truth["exposures"] if e["exptype"] == "science")
    root = exp["file"].removesuffix("_calints.fits")
    with fits.open(tmp_path / f"{root}_{small_programme.asn_id}_klmodes.fits") as hdul:
        star = hdul[0].header["KLSTARX"], hdul[0].header["KLSTARY"]
        assert hdul[0].header["KLANNULI"] == 3 and hdul[0].header["KLSUBSEC"] == 2
    # the star position used for the regions is the target's (TARG_RA/DEC through the WCS)
    assert np.hypot(*(np.asarray(star) - np.mean(exp["star_xy_px"], axis=0))) < 0.2
    with fits.open(tmp_path / f"{root}_{small_programme.asn_id}_psfsub.fits") as sub:
        yy, xx = np.indices(sub["SCI"].data.shape[1:])
        inside = np.hypot(xx - star[0], yy - star[1]) < 6
        assert np.isnan(sub["SCI"].data[:, inside]).all()
        assert (sub["DQ"].data[:, inside] & dq.DO_NOT_USE).all()
        assert np.isfinite(sub["SCI"].data[:, ~inside & (sub["DQ"].data[0] == 0)]).all()
        official_sub = fits.getdata(official / f"{root}_{small_programme.asn_id}_psfsub.fits", "SCI")
        ring = (np.hypot(xx - star[0], yy - star[1]) > 8) & (np.hypot(xx - star[0], yy - star[1]) < 40)
        assert np.nanstd(sub["SCI"].data[:, ring]) < np.std(official_sub[:, ring])  # local bases fit better


def test_adi_uses_the_other_rolls_integrations_with_their_self_subtraction(small_programme, tmp_path):
    """A companion's image in the other roll, rotated about the star, is subtracted: a negative ghost there."""
    _run(small_programme, tmp_path, "klip.mode=adi", "klip.truncate=2", "klip.movement=1")
    truth = json.loads(small_programme.truth_path.read_text())
    science = [e for e in truth["exposures"] if e["exptype"] == "science"]
    this, other = science
    root = this["file"].removesuffix("_calints.fits")
    with fits.open(tmp_path / f"{root}_{small_programme.asn_id}_klmodes.fits") as hdul:
        assert hdul[0].header["KLMODE"] == "ADI" and hdul[0].header["KLNRDI"] == 0
        assert hdul[0].header["KLNADI"] == other["nints"]
        image = np.nanmean(hdul["SCI"].data[0], axis=0)
    star = np.mean(this["star_xy_px"], axis=0)
    droll = np.radians(other["roll_ref_deg"] - this["roll_ref_deg"])
    for comp in this["companions"]:
        xy = np.mean(comp["xy_per_integration"], axis=0) - star
        # where the companion sits in the other roll's frames once aligned on this roll's star
        pc_this, pc_other = pc_matrix(this["roll_ref_deg"], -0.55), pc_matrix(other["roll_ref_deg"], -0.55)
        ghost = np.linalg.solve(pc_other, pc_this @ xy) + star
        assert abs(np.hypot(*(ghost - star)) - np.hypot(*xy)) < 1e-6 and abs(droll) > 0
        yy, xx = np.indices(image.shape)
        near_ghost = np.hypot(xx - ghost[0], yy - ghost[1]) <= 1.5
        near_comp = np.hypot(xx - xy[0] - star[0], yy - xy[1] - star[1]) <= 1.5
        assert image[near_comp].sum() > 0 > image[near_ghost].sum()


def test_adi_needs_two_rolls_and_the_cli_names_bad_settings(small_programme, tmp_path, capsys):
    config = load_config(overrides=["klip.mode=adi"])
    inputs = pipeline.open_inputs(small_programme.asn_path, config, psfmask=small_programme.psfmask_path)
    asn = dataclasses.replace(inputs.association, science=inputs.association.science[:1])
    one_roll = pipeline.Inputs(asn, inputs.science[:1], inputs.psf, inputs.psfmask, inputs.psfmask_path)
    with pytest.raises(ValueError, match="needs at least two science exposures"):
        pipeline.build(one_roll, config)
    status = main(["run", str(small_programme.asn_path), "-o", str(tmp_path), "--set", "klip.mode=sdi"])
    assert status != 0 and "klip.mode must be one of ('rdi', 'adi', 'adi+rdi')" in capsys.readouterr().err


def test_fakes_reach_klip_but_never_the_alignment_fits(small_programme):
    """Injection-recovery rebuilds the graph with fakes: the alignment tasks are the very same ones."""
    from coron3_dask.files.contrast_products import read_psf_model
    from coron3_dask.stages.inject import inject_companions

    config = load_config(overrides=["klip.mode=adi+rdi", "klip.truncate=3"])
    inputs = pipeline.open_inputs(small_programme.asn_path, config, psfmask=small_programme.psfmask_path)
    psf, _ = read_psf_model(small_programme.psf_model_path)
    where = (120.3, 200.6)  # the same detector position in both rolls: it is not a sky-fixed source

    def fakes(e, cube):
        return inject_companions(cube, psf, [where], [500.0])

    plain, faked = pipeline.build(inputs, config), pipeline.build(inputs, config, fakes=fakes)
    for name in plain.psfalign:
        assert plain.psfalign[name]["shifts"].data.name == faked.psfalign[name]["shifts"].data.name
    name = next(n for n in plain.klmodes if "klmodes" in n and n.startswith("jw01386002"))
    with dask.config.set(scheduler="threads"):
        a, b = dask.compute(plain.klmodes[name]["sci"][0], faked.klmodes[name]["sci"][0])
    diff = np.asarray(b - a).mean(axis=0)
    yy, xx = np.indices(diff.shape)
    near = np.hypot(xx - where[0], yy - where[1]) <= 2
    # the fake is there, and (not moving with the sky) the other roll's copy subtracts nearly all of it
    assert 0 < diff[near].sum() < 0.5 * 500 * psf[31:34, 31:34].sum()
    far = ~(np.hypot(xx - where[0], yy - where[1]) <= 12)
    assert np.nanmedian(np.abs(diff[far])) < 0.01 * diff[near].max()  # elsewhere only the basis moves a little
