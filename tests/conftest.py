"""Shared fixtures: float64 JAX and small NumPy-built network setups.

The setups are built with NumPy only (``tests/reference.py``): random positions, reference
gains and local-scattering correlation, reference pilots and DCC.  All Monte-Carlo tests use
the same few shapes so that the JAX kernels compile only a handful of times.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

# The suite is dominated by XLA compile time (small shapes, many distinct programs): LLVM's
# optimisation level 0 compiles about 1.5x faster and the tiny test programs barely run slower.
# Numbers are unaffected (no fast-math either way). Appended, so a user's XLA_FLAGS still apply.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
# One persistent compilation cache per test session: tests that build the same jitted trainer
# or kernel (a run, its interrupted twin and its resumption; the CLI and the library) compile
# it once.  A fresh folder each session, so nothing stale is ever reused.  Under pytest-xdist
# (scripts/test.sh runs two workers) the controller creates the folder and its workers, which
# inherit the environment, share it; the process that created it removes it at exit.
_CACHE_ENV = "CFMIMO_TEST_JAX_CACHE"
_CACHE_DIR = os.environ.get(_CACHE_ENV)
if not _CACHE_DIR or not os.path.isdir(_CACHE_DIR):
    _CACHE_DIR = tempfile.mkdtemp(prefix="cfmimo-jax-cache-")
    os.environ[_CACHE_ENV] = _CACHE_DIR
    atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reference as ref  # noqa: E402

# Shared sizes (few distinct shapes -> few JAX compilations).
N_REALIZATIONS = 32
TAU_C = 50
RHO_MAX = 200.0


@dataclass
class Scenario:
    name: str
    L: int
    K: int
    N: int
    tau_p: int
    tau_c: int
    ap_pos: np.ndarray
    ue_pos: np.ndarray
    gain_db: np.ndarray
    gain: np.ndarray
    R: np.ndarray
    pilot: np.ndarray
    D: np.ndarray
    p: np.ndarray
    rho: np.ndarray
    B: np.ndarray
    C: np.ndarray


def _build(name, seed, L, K, N, tau_p, asd_az, asd_el, side, p, custom_d=False):
    rng = np.random.default_rng(seed)
    s = ref.make_setup(rng, L, K, N, tau_p, asd_az, asd_el, side=side)
    D = s["D"]
    if custom_d:
        # Arbitrary serving sets (not from DCC): UE 0 only by its master AP, the others by
        # their master plus random APs.
        D = np.zeros((L, K), dtype=bool)
        for k in range(K):
            D[s["master"][k], k] = True
            if k > 0:
                D[:, k] |= rng.uniform(size=L) < 0.35
    p = ref._powers(p, K)
    B, C = ref.estimation_statistics(s["R"], s["pilot"], p, tau_p)
    rho = ref.fractional_downlink(s["gain"], D, RHO_MAX)
    return Scenario(
        name=name,
        L=L,
        K=K,
        N=N,
        tau_p=tau_p,
        tau_c=TAU_C,
        ap_pos=s["ap_pos"],
        ue_pos=s["ue_pos"],
        gain_db=s["gain_db"],
        gain=s["gain"],
        R=s["R"],
        pilot=s["pilot"].astype(np.int32),
        D=D,
        p=p,
        rho=rho,
        B=B,
        C=C,
    )


def _make(name):
    deg = np.pi / 180.0
    if name == "corr_reuse":
        # Local scattering (15 deg azimuth, 10 deg elevation ASD), K > tau_p, DCC, unequal p.
        sc = _build(name, 11, 6, 5, 3, 3, 15 * deg, 10 * deg, 400.0, [100, 50, 200, 80, 120])
        assert sc.K > sc.tau_p
    elif name == "uncorr_reuse":
        # Uncorrelated fading R = gain * I, K > tau_p, DCC, equal p.
        sc = _build(name, 14, 6, 5, 3, 3, None, None, 500.0, 100.0)
        assert sc.K > sc.tau_p
    elif name == "corr_custom_d":
        # Local scattering with zero elevation ASD, K <= tau_p, hand-made serving sets.
        sc = _build(name, 13, 6, 5, 2, 5, 20 * deg, 0.0, 400.0, [100, 20, 150, 100, 60], True)
        assert sc.K <= sc.tau_p
    elif name == "single_antenna":
        # N = 1, strong pilot reuse (K = 5 UEs on tau_p = 2 pilots).
        sc = _build(name, 15, 6, 5, 1, 2, None, None, 400.0, [100, 100, 60, 100, 150])
        assert sc.K > sc.tau_p
    else:
        raise KeyError(name)
    # Every UE is served; some are served by few APs.
    assert sc.D.any(axis=0).all()
    assert sc.D.sum(axis=0).min() <= 2
    return sc


SCENARIOS = ("corr_reuse", "uncorr_reuse", "corr_custom_d", "single_antenna")
_CACHE: dict[str, Scenario] = {}


def get_scenario(name) -> Scenario:
    if name not in _CACHE:
        _CACHE[name] = _make(name)
    return _CACHE[name]


@pytest.fixture(scope="session", params=SCENARIOS)
def scenario(request) -> Scenario:
    return get_scenario(request.param)


@pytest.fixture(scope="session")
def corr_reuse() -> Scenario:
    return get_scenario("corr_reuse")
