"""Campaigns: many associations, failures isolated and recorded, reruns resume."""

from __future__ import annotations

import json

import pytest

from coron3_dask.cli import main
from coron3_dask.simulate import simulate_programme


@pytest.fixture(scope="module")
def programmes(tmp_path_factory):
    root = tmp_path_factory.mktemp("campaign_inputs")
    asns = []
    for k in range(2):
        sim = simulate_programme(root / f"p{k}", n_science_ints=2, n_ref_ints=2, n_dither=1, seed=20 + k)
        asn = json.loads(sim.asn_path.read_text())
        asn["products"][0]["name"] = f"{asn['products'][0]['name']}-p{k}"  # distinct product names
        sim.asn_path.write_text(json.dumps(asn))
        asns.append((sim.asn_path, sim.psfmask_path))
    broken = json.loads(asns[0][0].read_text())
    broken["products"][0]["name"] += "-broken"
    broken["products"][0]["members"][0]["expname"] = "missing_calints.fits"
    broken_path = asns[0][0].with_name("broken_asn.json")
    broken_path.write_text(json.dumps(broken))
    return asns, broken_path


def _campaign(paths, out, psfmask, *extra):
    return main(["campaign", *map(str, paths), "-o", str(out), "--psfmask", str(psfmask), "--scheduler",
                 "synchronous", "--no-progress", "--set", "resample.skip=true", *extra])


def test_failures_are_isolated_and_reruns_resume(programmes, tmp_path, capsys):
    (a, mask), (b, _) = programmes[0]
    broken = programmes[1]
    assert _campaign([a, broken, b], tmp_path, mask) == 1
    record = json.loads((tmp_path / "campaign.json").read_text())
    assert [o["status"] for o in record["associations"]] == ["done", "failed", "done"]
    assert "missing_calints.fits" in record["associations"][1]["error"]
    for outcome in (record["associations"][0], record["associations"][2]):
        assert any(p.endswith("_psfsub.fits") for p in outcome["products"])
    first = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.fits")}
    assert _campaign([a, broken, b], tmp_path, mask) == 1
    record = json.loads((tmp_path / "campaign.json").read_text())
    assert [o["status"] for o in record["associations"]] == ["skipped", "failed", "skipped"]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.fits")} == first, "complete work is not redone"
    assert _campaign([a], tmp_path, mask, "--force") == 0
    assert json.loads((tmp_path / "campaign.json").read_text())["done"] == 1
    assert "skipped" in capsys.readouterr().err


def test_incomplete_association_is_retried(programmes, tmp_path):
    (a, mask), _ = programmes[0]
    assert _campaign([a], tmp_path, mask) == 0
    record = next(tmp_path.rglob("*_coron3_dask.json"))
    record.unlink()  # as if the run had died before finishing
    assert _campaign([a], tmp_path, mask) == 0
    assert json.loads((tmp_path / "campaign.json").read_text())["associations"][0]["status"] == "done"
    assert record.exists()


def test_list_file_and_no_associations(programmes, tmp_path, capsys):
    (a, mask), (b, _) = programmes[0]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# campaign\n{a}\n\n{b}  # second\n")
    assert main(["campaign", "--list", str(listing), "-o", str(tmp_path / "out"), "--psfmask", str(mask),
                 "--scheduler", "synchronous", "--no-progress", "--set", "resample.skip=true"]) == 0
    assert json.loads((tmp_path / "out" / "campaign.json").read_text())["done"] == 2
    assert main(["campaign", "-o", str(tmp_path / "none")]) == 1
    assert "no associations" in capsys.readouterr().err


def test_override_psfmask_is_honoured_by_campaign_as_by_run(programmes, tmp_path, monkeypatch):
    """``align_refs.override_psfmask`` is resolved once, in open_inputs, for run and campaign alike."""
    (a, mask), _ = programmes[0]
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "no_crds_here"))  # a lookup would fail
    common = ["--scheduler", "synchronous", "--no-progress", "--set", "resample.skip=true",
              "--set", f"align_refs.override_psfmask={mask}"]
    assert main(["campaign", str(a), "-o", str(tmp_path / "camp"), *common]) == 0
    assert main(["run", str(a), "-o", str(tmp_path / "run"), *common]) == 0
    record = json.loads(next((tmp_path / "camp").rglob("*_coron3_dask.json")).read_text())
    assert str(mask) in record["inputs"]  # the PSFMASK the run used, with its path
    camp = sorted(p.name for p in (tmp_path / "camp").rglob("*_psfsub.fits"))
    assert camp and camp == sorted(p.name for p in (tmp_path / "run").rglob("*_psfsub.fits"))

