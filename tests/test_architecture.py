"""Keep the layers honest: the folders tell the data flow and imports only go the documented way.

files -> stages(kernels) -> files, with wcs and simulate beside (style guide section 7.1):

* ``kernels/`` is pipeline maths only: NumPy/SciPy/drizzle and sibling kernels; no xarray, dask,
  astropy.io or any other layer;
* ``stages/`` are thin xarray/Dask wrappers that import only kernels, schema and dq;
* only ``files/`` opens, reads or writes files; only ``wcs/`` imports ``astropy.wcs``/``gwcs``;
* ``simulate/`` may use kernels, files and wcs, and no pipeline layer uses the simulator;
* only the ``cli`` layer chooses a scheduler (``distributed``, ``scheduler=``), configures logging or prints.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "coron3_dask"
MODULES = sorted(PACKAGE.rglob("*.py"))
STDLIB_NUMERIC = {"__future__", "warnings", "math", "dataclasses", "collections", "typing", "functools", "itertools"}

#: for each layer, the package modules it may import (prefixes of ``coron3_dask.<...>``)
ALLOWED = {
    "kernels": {"kernels"},
    "stages": {"kernels", "schema", "dq"},
    "wcs": {"wcs", "schema"},
    "files": {"files", "schema", "dq", "config", ""},  # config: files/parameters raises its ConfigError
    "simulate": {"simulate", "kernels", "files", "wcs", "schema", "dq"},
    "analysis": {"analysis", "files", "wcs", "schema"},
    "campaign": {"campaign", "pipeline", "files", "config", "analysis", "progress", ""},
    "dashboard": {"dashboard", "campaign", "files", ""},
    "graph_names": {"progress"},
    "config": {"config", "dq", "files.parameters"},
    "schema": set(),
    "dq": set(),
    "progress": set(),
    "testing": set(),
    "pipeline": {"files", "stages", "wcs", "config", "schema", "dq", "graph_names", "resampling", "subtraction", ""},
    "resampling": {"files", "stages", "wcs", "config", "schema"},
    "subtraction": {"files", "stages", "wcs", "config", "schema"},
    "contrast": {"contrast", "pipeline", "analysis", "files", "stages", "wcs", "config", "schema"},
    "__init__": {"config", "pipeline", "simulate", "contrast"},
}
#: calls that open, read, write, move or delete files (attribute or plain name)
FILE_CALLS = {
    "open", "read_text", "write_text", "read_bytes", "write_bytes", "unlink", "mkdir", "touch", "rmtree",
    "savefig", "getdata", "writeto", "fromfile", "tofile", "flock",
}
#: the files layer's own API, called from other layers (``files.write_text(...)``, ``records.read_json(...)``)
FILE_LAYER_NAMES = {"files", "records", "fits_stream", "writers", "serving"}
FILE_FUNCS = {("json", "load"), ("json", "dump"), ("tomllib", "load"), ("np", "save"), ("np", "load"),
              ("fits", "open"), ("fits", "getdata"), ("os", "remove"), ("os", "replace"), ("os", "rename")}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports(path: Path) -> set[str]:
    tree = _tree(path)
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
            if node.module == "coron3_dask":  # from coron3_dask import files, schema
                mods |= {f"coron3_dask.{a.name}" for a in node.names}
    return mods


def _package_imports(path: Path) -> set[str]:
    """Imported package modules as ``coron3_dask``-relative names (``""`` for the package itself)."""
    out = set()
    for mod in _imports(path):
        if mod == "coron3_dask":
            continue
        if mod.startswith("coron3_dask."):
            name = mod.removeprefix("coron3_dask.")
            out.add("" if name == "__version__" else name)
    return out


def _top(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


def _calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(_tree(path)) if isinstance(n, ast.Call)]


def _call_name(call: ast.Call) -> tuple[str | None, str | None]:
    func = call.func
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        return owner, func.attr
    if isinstance(func, ast.Name):
        return None, func.id
    return None, None


def test_every_module_belongs_to_a_declared_layer():
    assert {_layer(p) for p in MODULES} <= set(ALLOWED) | {"cli"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layer_imports_go_the_documented_way(path):
    layer = _layer(path)
    if layer == "cli":
        return
    allowed = ALLOWED[layer]
    bad = {m for m in _package_imports(path) if not any(m == a or m.startswith(f"{a}.") or a == m for a in allowed)}
    bad = {m for m in bad if not (m == "" and "" in allowed)}
    where = f"{path.relative_to(PACKAGE)} ({layer}/)"
    assert not bad, f"{where} imports coron3_dask.{sorted(bad)}; allowed: {sorted(allowed)}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "kernels").glob("*.py")), ids=lambda p: p.name)
def test_kernels_import_only_the_numeric_stack(path):
    allowed = {"numpy", "scipy", "drizzle", *STDLIB_NUMERIC}
    mods = {m for m in _imports(path) if not m.startswith("coron3_dask.kernels")}
    assert _top(mods) <= allowed, f"{path.name} imports {_top(mods) - allowed}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "stages").glob("*.py")), ids=lambda p: p.name)
def test_stages_are_thin_xarray_dask_wrappers(path):
    allowed = {"numpy", "xarray", "dask", *STDLIB_NUMERIC}
    mods = {m for m in _imports(path) if not m.startswith("coron3_dask")}
    assert _top(mods) <= allowed, f"{path.name} imports {_top(mods) - allowed}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_files_touches_the_filesystem(path):
    if _layer(path) == "files":
        return
    hits = []
    for call in _calls(path):
        owner, name = _call_name(call)
        if owner in FILE_LAYER_NAMES:
            continue
        if (owner, name) in FILE_FUNCS or name in FILE_CALLS:
            hits.append(f"line {call.lineno}: {ast.unparse(call.func)}")
    mods = _imports(path)
    hits += [f"imports {m}" for m in mods if m.startswith(("astropy.io.fits", "asdf", "shutil"))]
    assert not hits, f"{path.relative_to(PACKAGE)} touches files outside files/: {hits}"


def test_only_wcs_imports_astropy_wcs():
    for path in MODULES:
        layer, mods = _layer(path), _imports(path)
        if layer != "wcs":
            assert not any(m.startswith("astropy.wcs") for m in mods), path
        if layer not in ("wcs", "files"):  # files/ only deserialises a gWCS from the ASDF extension
            assert not any(m.startswith("gwcs") for m in mods), path


def test_only_cli_chooses_a_scheduler():
    for path in MODULES:
        if _layer(path) == "cli":
            continue
        assert "distributed" not in _top(_imports(path)), path
        if path.name == "testing.py":  # shipped test helpers: a counting scheduler for tests
            continue
        for call in _calls(path):
            assert "scheduler" not in {k.arg for k in call.keywords}, f"{path}: line {call.lineno} picks a scheduler"


def test_no_layer_uses_the_simulator_or_the_cli():
    for path in MODULES:
        if _layer(path) in ("simulate", "cli", "__init__"):
            continue
        assert not {m for m in _package_imports(path) if m.startswith(("simulate", "cli"))}, path


def test_package_never_imports_jwst():
    for path in MODULES:
        assert not {"jwst", "stdatamodels", "stpipe", "stcal", "pyklip", "vip_hci"} & _top(_imports(path)), path


def test_no_module_configures_logging_or_prints():
    for path in MODULES:
        if _layer(path) == "cli":
            continue
        names = {_call_name(c)[1] for c in _calls(path)}
        assert not names & {"print", "basicConfig", "setLevel"}, path


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"
