"""Science checks on products: companion photometry, centroids, fitted-vs-true shifts, previews."""

from __future__ import annotations

from coron3_dask.analysis.photometry import Detection, centroid, companion_snr, shift_errors

__all__ = ["Detection", "centroid", "companion_snr", "shift_errors"]
