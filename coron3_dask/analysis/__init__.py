"""Science checks on products: companion photometry, centroids, fitted-vs-true shifts, contrast, previews."""

from __future__ import annotations

from coron3_dask.analysis.contrast import (
    AnnulusNoise,
    ContrastCurve,
    aperture_fraction,
    aperture_sum_map,
    aperture_sums,
    calibrated_contrast,
    default_radii,
    false_positive_fraction,
    host_aperture_flux,
    noise_per_annulus,
    raw_contrast_curve,
    recovered_flux,
    student_threshold,
    throughput_curve,
)
from coron3_dask.analysis.detection import (
    Candidate,
    CompanionMeasurement,
    find_detections,
    measure_companion,
    snr_map,
)
from coron3_dask.analysis.photometry import Detection, centroid, companion_snr, shift_errors

__all__ = [
    "AnnulusNoise",
    "Candidate",
    "CompanionMeasurement",
    "ContrastCurve",
    "Detection",
    "aperture_fraction",
    "aperture_sum_map",
    "aperture_sums",
    "calibrated_contrast",
    "centroid",
    "companion_snr",
    "default_radii",
    "false_positive_fraction",
    "find_detections",
    "host_aperture_flux",
    "measure_companion",
    "noise_per_annulus",
    "raw_contrast_curve",
    "recovered_flux",
    "shift_errors",
    "snr_map",
    "student_threshold",
    "throughput_curve",
]
