"""coron3 associations (ASN JSON): read and validate the members a run uses (spec section 2.1)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coron3_dask.files.fits_read import InputError

__all__ = ["Association", "product_name_of", "read_association"]


@dataclass(frozen=True)
class Association:
    """The parts of a coron3 association the pipeline uses (spec §2.1).

    ``science`` and ``psf`` are absolute member paths in ASN order; ``raw`` is the parsed JSON.
    """

    path: Path
    asn_id: str
    product_name: str
    asn_pool: str
    asn_table: str
    science: tuple[Path, ...]
    psf: tuple[Path, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)


def _members(product: dict[str, Any], base: Path, problems: list[str]) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {"science": [], "psf": []}
    members = product.get("members")
    if not isinstance(members, list) or not members:
        problems.append("products[0].members " + ("missing" if members is None else "is empty or not a list"))
        return groups
    counts = dict.fromkeys(groups, 0)
    seen: dict[Path, int] = {}
    for i, member in enumerate(members):
        where = f"products[0].members[{i}]"
        if not isinstance(member, dict):
            problems.append(f"{where} is not an object")
            continue
        values = {key: member.get(key) for key in ("expname", "exptype")}
        absent = [key for key, val in values.items() if not isinstance(val, str) or not val.strip()]
        problems.extend(f"{where}.{key} missing" for key in absent)
        expname, kind = str(values["expname"]), str(values["exptype"]).lower()
        if absent or kind not in groups:
            continue
        counts[kind] += 1
        file = (base / expname).resolve()
        if not file.is_file():
            problems.append(f"{where}.expname {expname!r} not found (looked in {base})")
        elif file in seen:
            problems.append(f"{where}.expname {expname!r} duplicates members[{seen[file]}]")
        else:
            seen[file] = i
            groups[kind].append(file)
    problems.extend(f"no {kind} members (exptype '{kind}')" for kind, n in counts.items() if n == 0)
    return groups


def read_association(path: str | Path) -> Association:
    """Read and validate a coron3 association (ASN JSON).

    Only ``products[0]`` is used; members whose ``exptype`` is ``science`` or ``psf``
    (case-insensitive) are kept in ASN order, others dropped.  Member files are resolved
    relative to the ASN file's directory.

    Parameters
    ----------
    path : path
        The ASN JSON file.

    Returns
    -------
    Association

    Raises
    ------
    InputError
        Naming the file and every problem found (invalid JSON, missing or wrong fields,
        no science or psf members, member files missing or listed twice).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read association: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(f"{path}: top level is a JSON {type(raw).__name__}, expected an object")
    problems: list[str] = []
    asn_type, asn_id = raw.get("asn_type"), raw.get("asn_id")
    if asn_type is None:
        problems.append("asn_type missing")
    elif str(asn_type).lower() != "coron3":
        problems.append(f"asn_type is {asn_type!r}, expected 'coron3'")
    if not isinstance(asn_id, str) or not asn_id.strip():
        problems.append("asn_id missing" if asn_id is None else f"asn_id is {asn_id!r}, expected a non-empty string")
    products, name = raw.get("products"), None
    groups: dict[str, list[Path]] = {"science": [], "psf": []}
    if not isinstance(products, list) or not products:
        problems.append("products missing" if products is None else "products is empty or not a list")
    elif not isinstance(products[0], dict):
        problems.append("products[0] is not an object")
    else:
        name = products[0].get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append("products[0].name missing")
        groups = _members(products[0], path.resolve().parent, problems)
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    return Association(
        path=path.resolve(),
        asn_id=str(asn_id),
        product_name=str(name),
        asn_pool=str(raw.get("asn_pool", "")),
        asn_table=path.name,
        science=tuple(groups["science"]),
        psf=tuple(groups["psf"]),
        raw=raw,
    )


def product_name_of(path: str | Path) -> str | None:
    """Return the product name an ASN file declares (``products[0].name``), or None if it cannot be read.

    A cheap look for listings (no member is checked); :func:`read_association` validates.
    """
    try:
        name = json.loads(Path(path).read_text(encoding="utf-8"))["products"][0]["name"]
    except (OSError, UnicodeDecodeError, ValueError, LookupError, TypeError):
        return None
    return name if isinstance(name, str) and name.strip() else None
