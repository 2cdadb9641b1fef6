"""``associate``: calints files grouped into coron3 associations from their primary headers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from astropy.io import fits
from helpers import restored_process_state

from coron3_dask import cli, files
from coron3_dask.campaign.associate import associate, plan_associations
from coron3_dask.files.exposure_headers import ExposureHeader
from coron3_dask.simulate import simulate_programme

#: informational fields that describe the tool that wrote the ASN, not the data
TOOL_FIELDS = ("code_version", "constraints")


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    root = tmp_path_factory.mktemp("associate_inputs")
    return {
        preset: simulate_programme(root / preset, preset=preset, n_science_ints=2, n_ref_ints=2, n_dither=1)
        for preset in ("SUB320A335R", "MASK1550")
    }


def _calints(sim):
    return [*sim.science_files, *sim.psf_files]


def _copy(sim, dest: Path, **cards) -> list[Path]:
    """Copy a programme's calints files into ``dest``, setting primary-header ``cards``."""
    dest.mkdir(parents=True, exist_ok=True)
    out = [Path(shutil.copy2(f, dest / f.name)) for f in _calints(sim)]
    for path in out:
        with fits.open(path, mode="update") as hdul:
            hdul[0].header.update(cards)
    return out


def _members(asn_path: Path) -> list[tuple[Path, str, str, str]]:
    asn = json.loads(asn_path.read_text())
    return [
        ((asn_path.parent / m["expname"]).resolve(), m["exptype"], m["exposerr"], m["asn_candidate"])
        for m in asn["products"][0]["members"]
    ]


@pytest.mark.parametrize("preset", ["SUB320A335R", "MASK1550"])
def test_reproduces_the_simulator_association(sims, preset, tmp_path):
    sim = sims[preset]
    theirs = json.loads(sim.asn_path.read_text())
    result = associate([sim.directory], tmp_path / "asn")
    assert result.skipped == ()
    (path,) = result.paths
    ours = json.loads(path.read_text())
    for key in ("asn_type", "asn_rule", "program", "asn_id", "target", "degraded_status"):
        assert ours[key] == theirs[key], key
    assert ours["products"][0]["name"] == theirs["products"][0]["name"] == sim.product_name
    assert _members(path) == _members(sim.asn_path)  # same files, exptypes and order
    # the calints name their pool (ASNPOOL, as real stage-2 products do): the ASN is the simulator's, field
    # for field, except the two that describe the tool that wrote it
    assert path.name == sim.asn_path.name
    for key in set(theirs) - {"code_version", "constraints", "products"}:
        assert ours[key] == theirs[key], key
    assert set(ours) == set(theirs)


def test_reproduces_the_simulator_association_exactly_when_calints_carry_asnpool(sims, tmp_path):
    sim = sims["SUB320A335R"]
    theirs = json.loads(sim.asn_path.read_text())
    _copy(sim, tmp_path, ASNPOOL=theirs["asn_pool"])  # as real stage-2 products do
    (path,) = associate([tmp_path], tmp_path).paths
    assert path.name == sim.asn_path.name
    ours = json.loads(path.read_text())
    drop = lambda asn: {k: v for k, v in asn.items() if k not in TOOL_FIELDS}  # noqa: E731
    assert drop(ours) == drop(theirs)
    asn = files.read_association(path)
    assert asn.science == tuple(tmp_path / p.name for p in sim.science_files)


def test_programmes_and_filters_in_one_tree_give_one_association_each(sims, tmp_path):
    tree = tmp_path / "tree"
    _copy(sims["SUB320A335R"], tree / "nircam")
    _copy(sims["MASK1550"], tree / "deep" / "miri", PROGRAM="02222")
    result = associate([tree], tmp_path / "asn")
    assert result.skipped == ()
    assert [a.product_name for a in result.associations] == [
        "jw01386-c1000_t001_nircam_f335m-maskrnd-sub320a335r",
        "jw02222-c1000_t001_miri_f1550c-mask1550",
    ]
    assert [p.name.split("_")[0] for p in result.paths] == ["jw01386-c1000", "jw02222-c1000"]
    for path, preset in zip(result.paths, ("SUB320A335R", "MASK1550"), strict=True):
        asn = files.read_association(path)
        assert [p.name for p in asn.science] == [p.name for p in sims[preset].science_files]
        assert [p.name for p in asn.psf] == [p.name for p in sims[preset].psf_files]
        assert all(m["expname"].startswith("../tree/") for m in asn.raw["products"][0]["members"])
    # one programme, two filters: two candidates c1000, c1001 and sequence numbers 1, 2
    _copy(sims["MASK1550"], tree / "deep" / "miri", PROGRAM="01386")
    again = associate([tree], tmp_path / "asn2")
    assert [(a.asn_id, a.sequence) for a in again.associations] == [("c1000", 1), ("c1001", 2)]
    assert [a.product_name.split("_")[2] for a in again.associations] == ["miri", "nircam"]


def test_files_that_fit_nowhere_are_reported_with_the_reason(sims, tmp_path):
    nircam, miri = sims["SUB320A335R"], sims["MASK1550"]
    data = tmp_path / "data"
    good = _copy(nircam, data)
    imaging = data / "jw01386004001_02101_00001_nrcalong_calints.fits"
    shutil.copy2(nircam.science_files[0], imaging)
    fits.setval(imaging, "EXP_TYPE", value="NRC_IMAGE")
    n_science = len(miri.science_files)
    lonely = _copy(miri, data / "miri_science_only")  # MIRI science, its PSF removed
    lonely.pop().unlink()
    psf_only = _copy(miri, data / "psf_only", FILTER="F1140C", CORONMSK="4QPM_1140")  # another filter, PSF only
    for path in psf_only[:n_science]:
        path.unlink()
    psf_only = psf_only[n_science:]
    corrupt = data / "jw01386005001_03108_00001_nrcalong_calints.fits"
    corrupt.write_bytes(nircam.science_files[0].read_bytes()[:1000])
    no_filter = data / "jw01386006001_03108_00001_nrcalong_calints.fits"
    shutil.copy2(nircam.science_files[0], no_filter)
    fits.delval(no_filter, "FILTER")
    duplicate = data / "zz_copy" / nircam.psf_files[0].name  # sorts after the first one
    duplicate.parent.mkdir()
    shutil.copy2(nircam.psf_files[0], duplicate)

    result = associate([data, nircam.psfmask_path], tmp_path / "asn")
    reasons = {s.path: s.reason for s in result.skipped}
    assert "not coronagraphic (EXP_TYPE = NRC_IMAGE" in reasons.pop(imaging)
    for path in lonely:
        assert reasons.pop(path).startswith("no PSF members (IS_PSF = T) with the same program 01386, MIRI MIRIMAGE")
    for path in psf_only:
        assert reasons.pop(path).startswith("no science members (IS_PSF = F) with the same program 01386, MIRI")
    assert reasons.pop(corrupt).startswith("not a readable FITS file")
    assert reasons.pop(no_filter) == "missing keyword FILTER"
    assert reasons.pop(duplicate) == f"duplicate exposure name (kept {good[-1]})"
    assert reasons.pop(nircam.psfmask_path).startswith("not a calints file")
    assert reasons == {}
    (path,) = result.paths
    asn = files.read_association(path)
    assert (asn.science, asn.psf) == (tuple(good[:-1]), tuple(good[-1:]))


def _header(name: str, **cards) -> ExposureHeader:
    base = {
        "PROGRAM": "01234", "EXP_TYPE": "NRC_CORON", "INSTRUME": "NIRCAM", "DETECTOR": "NRCA2", "FILTER": "F210M",
        "PUPIL": "MASKRND", "CORONMSK": "MASKA210R", "SUBARRAY": "FULL", "IS_PSF": False, "EXPSTART": 60000.5,
        "TARGPROP": "STAR",
    }
    return ExposureHeader(Path(f"/data/{name}_calints.fits"), {**base, **cards})


def test_grouping_rules_on_headers_alone():
    headers = [
        _header("jw01234001001_01_00001_nrca2", IS_PSF=True, TARGPROP="REF"),
        _header("jw01234002001_01_00001_nrca2"),
        _header("jw01234002001_01_00001_nrca1", DETECTOR="NRCA1"),  # full frame: the target is on NRCA2
        _header("jw01234002001_01_00001_nrcalong", DETECTOR="NRCALONG", FILTER="F335M"),
        _header("jw01234001001_01_00001_nrcalong", DETECTOR="NRCALONG", FILTER="F335M", IS_PSF="T"),
        _header("jw01234003001_01_00001_nrca2", TARGPROP="OTHER", ASNTABLE="jw01234-c1007_20230101t0_image2.json"),
    ]
    planned, skipped = plan_associations(headers)
    assert [(s.path.name.split("_")[3], s.reason.split(" (")[0]) for s in skipped] == [
        ("nrca1", "NIRCam detector NRCA1 does not hold the target")
    ]
    assert [(a.product_name, len(a.science), len(a.psf)) for a in planned] == [
        ("jw01234-c1000_t001_nircam_f210m-maskrnd", 1, 1),
        ("jw01234-c1001_t001_nircam_f335m-maskrnd", 1, 1),
        ("jw01234-c1007_t002_nircam_f210m-maskrnd", 1, 1),  # candidate id from ASNTABLE, second target
    ]
    assert {a.asn_pool for a in planned} == {"jw01234_20230225t120000_pool.csv"}  # MJD 60000.5
    assert [a.sequence for a in planned] == [1, 2, 3]
    with_id = plan_associations([_header("jw01234002001_01_00001_nrca2", TARGETID=7), headers[0]])[0]
    assert with_id[0].target == "t007"


def test_cli_writes_associations_that_run_reads(sims, tmp_path, capsys):
    sim = sims["MASK1550"]
    out = tmp_path / "asn"
    with restored_process_state():
        assert cli.main(["associate", str(sim.directory), "-o", str(out), "--dry-run"]) == 0
        assert not out.exists()
        assert "would write" in capsys.readouterr().out
        assert cli.main(["associate", str(sim.directory), str(sims["SUB320A335R"].directory), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out.splitlines()
    assert len(stdout) == 2
    assert "jw01386-c1000_t001_miri_f1550c-mask1550 (2 science + 1 psf members)" in stdout[0]
    for path in sorted(out.glob("*_asn.json")):
        asn = files.read_association(path)
        assert asn.asn_id in ("c1000", "c1001") and len(asn.science) == 2 and len(asn.psf) == 1
        args = cli._parser().parse_args(["run", str(path)])  # what `coron3-dask run ASN` would read
        assert files.read_association(args.asn).product_name == asn.product_name


def test_cli_reports_skipped_files_and_fails_when_nothing_fits(sims, tmp_path, capsys):
    sim = sims["SUB320A335R"]
    with restored_process_state():
        assert cli.main(["associate", str(sim.science_files[0]), "-o", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert f"skipped {sim.science_files[0]}: no PSF members" in err
        assert "no association formed" in err
        assert cli.main(["associate", str(tmp_path / "missing"), "-o", str(tmp_path)]) == 1
    assert f"coron3-dask: error: {tmp_path / 'missing'}: no such file or directory" in capsys.readouterr().err
    assert list(tmp_path.glob("*_asn.json")) == []
