"""KLIP regions and ADI reference selection against pyKLIP (test-only reference, pyklip 2.10.1).

The oracle is pyKLIP's own code wherever it exposes a function (``define_annuli_bounds``,
``make_polar_coordinates``, ``estimate_movement``, ``parallelized.klip_parallelized``); the glue
that ``klip_parallelized``/``klip_dataset`` do inline (default OWA, last annulus extended to
``shape[0]``, phi bounds, section selection, goodmv rule) is copied below with its origin.
"""

import numpy as np
import pytest

pytest.importorskip("pyklip")

import pyklip.parallelized as pyklip_par
from pyklip import klip as pyklip_klip

from coron3_dask.kernels import klip, regions

# ----------------------------------------------------------------------------- annuli bounds


@pytest.mark.parametrize("spacing", ["constant", "log", "linear"])
@pytest.mark.parametrize(("annuli", "iwa", "owa"), [(1, 0.0, 40.0), (3, 5.0, 40.0), (5, 6.0, 57.3), (4, 0.0, 30.5)])
def test_annuli_bounds_equal_define_annuli_bounds(spacing, annuli, iwa, owa):
    ours = regions.annuli_bounds(annuli, iwa, owa, spacing)
    theirs = pyklip_klip.define_annuli_bounds(annuli, iwa, owa, spacing)
    assert len(ours) == len(theirs) == annuli
    np.testing.assert_allclose(np.array(ours, dtype=float), np.array(theirs, dtype=float), rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- region masks


def _pyklip_regions(shape, center, annuli, subsections, iwa, owa):
    """pyKLIP's regions for an image without NaNs.

    The OWA default, the extension of the last annulus and the phi bounds are copied from
    ``pyklip/parallelized.py`` ``klip_parallelized`` (pyklip 2.10.1, lines ~1265-1288; identical
    in ``klip_parallelized_lite`` ~940-974); the section selection from
    ``_klip_section_multifile`` (~395-402).  Polar coordinates and annuli bounds are pyKLIP's
    functions.
    """
    ny, nx = shape
    x, y = np.meshgrid(np.arange(nx * 1.0), np.arange(ny * 1.0))
    full_image = owa is None
    if full_image:
        owa = np.sqrt(np.max((x - center[0]) ** 2 + (y - center[1]) ** 2))
    rad_bounds = pyklip_klip.define_annuli_bounds(annuli, iwa, owa, "constant")
    if full_image:
        rad_bounds[annuli - 1] = (rad_bounds[annuli - 1][0], shape[0])
    dphi = 2 * np.pi / subsections
    phi_bounds = [[dphi * phi_i - np.pi, dphi * (phi_i + 1) - np.pi] for phi_i in range(subsections)]
    phi_bounds[-1][1] = np.pi
    r, phi = pyklip_klip.make_polar_coordinates(x, y, center)
    masks = np.array(
        [
            (r >= radstart) & (r < radend) & (phi >= phistart) & (phi < phiend)
            for radstart, radend in rad_bounds
            for phistart, phiend in phi_bounds
        ]
    )
    return rad_bounds, phi_bounds, masks


# (shape, centre (x, y)): off-integer centres, and an integer centre whose row holds the pixels
# at arctan2 == pi (pyKLIP's make_polar_coordinates maps them to phi = 0, inside a sector)
GEOMETRIES = [((80, 80), (39.3, 40.6)), ((57, 73), (36.2, 27.7)), ((80, 80), (40.0, 40.0))]


@pytest.mark.parametrize(("shape", "center"), GEOMETRIES)
@pytest.mark.parametrize("iwa", [0.0, 6.0])
@pytest.mark.parametrize("owa", [None, 25.0])
def test_region_masks_select_pyklip_pixels(shape, center, iwa, owa):
    mismatches = []
    for annuli in range(1, 6):
        for subsections in range(1, 5):
            rad_b, phi_b, theirs = _pyklip_regions(shape, center, annuli, subsections, iwa, owa)
            radial, azimuthal = regions.region_bounds(
                shape, center, annuli=annuli, subsections=subsections, iwa=iwa, owa=owa
            )
            np.testing.assert_allclose(np.array(radial, float), np.array(rad_b, float), rtol=1e-14, atol=0)
            np.testing.assert_allclose(np.array(azimuthal, float), np.array(phi_b, float), rtol=1e-14, atol=0)
            ours = regions.region_masks(shape, center, radial, azimuthal)
            assert ours.shape == (annuli * subsections, *shape) and ours.dtype == bool
            assert ours.sum(axis=0).max() <= 1, "regions must be disjoint"
            # region a * subsections + s has bounds (radial[a], azimuthal[s]) in both codes
            bad = int((ours != theirs).sum())
            if bad:
                mismatches.append((annuli, subsections, bad))
            if iwa == 0 and owa is None:
                # pyKLIP covers every pixel of these frames (phi is in [-pi, pi) after its shift)
                assert theirs.sum(axis=0).min() == 1
                if not (ours.sum(axis=0) == 1).all():
                    mismatches.append((annuli, subsections, "pixels not covered"))
    assert not mismatches, f"(annuli, subsections, differing pixels) vs pyKLIP: {mismatches}"


# ----------------------------------------------------------------------------- ADI selection


def test_movement_equals_estimate_movement():
    rng = np.random.default_rng(7)
    parangs = np.concatenate([rng.uniform(-180, 360, 50), [0.0, 5.0, 60.0, -60.0, 180.0, 359.0]])
    for radius in (0.0, 3.5, 10.0, 27.25, 60.0):
        for parang0 in (0.0, 12.5, -40.0):
            theirs = pyklip_klip.estimate_movement(radius, parang0, parangs)
            ours = regions.movement(radius, parangs - parang0)
            np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("minrot", [0.0, 5.0, 20.0])
@pytest.mark.parametrize("minmove", [0.5, 2.0, 5.0])
def test_moved_enough_equals_pyklip_goodmv(minrot, minmove):
    rng = np.random.default_rng(11)
    pa_imgs = np.concatenate([rng.uniform(-30, 30, 60), [0.0, 5.0, -5.0, 20.0, 60.0]])
    counts = []
    for avg_rad in (2.0, 8.0, 15.5, 40.0):
        for parang in (0.0, 3.0, -12.0):
            # copied from pyklip/parallelized.py _klip_section_multifile_perfile (~579-592),
            # spectrum=None, single wavelength, ADI
            moves = pyklip_klip.estimate_movement(avg_rad, parang, pa_imgs)
            goodmv = moves >= minmove
            if minrot > 0:
                goodmv = (goodmv) & (np.abs(pa_imgs - parang) >= minrot)
            ours = regions.moved_enough(avg_rad, pa_imgs - parang, min_movement=minmove, minrot=minrot)
            np.testing.assert_array_equal(ours, goodmv)
            counts.append(int(ours.sum()))
    assert 0 < sum(counts) < len(counts) * len(pa_imgs), "both outcomes must be exercised"


def _adi_sequence(center, n=6, shape=(40, 40)):
    """Already-centred ADI sequence: 3 frames at PA 0 and 3 at PA 30, one wavelength."""
    rng = np.random.default_rng(3)
    yy, xx = np.indices(shape, dtype=float)
    r = np.hypot(xx - center[0], yy - center[1])
    psf = 100 * np.exp(-(r**2) / (2 * 4.0**2)) + 10 / (1 + r / 3) ** 2
    speckles = rng.normal(size=(4, *shape))
    imgs = np.array(
        [psf + np.tensordot(rng.normal(size=4), speckles, axes=1) + 0.3 * rng.normal(size=shape) for _ in range(n)]
    )
    return imgs.astype(np.float32), np.array([0.0, 0.0, 0.0, 30.0, 30.0, 30.0])


@pytest.mark.parametrize(("center", "subsections"), [((19.5, 20.3), 2), ((19.5, 20.3), 3), ((20.0, 20.0), 2)])
def test_adi_reduction_equals_klip_parallelized(monkeypatch, center, subsections):
    """Our kernels assembled per region reproduce pyKLIP's ADI reduction frame by frame.

    ``klip_parallelized`` returns the PSF-subtracted frames in their own orientation (derotation
    is done afterwards by ``klip_dataset``), shape ``(b, N, y, x)``, NaN outside the regions.
    It runs in-process with pyKLIP's module ``debug`` flag and ``restored_aligned`` (the frames
    are already centred, so no interpolation); ``maxnumbasis`` above the number of frames turns
    off the correlation down-selection.
    """
    imgs, pas = _adi_sequence(center)
    n, ny, nx = imgs.shape
    iwa, annuli, minmove, numbasis = 2.0, 2, 2.0, (1, 2, 3, 5)
    monkeypatch.setattr(pyklip_par, "debug", True)
    theirs, _, _ = pyklip_par.klip_parallelized(
        imgs,
        np.tile(center, (n, 1)),
        pas,
        np.ones(n),
        np.arange(n),
        iwa,
        OWA=None,
        mode="ADI",
        annuli=annuli,
        subsections=subsections,
        movement=minmove,
        numbasis=list(numbasis),
        aligned_center=list(center),
        numthreads=1,
        maxnumbasis=100,
        restored_aligned=imgs[None],
        verbose=False,
    )
    assert theirs.shape == (len(numbasis), n, ny, nx)

    radial, azimuthal = regions.region_bounds((ny, nx), center, annuli=annuli, subsections=subsections, iwa=iwa)
    masks = regions.region_masks((ny, nx), center, radial, azimuthal)
    for i in range(n):
        ours = np.full((len(numbasis), ny, nx), np.nan, dtype=np.float32)
        for a, (r0, r1) in enumerate(radial):
            good = regions.moved_enough((r0 + r1) / 2.0, pas - pas[i], min_movement=minmove)
            assert good.sum() == 3 and not good[i]
            for s in range(len(azimuthal)):
                m = masks[a * len(azimuthal) + s]
                ours[:, m] = klip.klip_modes(imgs[i][m], imgs[good][:, m], numbasis=numbasis)[0]
        np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(theirs[:, i]), err_msg=f"frame {i} coverage")
        finite = np.isfinite(ours)
        rel = np.abs(ours[finite] - theirs[:, i][finite]).max() / imgs[i].std()
        assert rel < 1e-5, (i, rel)
