"""The contrast step: `run --contrast` and `coron3-dask contrast`, against the simulator's injected companions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from coron3_dask.cli import main


def _companions(truth):
    return [
        arg
        for c in truth["companions"]
        for arg in ("--companion", f"{c['separation_arcsec']},{c['position_angle_deg']}")
    ]


@pytest.fixture(scope="module")
def contrast_run(small_programme, tmp_path_factory):
    """A KL-mode run of the small programme with the contrast step at its end (true transmission map)."""
    out = tmp_path_factory.mktemp("contrast")
    truth = json.loads(small_programme.truth_path.read_text())
    argv = [
        "run", str(small_programme.asn_path), "-o", str(out), "--psfmask", str(small_programme.psfmask_path),
        "--set", "klip.truncate=8,20", "--scheduler", "threads", "--no-progress", "--contrast",
        "--psf-model", str(small_programme.psf_model_path), "--host-flux", str(truth["host_flux_image_units"]),
        "--transmission", str(small_programme.transmission_path), "--branches", "2", *_companions(truth),
    ]  # fmt: skip
    assert main(argv) == 0
    return out, truth


def test_injection_recovery_measures_the_simulated_companions_within_10_percent(small_programme, contrast_run):
    out, truth = contrast_run
    table = Table.read(out / f"{small_programme.product_name}_contrast.ecsv")
    measured = table.meta["companions"]
    assert len(measured) == 2 * len(truth["companions"])  # every companion in every truncation plane
    for m in measured:
        true = next(c for c in truth["companions"] if c["separation_arcsec"] == m["given_sep_arcsec"])
        assert m["snr"] > 10
        assert m["contrast"] == pytest.approx(true["contrast"], rel=0.10), m
        assert m["separation_arcsec"] == pytest.approx(true["separation_arcsec"], abs=0.03)


def test_contrast_table_curve_and_snr_map_are_complete_products(small_programme, contrast_run):
    out, truth = contrast_run
    product = small_programme.product_name
    table = Table.read(out / f"{product}_contrast.ecsv")
    assert set(table["truncation"]) == {8, 20}
    assert {"separation_arcsec", "noise", "threshold", "raw_contrast", "throughput", "contrast"} <= set(table.colnames)
    assert list(table.meta["provenance"]["parameters"]["klip"]["truncate"]) == [8, 20]
    assert any(str(small_programme.psf_model_path) == p for p in table.meta["provenance"]["inputs"])
    far = table[(table["separation_arcsec"] > 0.8) & (table["separation_arcsec"] < 2.5)]
    assert np.isfinite(far["contrast"]).all() and (far["throughput"] > 0.3).all() and (far["throughput"] <= 1.5).all()
    # calibrated = raw / throughput, and the 5-sigma limit lies below the companions we detect
    np.testing.assert_allclose(far["contrast"], far["raw_contrast"] / far["throughput"])
    assert far["contrast"].max() < min(c["contrast"] for c in truth["companions"])
    with fits.open(out / f"{product}_snr.fits") as hdul:
        snr = hdul["SCI"].data
        assert snr.shape[0] == 2 and list(hdul["KLMODES"].data["truncation"]) == [8, 20]
    for m in table.meta["companions"]:
        x, y = round(m["x"]), round(m["y"])
        assert np.nanmax(snr[0, y - 1 : y + 2, x - 1 : x + 2]) > 5
    detected = [(d["x"], d["y"]) for d in table.meta["detections"]]
    for m in table.meta["companions"]:
        assert min(np.hypot(m["x"] - x, m["y"] - y) for x, y in detected) < 1.5
    assert (out / f"{product}_contrast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_contrast_subcommand_reuses_the_run_record_and_fails_cleanly(small_programme, contrast_run, capsys):
    out, truth = contrast_run
    assert main(["contrast", str(out), "--psf-model", str(small_programme.psf_model_path)]) != 0
    assert "--host-flux" in capsys.readouterr().err
    argv = ["contrast", str(out), "--psf-model", str(small_programme.psf_model_path), "--no-throughput",
            "--host-flux", str(truth["host_flux_image_units"]), "--scheduler", "synchronous"]  # fmt: skip
    assert main(argv) == 0
    table = Table.read(out / f"{small_programme.product_name}_contrast.ecsv")
    assert (table["throughput"] == 1).all() and table.meta["injections"] == []
    assert main(["contrast", str(out), "--psf-model", "missing.fits", "--host-flux", "1"]) != 0
    assert "missing.fits: no such file" in capsys.readouterr().err
    model = str(small_programme.psf_model_path)
    assert main(["contrast", str(small_programme.directory), "--psf-model", model, "--host-flux", "1"]) != 0
    assert "expected one run record" in capsys.readouterr().err
