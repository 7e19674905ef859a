"""Shared fixtures (a small synthetic street, rendered, not downloaded, and a map of it) and the helpers every test
file uses: the ``vpr`` command, the one-line-error check and float comparisons bounded by what the numerics allow.

``VPR_TEST_THREADS`` (default 2) sets the thread count of the tests and of every process they start (torch, faiss
and onnxruntime read ``OMP_NUM_THREADS`` at start-up), so the suite can be proven at 1 and 2 threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

THREADS = int(os.environ.get("VPR_TEST_THREADS", "2"))
os.environ["OMP_NUM_THREADS"] = str(THREADS)  # before torch is imported, and inherited by subprocesses
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)

#: The console script of this environment (``python -m vpr_core.cli`` where it is not installed as a script).
_SCRIPT = Path(sys.executable).with_name("vpr")
VPR = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "vpr_core.cli"]

# ---------------------------------------------------------------------------------------------------------------
# Float comparisons. Two evaluations of the same fp32 arithmetic on different kernels (another CPU's SIMD width,
# another thread count, onnxruntime against torch) sum in different orders. A sum of n terms then differs by at
# most n * eps * sum|terms| (Higham's gamma_n bound): ``reduction_atol``. Through a whole network such bounds are
# useless, so network outputs are compared as what the user relies on: unit descriptors pointing the same way
# (``assert_vectors_close``) and the same ranking.
# ---------------------------------------------------------------------------------------------------------------
EPS32 = float(np.finfo(np.float32).eps)
#: Relative L2 error allowed between two fp32 evaluations of a descriptor network (cosine >= 0.99995). Measured
#: onnxruntime vs eager on this project's street: <= 2.6e-4 for VLAD descriptors (intra-normalisation of a
#: cluster with little mass amplifies rounding), <= 4e-5 for grid cells.
NET_RTOL = 1e-2
#: Relative L2 error between two float16-stored copies of the same unit vector: each element rounds to within
#: 2**-11 of itself, so two copies differ by at most 2 * 2**-11 in norm.
FP16_RTOL = 2 * 2.0**-11


def reduction_atol(n_terms: int, magnitude: float = 1.0) -> float:
    """Worst-case difference of two fp32 sums of ``n_terms`` terms whose absolute values add up to ``magnitude``
    each (the same sum in another order, on another kernel)."""
    return n_terms * EPS32 * magnitude


def assert_vectors_close(a, b, rtol: float, axis: int = -1) -> None:
    """Each vector of ``a`` along ``axis`` within ``rtol`` (relative L2) of the one of ``b``; says which is worst."""
    a, b = (np.asarray(x.detach() if isinstance(x, torch.Tensor) else x, dtype=np.float64) for x in (a, b))
    assert a.shape == b.shape, (a.shape, b.shape)
    err = np.linalg.norm(a - b, axis=axis) / np.maximum(np.linalg.norm(b, axis=axis), 1e-30)
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    assert err.size == 0 or float(err.max()) <= rtol, f"relative error {float(err.max()):.3g} > {rtol:g} at {worst}"


# ---------------------------------------------------------------------------------------------------------------
# The command line.
# ---------------------------------------------------------------------------------------------------------------
def vpr(*args, ok: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """``vpr ARGS`` (paths and numbers may be passed as they are); with ``ok`` it must succeed."""
    r = subprocess.run([*VPR, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)
    if ok:
        assert r.returncode == 0, r.stderr[-4000:]
    return r


def official_checkpoint(model, path, seed: int = 0, wrap: str | None = None, **fixed) -> dict:
    """Random but well-conditioned weights under a model's (official) key names, saved as the releases are: a plain
    state_dict, or nested under ``wrap`` as Lightning writes it; ``fixed`` sets named tensors (e.g. GeM's p)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(v.shape, generator=g)
        elif v.is_floating_point():
            sd[k] = v + 0.02 * torch.randn(v.shape, generator=g)
        else:
            sd[k] = v.clone()
    sd.update(fixed)
    torch.save({wrap: sd} if wrap else sd, path)
    return sd


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """A user's mistake: exit ``code``, no traceback, exactly one ``error:`` line on stderr naming every needle."""
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, r.stderr
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


# ---------------------------------------------------------------------------------------------------------------
# Fixtures.
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def street(tmp_path_factory) -> Path:
    """``database/`` (24 frames, 2 m apart) and ``queries/`` (10 frames, offset, darker, occluded)."""
    from vpr_core.demo import generate

    root = tmp_path_factory.mktemp("street")
    generate(root, seed=3, n_map=24, n_query=10)
    return root


@pytest.fixture(scope="session")
def street_map(street, tmp_path_factory) -> Path:
    from vpr_core.io.geoset import load_geoset
    from vpr_core.map.build import build_and_save

    out = tmp_path_factory.mktemp("maps") / "street.vprmap"
    build_and_save(
        load_geoset(street / "database"), out, device="cpu", source=str(street / "database")
    )  # as `vpr map build` records it
    return out
