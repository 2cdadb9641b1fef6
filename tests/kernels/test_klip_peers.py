"""KLIP kernel against a peer implementation: pyKLIP's ``klip.klip_math`` (test-only reference).

pyKLIP (Wang et al. 2015) is an independent KLIP code; ``klip_math(sci, ref_psfs, numbasis)``
returns the PSF-subtracted pixels with shape ``(p, b)`` and clips ``numbasis`` to the number of
references.  Our ``klip_modes`` must give the same numbers to float32 round-off.

Measured on this input (pyklip 2.10.1, float32 data; max |ours - pyKLIP| / rms(target) over
the truncations 1, 3, 5, 12, 20): full frame 2.9e-7, annulus 5.2e-7, sector 1.8e-7 (run with
``-s`` to print the figures); the assertion threshold is 1e-5.
"""

import numpy as np
import pytest

pytest.importorskip("pyklip")

from pyklip import klip as pyklip_klip

from coron3_dask.kernels import klip, regions

SHAPE = (80, 80)
CENTER = (39.4, 40.7)  # (x, y), deliberately off-integer
N_REF = 12
NUMBASIS = (1, 3, 5, 12, 20)  # 20 > N_REF: clipped to 12 by both codes


def _model():
    """12 references + 1 target: common smooth PSF, random speckle components, noise."""
    rng = np.random.default_rng(2024)
    yy, xx = np.indices(SHAPE, dtype=float)
    r = np.hypot(xx - CENTER[0], yy - CENTER[1])
    psf = 500.0 * np.exp(-(r**2) / (2 * 3.0**2)) + 40.0 / (1.0 + r / 4.0) ** 2
    # speckle components: smooth random blobs modulated by the PSF halo
    comps = []
    for _ in range(6):
        blob = np.zeros(SHAPE)
        for _ in range(15):
            x0, y0 = rng.uniform(0, SHAPE[1]), rng.uniform(0, SHAPE[0])
            blob += rng.normal() * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * rng.uniform(1.5, 4.0) ** 2))
        comps.append(blob * (psf / psf.max() + 0.05) * 30.0)
    comps = np.array(comps)

    def frame():
        amp = rng.normal(size=len(comps))
        return psf * rng.uniform(0.95, 1.05) + np.tensordot(amp, comps, axes=1) + rng.normal(0, 0.5, SHAPE)

    refs = np.array([frame() for _ in range(N_REF)], dtype=np.float32)
    target = frame()
    # small injected point source at (x, y) = (52.3, 33.8)
    target += 25.0 * np.exp(-((xx - 52.3) ** 2 + (yy - 33.8) ** 2) / (2 * 1.2**2))
    return target.astype(np.float32), refs


TARGET, REFS = _model()


def _region(name):
    yy, xx = np.indices(SHAPE, dtype=float)
    r = np.hypot(xx - CENTER[0], yy - CENTER[1])
    if name == "full":
        return np.ones(SHAPE, dtype=bool)
    if name == "annulus":
        return (r >= 8.0) & (r < 20.0)
    radial, azimuthal = regions.region_bounds(SHAPE, CENTER, annuli=3, subsections=4, iwa=4.0)
    masks = regions.region_masks(SHAPE, CENTER, radial, azimuthal)
    return masks[1 * 4 + 2]  # middle annulus, third sector


REGIONS = ("full", "annulus", "sector")


@pytest.mark.parametrize("region", REGIONS)
def test_klip_modes_equals_pyklip_klip_math(region):
    mask = _region(region)
    assert mask.sum() > 100
    sci_pix, refs_pix = TARGET[mask], REFS[:, mask]
    ours, _ = klip.klip_modes(sci_pix, refs_pix, numbasis=NUMBASIS)
    theirs = pyklip_klip.klip_math(sci_pix, refs_pix, np.array(NUMBASIS)).T  # (p, b) -> (b, p)
    assert ours.shape == theirs.shape == (len(NUMBASIS), mask.sum())
    assert ours.dtype == np.float32
    scale = float(np.std(sci_pix))
    rel = np.abs(ours.astype(np.float64) - theirs).max(axis=1) / scale
    figures = dict(zip(NUMBASIS, rel.tolist(), strict=True))
    print(f"{region}: max |ours - pyKLIP| / rms(target) per numbasis {figures}")
    assert np.all(rel < 1e-5), figures
    # the truncations are really different answers (the comparison is not of near-equal planes)
    assert np.abs(ours[0] - ours[2]).max() > 1e-2 * scale
    assert np.std(ours[-1]) < np.std(sci_pix)


def test_numbasis_beyond_reference_count_is_clipped_like_pyklip():
    mask = _region("annulus")
    sci_pix, refs_pix = TARGET[mask], REFS[:, mask]
    ours, ours_err = klip.klip_modes(sci_pix, refs_pix, numbasis=(N_REF, N_REF + 1, 20))
    theirs = pyklip_klip.klip_math(sci_pix, refs_pix, np.array([N_REF, N_REF + 1, 20])).T
    # pyKLIP: every truncation above the number of references is the full basis
    np.testing.assert_array_equal(theirs[1], theirs[0])
    np.testing.assert_array_equal(theirs[2], theirs[0])
    # ours: the same clipping, so identical planes, and equal to pyKLIP's
    np.testing.assert_array_equal(ours[1], ours[0])
    np.testing.assert_array_equal(ours[2], ours[0])
    np.testing.assert_array_equal(ours_err[2], ours_err[0])
    assert np.abs(ours[0] - theirs[0]).max() / np.std(sci_pix) < 1e-5
    # clipping really happened: fewer modes than references do give a different answer
    ours_11, _ = klip.klip_modes(sci_pix, refs_pix, numbasis=(N_REF - 1,))
    assert np.abs(ours_11[0] - ours[0]).max() > 1e-3 * np.std(sci_pix)


def _err_oracle(refs_pix, k):
    """jwst's ERR: std over references of each reference's residual after projecting on the
    first k principal directions, from an SVD of the mean-subtracted references."""
    r = refs_pix.astype(np.float64)
    r = r - r.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(r, full_matrices=False)
    basis = vt[: min(k, len(r))]
    return (r - (r @ basis.T) @ basis).std(axis=0), r


@pytest.mark.parametrize("region", REGIONS)
def test_err_equals_independent_svd_computation(region):
    mask = _region(region)
    refs_pix = REFS[:, mask]
    _, err = klip.klip_modes(TARGET[mask], refs_pix, numbasis=NUMBASIS)
    assert err.dtype == np.float32 and err.shape == (len(NUMBASIS), mask.sum())
    for m, k in enumerate(NUMBASIS):
        expected, centred = _err_oracle(refs_pix, k)
        scale = float(np.std(centred))
        assert np.abs(err[m] - expected).max() / scale < 1e-5, (region, k)
        if k < N_REF:
            assert expected.max() > 1e-3 * scale  # non-trivial residual for a partial basis
    # with all references used the residual of each reference vanishes
    assert np.abs(err[NUMBASIS.index(12)]).max() < 1e-5 * np.std(refs_pix)


def test_full_frame_input_shape_matches_pixel_input():
    """A (y, x) frame and its (npix,) pixels give the same numbers (full-frame region)."""
    sci2d, err2d = klip.klip_modes(TARGET, REFS, numbasis=(1, 5))
    sci1d, err1d = klip.klip_modes(TARGET.ravel(), REFS.reshape(N_REF, -1), numbasis=(1, 5))
    assert sci2d.shape == (2, *SHAPE)
    np.testing.assert_array_equal(sci2d.reshape(2, -1), sci1d)
    np.testing.assert_array_equal(err2d.reshape(2, -1), err1d)
