"""Keep the layers honest: imports only go the documented way (style guide section 7.1)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "coron3_dask"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return mods


def _top(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


@pytest.mark.parametrize("path", sorted((PACKAGE / "kernels").glob("*.py")), ids=lambda p: p.name)
def test_kernels_import_only_the_numeric_stack(path):
    allowed = {"numpy", "scipy", "drizzle", "__future__", "warnings", "math", "dataclasses", "collections",
               "typing", "functools", "itertools"}
    mods = {m for m in _imports(path) if not m.startswith("coron3_dask.kernels.")}  # sibling kernels are fine
    assert _top(mods) <= allowed, f"{path.name} imports {_top(mods) - allowed}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "stages").glob("*.py")), ids=lambda p: p.name)
def test_stages_never_touch_files_or_schedulers(path):
    mods = _imports(path)
    assert not {m for m in mods if m.startswith(("astropy.io", "distributed", "coron3_dask.io",
                                                  "coron3_dask.pipeline", "coron3_dask.cli"))}


def test_only_io_touches_fits_and_only_cli_imports_distributed():
    for path in PACKAGE.rglob("*.py"):
        mods = _imports(path)
        if path.name not in ("io.py", "fits_stream.py", "psfmask.py"):
            assert not any(m.startswith("astropy.io.fits") for m in mods), path
        if path.name != "cli.py":
            assert "distributed" not in _top(mods), path


def test_package_never_imports_jwst():
    for path in PACKAGE.rglob("*.py"):
        assert not {"jwst", "stdatamodels", "stpipe", "stcal"} & _top(_imports(path)), path


def test_no_module_configures_logging_or_prints():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name != "cli.py":
            assert "basicConfig" not in text and ".setLevel(" not in text, path
            assert "print(" not in text, path
