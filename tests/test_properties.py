"""Differentiability, transformation invariance, determinism, dtypes and input validation.

Runs in float64 (``conftest.py``) except where a test switches x64 off explicitly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfmimo_jax import estimation, pilots, power, se
from cfmimo_jax.correlation import local_scattering
from cfmimo_jax.setup import generate_setup

L, K, N, TAU_P, TAU_C = 6, 4, 2, 2, 40
ASD = float(np.deg2rad(15.0))
N_MC = 16


@pytest.fixture(scope="module")
def setup():
    return generate_setup(jax.random.key(3), L, K, N, TAU_P, ASD, ASD, side=300.0)


def _fd(f, x, eps):
    """Central finite differences of scalar ``f`` at ``x`` (NumPy float64). ``f`` is jitted
    once: the ``2 x.size`` evaluations then run compiled instead of op by op."""
    x = np.asarray(x, np.float64)
    f = jax.jit(f)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        g[idx] = (float(f(x + e)) - float(f(x - e))) / (2 * eps)
    return g


# ------------------------------------------------------------------ gradients vs finite differences


def test_grad_closed_form_se_wrt_powers(setup):
    p0 = np.array([80.0, 120.0, 60.0, 150.0])
    rho = power.fractional_downlink(setup.gain, setup.D, 200.0)

    def ul(p):
        B, _ = estimation.estimation_statistics(setup.R, setup.pilot, p, TAU_P)
        return jnp.sum(
            se.uplink_se_mr_closed_form(setup.R, B, setup.pilot, setup.D, p, TAU_P, TAU_C)
        )

    served = np.asarray(setup.D)

    def dl(x):  # the transmit powers of the served pairs
        r = jnp.zeros((L, K), x.dtype).at[served].set(x)
        B, _ = estimation.estimation_statistics(setup.R, setup.pilot, p0, TAU_P)
        return jnp.sum(
            se.downlink_se_mr_closed_form(setup.R, B, setup.pilot, setup.D, r, TAU_P, TAU_C, p=p0)
        )

    np.testing.assert_allclose(jax.grad(ul)(jnp.asarray(p0)), _fd(ul, p0, 1e-3), rtol=1e-5)
    x0 = np.asarray(rho)[served]
    np.testing.assert_allclose(jax.grad(dl)(jnp.asarray(x0)), _fd(dl, x0, 1e-4), rtol=1e-5)


def test_grad_se_wrt_ap_positions_through_pathloss_correlation_estimation(setup):
    """d(sum SE)/d(AP positions) through distance, angles, path loss, R, B (float64)."""
    ue_pos = setup.ue_pos
    ap0 = np.asarray(setup.ap_pos)

    def sum_se(ap_pos):
        s = generate_setup(
            jax.random.key(3), L, K, N, TAU_P, ASD, ASD, ap_pos=ap_pos, ue_pos=ue_pos, side=300.0
        )
        # pilots/DCC are piecewise constant; hold them fixed at the reference setup
        B, _ = estimation.estimation_statistics(s.R, setup.pilot, 100.0, TAU_P)
        return jnp.sum(
            se.uplink_se_mr_closed_form(
                s.R, B, setup.pilot, setup.D, 100.0, TAU_P, TAU_C, lsfd=True
            )
        )

    g = np.asarray(jax.grad(sum_se)(jnp.asarray(ap0)))
    fd = _fd(sum_se, ap0, 1e-3)
    assert np.all(np.isfinite(g)) and np.max(np.abs(g)) > 0
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-7 * np.max(np.abs(fd)))


def test_grad_monte_carlo_se_wrt_powers(setup):
    """Monte-Carlo SE (common random numbers) is differentiable in p: grad == FD."""
    key = jax.random.key(11)
    p0 = np.array([90.0, 110.0, 70.0, 130.0])

    def f(p):
        out = se.uplink_se(key, setup.R, setup.pilot, setup.D, p, TAU_P, TAU_C, N_MC)
        return out["mmse"].sum() + out["lp_mmse_lsfd"].sum() + out["p_rzf"].sum()

    g = np.asarray(jax.grad(f)(jnp.asarray(p0)))
    np.testing.assert_allclose(g, _fd(f, p0, 1e-3), rtol=1e-4, atol=1e-9)


def test_local_scattering_grad_wrt_angles_and_asd():
    def f(x):
        R = local_scattering(4, x[0], x[1], x[2], x[3])
        return jnp.sum(jnp.abs(R[0]) ** 2 + jnp.real(R[0]) * jnp.imag(R[1]))

    x0 = np.array([0.4, 0.2, 0.25, 0.1])
    np.testing.assert_allclose(jax.grad(f)(jnp.asarray(x0)), _fd(f, x0, 1e-5), rtol=1e-6)


# ------------------------------------------------------------------ transformations and determinism


def test_vmap_over_setups_equals_loop():
    keys = jax.random.split(jax.random.key(5), 3)
    gen = lambda k: generate_setup(k, L, K, N, TAU_P, ASD, ASD, side=300.0)
    batched = jax.vmap(gen)(keys)
    for i, k in enumerate(keys):
        one = gen(k)
        for name in ("R", "gain_db", "pilot", "D", "ap_pos"):
            np.testing.assert_allclose(getattr(batched, name)[i], getattr(one, name), rtol=1e-12)

    def ul(s, k):
        return se.uplink_se(k, s.R, s.pilot, s.D, 100.0, TAU_P, TAU_C, N_MC)["mmse"]

    out = jax.vmap(ul)(batched, keys)
    for i, k in enumerate(keys):
        one = jax.tree.map(lambda a, i=i: a[i], batched)
        np.testing.assert_allclose(out[i], ul(one, k), rtol=1e-9)


def test_jit_equals_eager_and_same_key_same_numbers(setup):
    key = jax.random.key(7)
    rho = power.fractional_downlink(setup.gain, setup.D, 200.0)
    args = (setup.R, setup.pilot, setup.D, 100.0, rho)
    a = se.all_se(key, *args, TAU_P, TAU_C, N_MC)
    b = se.all_se(key, *args, TAU_P, TAU_C, N_MC)
    jitted = jax.jit(se.all_se, static_argnums=(6, 7, 8))(key, *args, TAU_P, TAU_C, N_MC)
    with jax.disable_jit():
        H = estimation.sample_channels(key, setup.R, 3)
    H_jit = jax.jit(estimation.sample_channels, static_argnums=2)(key, setup.R, 3)
    np.testing.assert_allclose(H, H_jit, rtol=1e-12)
    for d in ("uplink", "downlink"):
        for k in a[d]:
            np.testing.assert_array_equal(a[d][k], b[d][k])
            np.testing.assert_allclose(a[d][k], jitted[d][k], rtol=1e-10)
    other = se.all_se(jax.random.key(8), *args, TAU_P, TAU_C, N_MC)
    assert not np.allclose(a["uplink"]["mmse"], other["uplink"]["mmse"])


def test_chunk_size_does_not_change_results(setup):
    key = jax.random.key(9)
    a = se.uplink_se(key, setup.R, setup.pilot, setup.D, 100.0, TAU_P, TAU_C, N_MC, chunk=16)
    b = se.uplink_se(key, setup.R, setup.pilot, setup.D, 100.0, TAU_P, TAU_C, N_MC, chunk=5)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-10)


@settings(max_examples=15, deadline=None)
@given(perm=st.permutations(range(L)))
def test_dcc_and_pilots_equivariant_to_ap_permutation(perm):
    """Relabelling APs permutes D's rows and leaves pilots unchanged (Alg. 4.1 / DCC)."""
    rng = np.random.default_rng(0)
    gain_db = rng.normal(0, 20, (L, K + 3))
    perm = np.asarray(perm)
    p1 = pilots.assign_pilots(gain_db, TAU_P)
    p2 = pilots.assign_pilots(gain_db[perm], TAU_P)
    np.testing.assert_array_equal(p1, p2)
    D1 = pilots.dcc(gain_db, p1, TAU_P)
    np.testing.assert_array_equal(np.asarray(D1)[perm], pilots.dcc(gain_db[perm], p1, TAU_P))


def test_float32_by_default(setup):
    """Default dtypes are float32/complex64, and the f32 kernels track float64 closely."""
    from cfmimo_jax.processing import centralized_combiners, distributed_combiners

    B64, C64 = estimation.estimation_statistics(setup.R, setup.pilot, 100.0, TAU_P)
    H = estimation.sample_channels(jax.random.key(1), setup.R, 4)
    Hh = estimation.mmse_estimates(jax.random.key(2), H, setup.R, setup.pilot, 100.0, TAU_P)
    V64 = np.asarray(centralized_combiners(Hh, C64, setup.D, 100.0, "mmse"))
    W64 = np.asarray(distributed_combiners(Hh, C64, setup.D, 100.0, "l_mmse"))
    cf64 = np.asarray(
        se.uplink_se_mr_closed_form(setup.R, B64, setup.pilot, setup.D, 100.0, TAU_P, TAU_C)
    )
    c64 = lambda a: np.asarray(a).astype(np.complex64)
    with jax.enable_x64(False):
        # dtypes by abstract evaluation (traced, not compiled: the values are checked below)
        s = jax.eval_shape(
            lambda k: generate_setup(k, L, K, N, TAU_P, ASD, ASD, side=300.0), jax.random.key(0)
        )
        assert s.R.dtype == jnp.complex64 and s.gain_db.dtype == jnp.float32
        out = jax.eval_shape(
            lambda k, R: se.uplink_se(k, R, setup.pilot, setup.D, 100.0, TAU_P, TAU_C, N_MC),
            jax.random.key(1),
            jax.ShapeDtypeStruct(s.R.shape, s.R.dtype),
        )
        assert all(v.dtype == jnp.float32 for v in out.values()), out
        R32 = c64(setup.R)
        B32, C32 = estimation.estimation_statistics(R32, setup.pilot, 100.0, TAU_P)
        assert B32.dtype == jnp.complex64
        V32 = np.asarray(centralized_combiners(c64(Hh), C32, setup.D, 100.0, "mmse"))
        W32 = np.asarray(distributed_combiners(c64(Hh), C32, setup.D, 100.0, "l_mmse"))
        cf32 = np.asarray(
            se.uplink_se_mr_closed_form(R32, B32, setup.pilot, setup.D, 100.0, TAU_P, TAU_C)
        )
    assert np.max(np.abs(V32 - V64)) < 1e-3 * np.max(np.abs(V64))
    assert np.max(np.abs(W32 - W64)) < 1e-3 * np.max(np.abs(W64))
    np.testing.assert_allclose(cf32, cf64, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------ bad input


def _bad_se_calls(s):
    R, pil, D = np.asarray(s.R), np.asarray(s.pilot), np.asarray(s.D)
    nonherm = R.copy()
    nonherm[0, 0, 0, 1] += 1.0
    nonpsd = R.copy()
    nonpsd[0, 0] = -np.eye(N)
    up = lambda **kw: se.uplink_se(
        jax.random.key(0),
        kw.get("R", R),
        kw.get("pilot", pil),
        kw.get("D", D),
        kw.get("p", 100.0),
        kw.get("tau_p", TAU_P),
        kw.get("tau_c", TAU_C),
        kw.get("n", N_MC),
    )
    return [
        ("tau_p", lambda: up(tau_p=0)),
        ("tau_p", lambda: up(tau_p=-1)),
        ("tau_p", lambda: up(tau_p=TAU_C + 1)),
        ("tau_c", lambda: up(tau_c=0)),
        ("n_realizations", lambda: up(n=0)),
        ("R", lambda: up(R=nonherm)),
        ("R", lambda: up(R=nonpsd)),
        ("R", lambda: up(R=R[..., :1])),
        ("p", lambda: up(p=np.array([1.0, np.nan, 1.0, 1.0]))),
        ("p", lambda: up(p=-1.0)),
        ("p", lambda: up(p=np.ones(K + 1))),
        ("pilot", lambda: up(pilot=np.full(K, TAU_P))),
        ("pilot", lambda: up(pilot=pil[:-1])),
        ("D", lambda: up(D=D[:-1])),
        ("D", lambda: up(D=np.zeros_like(D))),
        (
            "rho",
            lambda: se.downlink_se(
                jax.random.key(0), R, pil, D, 100.0, -np.ones((L, K)), TAU_P, TAU_C, 4
            ),
        ),
        ("L", lambda: generate_setup(jax.random.key(0), 0, K, N, TAU_P)),
        ("K", lambda: generate_setup(jax.random.key(0), L, -2, N, TAU_P)),
        ("N", lambda: generate_setup(jax.random.key(0), L, K, 1.5, TAU_P)),
        ("asd_azimuth", lambda: generate_setup(jax.random.key(0), L, K, N, TAU_P, -0.1, 0.1)),
        ("asd_elevation", lambda: generate_setup(jax.random.key(0), L, K, N, TAU_P, 0.1, np.nan)),
        (
            "ap_pos",
            lambda: generate_setup(jax.random.key(0), L, K, N, TAU_P, ap_pos=np.zeros((L, 3))),
        ),
        ("asd_azimuth", lambda: local_scattering(4, 0.0, 0.0, -1.0, 0.0)),
        ("n_antennas", lambda: local_scattering(0, 0.0, 0.0, 0.1, 0.0)),
        ("p", lambda: estimation.estimation_statistics(R, pil, np.nan, TAU_P)),
        ("gain", lambda: power.fractional_downlink(-np.ones((L, K)), D, 200.0)),
        ("R", lambda: estimation.sample_channels(jax.random.key(0), nonherm, 2)),
    ]


def test_bad_input_raises_value_error_naming_parameter(setup):
    for name, call in _bad_se_calls(setup):
        with pytest.raises(ValueError, match=name):
            call()
