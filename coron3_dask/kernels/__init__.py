"""Pure NumPy/SciPy kernels: one integration (or one exposure cube) per call."""
