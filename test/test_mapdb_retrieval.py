"""Map file safety (no pickle, atomic, validated) and faiss retrieval exactness."""

import pickle

import numpy as np
import pytest

from vpr_core.errors import MapError
from vpr_core.localize.retrieval import Index, brute_force_search
from vpr_core.map.format import load_map, save_map


def test_map_round_trip(street_map, tmp_path):
    m = load_map(street_map)
    assert m.model == "xfeat-vlad" and len(m) == 24 and m.descriptors.shape == (24, 2048)
    assert m.model_state["vlad.centers"].shape == (32, 64)
    out = tmp_path / "copy.vprmap"
    save_map(m, out)
    m2 = load_map(out)
    assert np.array_equal(m2.descriptors, m.descriptors) and m2.names == m.names and m2.fingerprint == m.fingerprint
    assert not list(tmp_path.glob(".*.tmp")), "temp file left behind"


def test_truncated_map(street_map, tmp_path):
    data = street_map.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 10):
        p = tmp_path / f"cut{cut}.vprmap"
        p.write_bytes(data[:cut])
        with pytest.raises(MapError, match=str(p.name)):
            load_map(p)


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    e = Exploit()
    e.marker = marker
    p = tmp_path / "evil.vprmap"
    p.write_bytes(pickle.dumps({"descriptors": e}))
    with pytest.raises(MapError, match="not a vpr map"):
        load_map(p)
    assert not marker.exists()


def test_version_and_foreign_file(street_map, tmp_path):
    from safetensors.numpy import save_file

    p = tmp_path / "foreign.safetensors"
    save_file({"x": np.zeros(3, np.float32)}, str(p))
    with pytest.raises(MapError, match="not a vpr map"):
        load_map(p)
    m = load_map(street_map)
    import vpr_core.map.format as mapdb

    old = mapdb.FORMAT_VERSION
    try:
        mapdb.FORMAT_VERSION = 99
        save_map(m, tmp_path / "v99.vprmap")
    finally:
        mapdb.FORMAT_VERSION = old
    with pytest.raises(MapError, match="version 99 .* rebuild"):
        load_map(tmp_path / "v99.vprmap")
    with pytest.raises(MapError, match="map not found"):
        load_map(tmp_path / "missing.vprmap")


def test_failed_save_leaves_no_file(street_map, tmp_path):
    m = load_map(street_map)
    m.lat = m.lat[:3]  # inconsistent: save must fail before anything appears
    with pytest.raises(ValueError):
        save_map(m, tmp_path / "bad.vprmap")
    assert list(tmp_path.iterdir()) == []


def test_faiss_matches_brute_force():
    rng = np.random.default_rng(0)
    db = rng.normal(size=(2000, 64)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = db[:50] + 0.05 * rng.normal(size=(50, 64)).astype(np.float32)
    s1, i1 = Index(db).search(q, 10)
    s2, i2 = brute_force_search(db, q, 10)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2, atol=1e-5)
    assert (i1[:, 0] == np.arange(50)).all()
    s3, i3 = Index(db, kind="ivf", nprobe=64).search(q, 1)
    assert (i3[:, 0] == np.arange(50)).mean() > 0.9
    s4, i4 = Index(db, kind="ivfpq", pq_m=16).search(q, 10)
    assert (i4 == np.arange(50)[:, None]).any(axis=1).mean() > 0.9


def test_outputs_get_normal_permissions(tmp_path):
    """Temp-then-rename must not leave mkstemp's 0600: a node running as another user has to read the map."""
    import os

    from vpr_core.io.files import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "x.bin", lambda t: t.write_bytes(b"1"))
    finally:
        os.umask(old)
    assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o644
