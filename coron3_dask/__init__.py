"""coron3_dask: JWST stage-3 coronagraphic processing (calwebb_coron3) as a Dask/xarray job.

The public API::

    from coron3_dask import load_config, open_inputs, build, run, simulate_programme

    config = load_config(overrides=["klip.truncate=20"])   # a Coron3Config
    inputs = open_inputs("jw01386-c1020_asn.json", config)  # lazy exposures and PSFMASK
    products = build(inputs, config)                         # lazy xarray datasets, nothing computed
    result = run(inputs, config, "products/", products=products)  # one compute, products on disk

    # beyond the official pipeline: ADI+RDI by regions with several truncations, then contrast
    config = load_config(overrides=["klip.mode=adi+rdi", "klip.annuli=4", "klip.truncate=5,10,20"])
    run(inputs, config, "best/")
    image = read_combined("best/", inputs.association.product_name, config)
    options = ContrastOptions(psf_model=psf, fwhm=2.03, host_flux=2.6e6, companions=((1.2, 70.0),))
    write_products(measure_contrast(inputs, config, image, options), "best/", ..., image, provenance)

The names are loaded on first use, so ``import coron3_dask`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real names for type checkers; at run time they load lazily
    from coron3_dask.config import Coron3Config, load_config
    from coron3_dask.contrast import ContrastOptions, measure_contrast, read_combined, write_products
    from coron3_dask.pipeline import build, open_inputs, run
    from coron3_dask.simulate import simulate_programme

__version__ = "0.1.0"

#: public name -> module that defines it
_API = {
    "Coron3Config": "coron3_dask.config",
    "load_config": "coron3_dask.config",
    "open_inputs": "coron3_dask.pipeline",
    "build": "coron3_dask.pipeline",
    "run": "coron3_dask.pipeline",
    "simulate_programme": "coron3_dask.simulate",
    "ContrastOptions": "coron3_dask.contrast",
    "measure_contrast": "coron3_dask.contrast",
    "read_combined": "coron3_dask.contrast",
    "write_products": "coron3_dask.contrast",
}

__all__ = [
    "ContrastOptions",
    "Coron3Config",
    "__version__",
    "build",
    "load_config",
    "measure_contrast",
    "open_inputs",
    "read_combined",
    "run",
    "simulate_programme",
    "write_products",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first access (PEP 562)."""
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'coron3_dask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
