"""notebooks/coron3_tour.ipynb runs top to bottom in a real Jupyter kernel, and is stored clean.

The tour is executed with nbclient in an ipykernel started from this interpreter (the venv's
python, whatever kernelspecs are installed elsewhere), on a reduced programme (one integration
per roll and per reference dither point) in a scratch directory.  The executed copy is never
written back: the stored notebook keeps no outputs, so it cannot rot or leak a run's results.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.manager import KernelManager  # noqa: E402  (jupyter_client comes with nbclient)

TOUR = Path(__file__).resolve().parents[1] / "notebooks" / "coron3_tour.ipynb"
#: the probe appended to the executed copy: which interpreter the kernel runs, and where
_PROBE = "import os, sys; print('KERNEL_PYTHON=' + sys.executable); print('KERNEL_CWD=' + os.getcwd())"


def _texts(cell) -> str:
    """Every text a code cell produced (streams and text/plain results), joined."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_tour_is_stored_without_outputs():
    notebook = nbformat.read(TOUR, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the tour has code cells"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, "store notebooks cleared"
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_tour_runs_in_a_kernel(tmp_path, monkeypatch):
    notebook = nbformat.read(TOUR, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(_PROBE))
    env = {
        "CORON3_TOUR_DIR": str(tmp_path / "tour"),
        "CORON3_TOUR_INTS": "1",
        "CORON3_TOUR_REF_INTS": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # the kernel is this interpreter: no dependence on which kernelspecs are installed where
    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    client = nbclient.NotebookClient(
        notebook,
        km=km,
        timeout=120,  # per cell
        startup_timeout=60,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    try:
        client.execute()  # raises CellExecutionError, naming the cell, on any error
    finally:  # nbclient leaves a kernel it was handed running
        if km.has_kernel:
            km.shutdown_kernel(now=True)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code:
        assert not any(out["output_type"] == "error" for out in cell.outputs)
    texts = [_texts(cell) for cell in code]
    everything = "\n".join(texts)

    assert f"KERNEL_PYTHON={sys.executable}\n" in texts[-1]
    assert f"KERNEL_CWD={tmp_path}\n" in texts[-1]
    # the inputs as an xarray dataset (its repr), the dashboard link, the task counts per step
    assert "<xarray.Dataset>" in everything and "(integration, y, x)" in everything
    assert "Dask dashboard: http://127.0.0.1:" in everything
    counts = next(t for t in texts if t.startswith("tasks per step"))
    for step in ("read", "outlier_detection", "stack_refs", "align_refs", "klip", "resample"):
        assert f"  {step} " in counts, step
    # the run wrote every product kind into the scratch directory, not next to the notebook
    products = tmp_path / "tour" / "products"
    for kind in ("psfstack", "psfalign", "psfsub", "i2d"):
        assert any(products.glob(f"*_{kind}.fits")), kind
    # the figures: graph, psfstack, psfalign, shifts, psfsub, i2d
    images = [out for cell in code for out in cell.outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 6
    assert "shift error: median" in everything and "S/N" in everything
