"""The per-user gWCS cache: keyed by content, private, optional, never a reason to fail."""

import os
import pickle

import numpy as np
from astropy.modeling import models

from coron3_dask.files import gwcs_cache


def _model():
    return models.Shift(3.5) & models.Scale(2.0)


def test_a_stored_gwcs_comes_back_for_the_same_bytes_only(tmp_path, monkeypatch):
    monkeypatch.setenv("CORON3_DASK_CACHE", str(tmp_path))
    raw = b"#ASDF 1.0.0 some tree"
    assert gwcs_cache.load(raw) is None
    gwcs_cache.store(raw, _model())
    back = gwcs_cache.load(raw)
    np.testing.assert_allclose(back(1.0, 2.0), _model()(1.0, 2.0))
    assert gwcs_cache.load(raw + b" ") is None, "other bytes, other entry"
    assert (tmp_path / "gwcs").stat().st_mode & 0o777 == 0o700
    assert not [p for p in (tmp_path / "gwcs").iterdir() if p.name.startswith(".")], "no temporary file left"


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("CORON3_DASK_CACHE", "off")
    assert gwcs_cache.cache_dir() is None
    gwcs_cache.store(b"x", _model())
    assert gwcs_cache.load(b"x") is None


def test_a_shared_or_corrupt_cache_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("CORON3_DASK_CACHE", str(tmp_path))
    gwcs_cache.store(b"x", _model())
    os.chmod(tmp_path / "gwcs", 0o777)  # someone else could have planted a pickle
    assert gwcs_cache.load(b"x") is None
    os.chmod(tmp_path / "gwcs", 0o700)
    (entry,) = (tmp_path / "gwcs").iterdir()
    entry.write_bytes(pickle.dumps(_model())[:10])
    assert gwcs_cache.load(b"x") is None
    monkeypatch.setenv("CORON3_DASK_CACHE", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a directory")
    gwcs_cache.store(b"y", _model())  # cannot create the directory: logged, not raised
