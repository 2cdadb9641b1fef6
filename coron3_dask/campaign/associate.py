"""Group stage-2 coronagraphic exposures into coron3 associations (spec section 2).

:func:`plan_associations` is the pure grouping: primary-header keywords in, planned
associations and skipped files (with reasons) out.  :func:`associate` scans files and
directories through the files layer, plans, and writes one ASN JSON per association.

Rules (after jwst's ``Asn_Lv3NRCCoron`` / ``Asn_Lv3MIRCoron``):

* a member is a ``_calints.fits`` file with a coronagraphic EXP_TYPE (``NRC_CORON``,
  ``MIR_LYOT``, ``MIR_4QPM``) and the keywords in :data:`REQUIRED`; of NIRCam full-frame
  NRCA1-NRCA4 data only the detector that holds the occulted target is kept (NRCA2 for
  ``MASKRND``, NRCA4 for ``MASKBAR``), as jwst's ``nrccoron_valid_detector``;
* science exposures (``IS_PSF = F``) are grouped by PROGRAM, INSTRUME, DETECTOR, EXP_TYPE,
  FILTER, PUPIL, CORONMSK, SUBARRAY and target; PSF exposures (``IS_PSF = T``, any target)
  join every science group of the same configuration; a group needs both;
* an exposure name seen twice (the same file in two directories) is kept once.

Fields the headers do not carry are derived by these documented rules:

* ``target``: ``t`` + TARGETID (3 digits) when present, else the programme's science targets
  (TARGPROP) numbered ``t001``, ``t002``, ... in order of their first exposure name;
* ``asn_id``: the ``cNNNN`` candidate named by the science members' ASNTABLE (all the same),
  else the next free id from ``c1000`` in the programme, groups taken in order of their first
  science exposure name;
* ``asn_pool``: the members' ASNPOOL (all the same), else ``jw{PROGRAM}_{timestamp}_pool.csv``
  with the programme's earliest EXPSTART as ``YYYYMMDDtHHMMSS``; ``version_id`` is the pool's
  timestamp, as in operations;
* ASN file name: ``jw{PROGRAM}-{asn_id}_{version_id}_coron3_{sequence:05d}_asn.json``, the
  sequence counting the programme's associations from 1;
* ``code_version`` and ``constraints`` describe this tool and the group (informational).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coron3_dask import __version__, files
from coron3_dask.files import exposure_headers, records
from coron3_dask.files.exposure_headers import CALINTS_SUFFIX, ExposureHeader, UnreadableExposure

__all__ = ["AssociateResult", "PlannedAssociation", "Skipped", "associate", "plan_associations", "product_name"]

#: coronagraphic EXP_TYPE -> the instrument it belongs to
CORON_EXP_TYPES = {"NRC_CORON": "NIRCAM", "MIR_LYOT": "MIRI", "MIR_4QPM": "MIRI"}
#: keywords every member needs (besides EXP_TYPE)
REQUIRED = ("PROGRAM", "INSTRUME", "DETECTOR", "FILTER", "SUBARRAY", "IS_PSF", "EXPSTART")
#: first coronagraphic candidate id of a programme (APT numbers them c1000, c1001, ...)
FIRST_CANDIDATE = 1000
_RULES = {"NIRCAM": "candidate_Asn_Lv3NRCCoron", "MIRI": "candidate_Asn_Lv3MIRCoron"}
_NO_VALUE = {"", "N/A", "NONE"}
_NRCA = {"NRCA1", "NRCA2", "NRCA3", "NRCA4"}
_CANDIDATE = re.compile(r"-(c\d{4})_")
_POOL_STAMP = re.compile(r"_(\d{8}t\d{6})_pool")
_DEGRADED = "No known degraded exposures in association."


@dataclass(frozen=True)
class Skipped:
    """A file that is in no association, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class PlannedAssociation:
    """One coron3 association: its identifiers and members (absolute paths, ASN order)."""

    program: str
    asn_id: str
    target: str
    asn_rule: str
    asn_pool: str
    version_id: str
    sequence: int
    product_name: str
    constraints: str
    science: tuple[Path, ...]
    psf: tuple[Path, ...]

    @property
    def filename(self) -> str:
        """ASN file name, ``jw{program}-{asn_id}_{version_id}_coron3_{sequence:05d}_asn.json``."""
        return f"jw{self.program}-{self.asn_id}_{self.version_id}_coron3_{self.sequence:05d}_asn.json"

    def to_json(self, asn_dir: Path) -> dict[str, Any]:
        """Return the ASN document, member names relative to ``asn_dir`` (absolute) where it is written."""
        candidate = f"[('{self.asn_id}', 'coron')]"
        members = [
            {"expname": os.path.relpath(path, asn_dir), "exptype": kind, "exposerr": "null", "asn_candidate": candidate}
            for kind, paths in (("science", self.science), ("psf", self.psf))
            for path in paths
        ]
        return {
            "asn_type": "coron3",
            "asn_rule": self.asn_rule,
            "version_id": self.version_id,
            "code_version": f"coron3_dask {__version__}",
            "degraded_status": _DEGRADED,
            "program": self.program,
            "constraints": self.constraints,
            "asn_id": self.asn_id,
            "target": self.target,
            "asn_pool": self.asn_pool,
            "products": [{"name": self.product_name, "members": members}],
        }


@dataclass(frozen=True)
class AssociateResult:
    """What :func:`associate` found: associations, their ASN paths (same order) and skipped files."""

    associations: tuple[PlannedAssociation, ...]
    paths: tuple[Path, ...]
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True)
class _Exposure:
    """One exposure that passed :func:`_check`."""

    path: Path
    config: tuple[str, ...]  # PROGRAM, INSTRUME, DETECTOR, EXP_TYPE, FILTER, PUPIL, CORONMSK, SUBARRAY
    is_psf: bool
    target: tuple[str, str]  # ("id", "t007") or ("name", TARGPROP)
    expstart: float
    pool: str
    candidate: str

    @property
    def program(self) -> str:
        return self.config[0]


#: a science group: (configuration, target label)
_Group = tuple[tuple[str, ...], str]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"T": True, "TRUE": True, "F": False, "FALSE": False}.get(_text(value).upper())


def _program(value: Any) -> str:
    return f"{value:05d}" if isinstance(value, int) else _text(value)


def _target(cards: dict[str, Any]) -> tuple[str, str]:
    try:
        return ("id", f"t{int(cards['TARGETID']):03d}")
    except (KeyError, TypeError, ValueError):
        return ("name", _text(cards.get("TARGPROP")).upper())


def _check(header: ExposureHeader) -> _Exposure | str:
    """Validate one exposure's keywords: the exposure, or why it cannot be a member."""
    cards = header.cards
    model = _text(cards.get("DATAMODL"))
    if model and model != "CubeModel":
        return f"not a calints product (DATAMODL = {model}, expected CubeModel)"
    exp_type = _text(cards.get("EXP_TYPE")).upper()
    if not exp_type:
        return "missing keyword EXP_TYPE"
    if exp_type not in CORON_EXP_TYPES:
        return f"not coronagraphic (EXP_TYPE = {exp_type}; expected {', '.join(CORON_EXP_TYPES)})"
    if missing := [key for key in REQUIRED if _text(cards.get(key)) == ""]:
        return f"missing keyword{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    instrument, detector = _text(cards["INSTRUME"]).upper(), _text(cards["DETECTOR"]).upper()
    if CORON_EXP_TYPES[exp_type] != instrument:
        return f"EXP_TYPE {exp_type} is not a mode of INSTRUME {instrument}"
    is_psf = _flag(cards["IS_PSF"])
    if is_psf is None:
        return f"IS_PSF = {cards['IS_PSF']!r} is neither T nor F"
    try:
        expstart = float(cards["EXPSTART"])
    except (TypeError, ValueError):
        return f"EXPSTART = {cards['EXPSTART']!r} is not a number (MJD)"
    pupil, mask, subarray = (_text(cards.get(k)).upper() for k in ("PUPIL", "CORONMSK", "SUBARRAY"))
    pupil, mask = ("N/A" if v in _NO_VALUE else v for v in (pupil, mask))
    on_target = {"MASKRND": "NRCA2", "MASKBAR": "NRCA4"}.get(pupil, detector)
    if instrument == "NIRCAM" and subarray == "FULL" and detector in _NRCA and detector != on_target:
        return f"NIRCam detector {detector} does not hold the target (PUPIL {pupil}, FULL frame: {on_target})"
    table = _CANDIDATE.search(_text(cards.get("ASNTABLE")))
    program, filt = _program(cards["PROGRAM"]), _text(cards["FILTER"]).upper()
    return _Exposure(
        path=header.path,
        config=(program, instrument, detector, exp_type, filt, pupil, mask, subarray),
        is_psf=is_psf,
        target=_target(cards),
        expstart=expstart,
        pool=_text(cards.get("ASNPOOL")),
        candidate=table.group(1) if table else "",
    )


def _describe(config: tuple[str, ...]) -> str:
    program, instrument, detector, exp_type, filt, pupil, mask, subarray = config
    return (
        f"program {program}, {instrument} {detector} {exp_type}, FILTER {filt}, PUPIL {pupil}, "
        f"CORONMSK {mask}, SUBARRAY {subarray}"
    )


def product_name(
    program: str, asn_id: str, target: str, instrument: str, elements: Iterable[str], subarray: str
) -> str:
    """Level-3 product name ``jw{PROGRAM}-{asn_id}_{target}_{instrument}_{opt_elem}[-{subarray}]`` (spec §2.2).

    ``opt_elem`` joins FILTER and PUPIL, sorted case-insensitively, without ``N/A`` (nor
    ``CLEAR``, as jwst's association rules drop it); ``-{subarray}`` unless ``FULL``.

    Examples
    --------
    >>> product_name("01386", "c1020", "t001", "NIRCAM", ["F410M", "MASKRND"], "SUB320A335R")
    'jw01386-c1020_t001_nircam_f410m-maskrnd-sub320a335r'
    >>> product_name("01386", "c1002", "t001", "MIRI", ["F1140C", "N/A"], "MASK1140")
    'jw01386-c1002_t001_miri_f1140c-mask1140'
    """
    kept = sorted((e.lower() for e in elements if e.upper() not in _NO_VALUE | {"CLEAR"}), key=str.lower)
    sub = "" if subarray.upper() == "FULL" else f"-{subarray}"
    return f"jw{program}-{asn_id}_{target}_{instrument}_{'-'.join(kept) or 'clear'}{sub}".lower()


def _stamp(mjd: float) -> str:
    moment = dt.datetime(1858, 11, 17) + dt.timedelta(seconds=round(mjd * 86400))
    return moment.strftime("%Y%m%dt%H%M%S")


def _targets(science: list[_Exposure]) -> dict[tuple[str, str, str], str]:
    """Label of every (programme, *target) of the science exposures: TARGETIDs kept, names numbered."""
    labels: dict[tuple[str, str, str], str] = {}
    used = {(e.program, e.target[1]) for e in science if e.target[0] == "id"}
    number: dict[str, int] = defaultdict(int)
    for e in science:  # in exposure-name order
        key = (e.program, *e.target)
        if key in labels or e.target[0] == "id":
            labels.setdefault(key, e.target[1])
            continue
        number[e.program] += 1
        while (e.program, f"t{number[e.program]:03d}") in used:
            number[e.program] += 1
        labels[key] = f"t{number[e.program]:03d}"
    return labels


def _screen(headers: Sequence[ExposureHeader | UnreadableExposure]) -> tuple[list[_Exposure], list[Skipped]]:
    """Exposures that can be members, in exposure-name order; the others with the reason."""
    skipped: list[Skipped] = []
    checked: dict[str, _Exposure] = {}
    for header in sorted(headers, key=lambda h: h.path):
        if not header.path.name.endswith(CALINTS_SUFFIX):
            skipped.append(Skipped(header.path, f"not a calints file (name does not end in {CALINTS_SUFFIX})"))
        elif isinstance(header, UnreadableExposure):
            skipped.append(Skipped(header.path, header.reason))
        elif isinstance(exposure := _check(header), str):
            skipped.append(Skipped(header.path, exposure))
        elif first := checked.get(header.path.name):
            skipped.append(Skipped(header.path, f"duplicate exposure name (kept {first.path})"))
        else:
            checked[header.path.name] = exposure
    return sorted(checked.values(), key=lambda e: e.path.name), skipped


def _group(exposures: list[_Exposure]) -> tuple[list[tuple[_Group, list[_Exposure], list[_Exposure]]], list[Skipped]]:
    """Science groups (configuration + target) with their PSF members; exposures left without a partner."""
    labels = _targets([e for e in exposures if not e.is_psf])
    science: dict[_Group, list[_Exposure]] = defaultdict(list)
    psfs: dict[tuple[str, ...], list[_Exposure]] = defaultdict(list)
    for e in exposures:
        if e.is_psf:
            psfs[e.config].append(e)
        else:
            science[(e.config, labels[(e.program, *e.target)])].append(e)
    groups, skipped = [], []
    for key, members in sorted(science.items(), key=lambda item: (item[0][0][0], item[1][0].path.name)):
        if key[0] in psfs:
            groups.append((key, members, psfs[key[0]]))
        else:
            skipped += [
                Skipped(e.path, f"no PSF members (IS_PSF = T) with the same {_describe(key[0])}") for e in members
            ]
    paired = {config for config, _ in science}
    for config, members in psfs.items():
        if config not in paired:
            why = f"no science members (IS_PSF = F) with the same {_describe(config)}"
            skipped += [Skipped(e.path, why) for e in members]
    return groups, skipped


def plan_associations(
    headers: Sequence[ExposureHeader | UnreadableExposure],
) -> tuple[list[PlannedAssociation], list[Skipped]]:
    """Group exposures into coron3 associations (the rules are in the module docstring).

    Parameters
    ----------
    headers : sequence of ExposureHeader or UnreadableExposure
        Primary-header keywords of every candidate file
        (:func:`coron3_dask.files.exposure_headers.read_exposure_headers`).

    Returns
    -------
    associations : list of PlannedAssociation
        Ordered by programme, then first science exposure name.
    skipped : list of Skipped
        Every file placed in no association, with the reason, in path order.
    """
    exposures, skipped = _screen(headers)
    groups, unpaired = _group(exposures)
    earliest: dict[str, float] = {}
    for e in exposures:
        earliest[e.program] = min(e.expstart, earliest.get(e.program, e.expstart))
    carried = [{e.candidate for e in members} for _, members, _ in groups]
    ids = [found.pop() if len(found) == 1 and "" not in found else "" for found in carried]
    taken = {(key[0][0], asn_id) for (key, _, _), asn_id in zip(groups, ids, strict=True) if asn_id}
    planned: list[PlannedAssociation] = []
    for ((config, target), members, psf), carried_id in zip(groups, ids, strict=True):
        program, instrument = config[0], config[1]
        asn_id, number = carried_id, FIRST_CANDIDATE
        while not asn_id:
            if (program, f"c{number:04d}") not in taken:
                asn_id = f"c{number:04d}"
                taken.add((program, asn_id))
            number += 1
        pools = {e.pool for e in (*members, *psf)}
        pool = pools.pop() if len(pools) == 1 and "" not in pools else ""
        stamp = _POOL_STAMP.search(pool)
        version = stamp.group(1) if stamp else _stamp(earliest[program])
        names = ", ".join(sorted({e.target[1] for e in members}))
        planned.append(
            PlannedAssociation(
                program=program,
                asn_id=asn_id,
                target=target,
                asn_rule=_RULES[instrument],
                asn_pool=pool or f"jw{program}_{version}_pool.csv",
                version_id=version,
                sequence=1 + sum(a.program == program for a in planned),
                product_name=product_name(program, asn_id, target, instrument, config[4:6], config[7]),
                constraints=f"coron3_dask associate: {_describe(config)}, target {target} ({names})",
                science=tuple(e.path for e in members),
                psf=tuple(e.path for e in psf),
            )
        )
    return planned, sorted(skipped + unpaired, key=lambda s: s.path)


def associate(
    inputs: Iterable[str | Path], output_dir: str | Path, *, dry_run: bool = False, max_workers: int = 8
) -> AssociateResult:
    """Find calints files, group them into coron3 associations and write one ASN JSON each.

    Parameters
    ----------
    inputs : iterable of path
        Directories (searched recursively for ``*_calints.fits``) and files.
    output_dir : path
        Directory of the ASN files (created); member names are written relative to it.
    dry_run : bool
        Plan only: nothing is created or written.
    max_workers : int
        Threads reading headers.

    Returns
    -------
    AssociateResult
        The associations, the ASN paths written (or that would be), the skipped files.

    Raises
    ------
    InputError
        An input does not exist, or ``output_dir`` cannot be created.
    """
    headers = exposure_headers.read_exposure_headers(exposure_headers.find_exposures(inputs), max_workers=max_workers)
    planned, skipped = plan_associations(headers)
    if planned and not dry_run:
        asn_dir = files.ensure_dir(output_dir, "--output-dir")
    else:
        asn_dir = Path(output_dir).resolve()
    paths = []
    for asn in planned:
        paths.append(asn_dir / asn.filename)
        if not dry_run:
            records.write_json(paths[-1], asn.to_json(asn_dir), indent=1)
    return AssociateResult(tuple(planned), tuple(paths), tuple(skipped))
