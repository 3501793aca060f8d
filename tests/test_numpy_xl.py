"""The NumPy XL-MIMO benchmark reference (bench/numpy_xl.py) against the JAX path and by hand.

- SE of [XL-FUZZY] eq. (8): ``numpy_xl.uplink_se_log_det`` equals
  ``cfmimo_jax.se.uplink_se_log_det`` on identical channel realizations (float64), for MR and
  L-MMSE, both estimators, on a system where JAX takes its Gram path and one where it takes the
  direct path; and for single-antenna UEs it equals the scalar use-and-then-forget SINR written
  here with explicit loops over realizations and BSs.
- Channels: Monte-Carlo second moments of ``numpy_xl.sample_channels`` against the closed form
  ``E[G G^H] = beta N_s R_r``, ``E[G^T G*] = beta N_r R_s`` (``nearfield.correlation_matrices``),
  no correlation between BS-UE pairs.
- Large-scale fading: a hand-computed drop (positions replayed from the same seed, wrap-around
  distance by brute force over the nine images, book path loss and noise), the grid layout, and
  the shadowing covariance ``std^2 2^(-delta / d_corr)`` over many BSs.
- The error raised for each bad input, naming the parameter.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import numpy_xl as nx
from cfmimo_jax import nearfield as nf
from cfmimo_jax import se

N_REAL = 6


@functools.cache
def system(bs_array, ue_array, ue_spacing, K, seed):
    """``(model, G[n, M=2, K, N_r, N_s], p[K])``: JAX-drawn float64 realizations, fixed beta."""
    model = nf.channel_model(bs_array, ue_array, 1.0 / 3.0, ue_spacing)
    rng = np.random.default_rng(seed)
    beta = 10.0 ** rng.uniform(-1.5, 0.5, size=(2, K))
    G = np.asarray(nf.sample_channels(jax.random.key(seed), model, jnp.asarray(beta), N_REAL))
    p = rng.uniform(0.5, 20.0, size=K)
    return model, G, p


# the direct path (K N_s = 12 > N_r = 9) and the Gram path (K N_s = 6 < N_r = 16)
SYSTEMS = {
    "direct": ((3, 3), (2, 2), 0.5, 3, 1),
    "gram": ((4, 4), (1, 2), 0.5, 3, 2),
}


@pytest.mark.parametrize(
    "name, combiner, estimator",
    list(itertools.product(SYSTEMS, nx.COMBINERS, nx.ESTIMATORS)),
)
def test_se_equals_jax_on_identical_channels(name, combiner, estimator):
    _, G, p = system(*SYSTEMS[name])
    got = nx.uplink_se_log_det(G, p, combiner, estimator=estimator)
    want = np.asarray(
        se.uplink_se_log_det(jnp.asarray(G), jnp.asarray(p), combiner, estimator=estimator)
    )
    assert got.shape == (G.shape[2],)
    assert np.all(want > 0)
    np.testing.assert_allclose(got, want, rtol=1e-9)


def scalar_se(G, p, combiner, estimator):
    """Single-antenna UEs (``N_s = 1``): ``log2(1 + p_k |E[v_k^H g_k]|^2 / (sum_i p_i
    E|v_k^H g_i|^2 - p_k |E[v_k^H g_k]|^2 + E||v_k||^2))`` with ``v``, ``g`` stacked over BSs;
    ``independent``: cross-BS terms of ``E|sum_m a_m|^2`` as products of means. Loops."""
    n, M, K, Nr, _ = G.shape
    g = G[..., 0]  # [n, M, K, N_r]
    v = np.empty_like(g)
    for j in range(n):
        for m in range(M):
            if combiner == "mr":
                v[j, m] = g[j, m]
                continue
            Phi = np.eye(Nr, dtype=complex)
            for i in range(K):
                Phi += p[i] * np.outer(g[j, m, i], g[j, m, i].conj())
            for k in range(K):
                v[j, m, k] = np.linalg.solve(Phi, g[j, m, k])
    out = np.empty(K)
    for k in range(K):
        a = np.array(
            [
                [[np.vdot(v[j, m, k], g[j, m, i]) for i in range(K)] for m in range(M)]
                for j in range(n)
            ]
        )  # [n, M, K]: v_mk^H g_mi
        signal = abs(a[:, :, k].sum(axis=1).mean()) ** 2
        interf = 0.0
        for i in range(K):
            if estimator == "sample":
                second = np.mean(abs(a[:, :, i].sum(axis=1)) ** 2)
            else:
                mean = a[:, :, i].mean(axis=0)
                second = sum(np.mean(abs(a[:, m, i]) ** 2) for m in range(M))
                second += sum(
                    mean[m] * mean[mp].conj() for m in range(M) for mp in range(M) if m != mp
                ).real
            interf += p[i] * second
        noise = np.mean(np.sum(abs(v[:, :, k]) ** 2, axis=(1, 2)))
        out[k] = np.log2(1.0 + p[k] * signal / (interf - p[k] * signal + noise))
    return out


@pytest.mark.parametrize(
    "combiner, estimator", list(itertools.product(nx.COMBINERS, nx.ESTIMATORS))
)
def test_se_single_antenna_by_hand(combiner, estimator):
    rng = np.random.default_rng(4)
    Br, Bs = nx.plane_wave_bases((2, 3), (1, 1), 1.0 / 3.0)
    beta = 10.0 ** rng.uniform(-1.0, 0.5, size=(3, 3))
    G = nx.sample_channels(rng, Br, Bs, beta, 5)
    p = np.array([3.0, 0.7, 9.0])
    got = nx.uplink_se_log_det(G, p, combiner, estimator=estimator)
    np.testing.assert_allclose(got, scalar_se(G, p, combiner, estimator), rtol=1e-10)


def test_se_complex64_close_to_complex128():
    _, G, p = system(*SYSTEMS["gram"])
    for combiner in nx.COMBINERS:
        hi = nx.uplink_se_log_det(G, p, combiner)
        lo = nx.uplink_se_log_det(G.astype(np.complex64), p, combiner)
        np.testing.assert_allclose(lo, hi, rtol=1e-4)


def test_zero_power_ue_has_zero_se():
    _, G, p = system(*SYSTEMS["gram"])
    p = p.copy()
    p[1] = 0.0
    for combiner in nx.COMBINERS:
        got = nx.uplink_se_log_det(G, p, combiner)
        assert abs(got[1]) < 1e-9 and np.all(got[[0, 2]] > 0)


# --------------------------------------------------------------------------------------------
# channels


def test_bases_are_the_scaled_responses_of_the_model():
    model = nf.channel_model((3, 4), (2, 2), 1.0 / 3.0, 0.5)
    Br, Bs = nx.plane_wave_bases((3, 4), (2, 2), 1.0 / 3.0, 0.5)
    for B, a, var in ((Br, model.a_r, model.var_r), (Bs, model.a_s, model.var_s)):
        np.testing.assert_allclose(B, np.asarray(a) * np.sqrt(np.asarray(var))[None], atol=1e-12)
    # unit-variance entries: the row norms of B are 1
    np.testing.assert_allclose(np.sum(abs(Br) ** 2, axis=1), 1.0, rtol=1e-12)


def test_channel_second_moments_monte_carlo():
    model = nf.channel_model((3, 3), (2, 2), 1.0 / 3.0, 0.5)
    Rr, Rs = (np.asarray(x) for x in nf.correlation_matrices(model))
    Br, Bs = nx.plane_wave_bases((3, 3), (2, 2), 1.0 / 3.0, 0.5)
    beta = np.array([[2.0, 0.5], [1.0, 4.0]])
    n = 4000
    G = nx.sample_channels(np.random.default_rng(9), Br, Bs, beta, n)
    assert G.shape == (n, 2, 2, 9, 4) and G.dtype == np.complex128
    tol = 6.0 / np.sqrt(n)
    for m, k in itertools.product(range(2), range(2)):
        g = G[:, m, k] / np.sqrt(beta[m, k])
        err_r = np.einsum("nra,nsa->rs", g, g.conj()) / (n * 4) - Rr
        err_s = np.einsum("nra,nrb->ab", g, g.conj()) / (n * 9) - Rs
        assert np.max(abs(err_r)) < tol and np.max(abs(err_s)) < tol
    # different pairs are uncorrelated
    cross = np.einsum("nra,nsa->rs", G[:, 0, 0], G[:, 1, 1].conj()) / (n * 4 * np.sqrt(8.0))
    assert np.max(abs(cross)) < tol
    # complex64 draw
    G32 = nx.sample_channels(np.random.default_rng(9), Br, Bs, beta, 3, dtype=np.complex64)
    assert G32.dtype == np.complex64


# --------------------------------------------------------------------------------------------
# large-scale fading


def brute_force_distance(bs, ue, side, height):
    d = np.empty((len(bs), len(ue)))
    for m, k in itertools.product(range(len(bs)), range(len(ue))):
        d[m, k] = min(
            np.hypot(ue[k, 0] - bs[m, 0] - sx, ue[k, 1] - bs[m, 1] - sy)
            for sx in (-side, 0.0, side)
            for sy in (-side, 0.0, side)
        )
    return np.sqrt(d**2 + height**2)


NOISE_DBM = -174.0 + 10.0 * np.log10(20e6) + 7.0  # -94.0 dBm


def test_drop_by_hand_without_shadowing():
    M, K, side = 5, 4, 1000.0
    beta, beta_db = nx.drop_large_scale(np.random.default_rng(3), M, K, shadow_std_db=0.0)
    replay = np.random.default_rng(3)
    bs, ue = side * replay.random((M, 2)), side * replay.random((K, 2))
    d = brute_force_distance(bs, ue, side, 10.0)
    want = -30.5 - 36.7 * np.log10(d) - NOISE_DBM
    np.testing.assert_allclose(beta_db, want, rtol=1e-12)
    np.testing.assert_allclose(beta, 10.0 ** (want / 10.0), rtol=1e-12)


def test_drop_grid_layout():
    K = 3
    _, beta_db = nx.drop_large_scale(
        np.random.default_rng(5), 4, K, bs_layout="grid", shadow_std_db=0.0, height=0.0
    )
    ue = 1000.0 * np.random.default_rng(5).random((K, 2))
    bs = np.array([[250.0, 250.0], [250.0, 750.0], [750.0, 250.0], [750.0, 750.0]])
    d = brute_force_distance(bs, ue, 1000.0, 0.0)
    np.testing.assert_allclose(beta_db, -30.5 - 36.7 * np.log10(d) - NOISE_DBM, rtol=1e-12)


def test_shadowing_covariance_over_bss():
    M, K, side, std, dc = 20000, 3, 12.0, 4.0, 9.0
    _, beta_db = nx.drop_large_scale(
        np.random.default_rng(8), M, K, side=side, shadow_std_db=std, decorrelation_m=dc
    )
    replay = np.random.default_rng(8)
    bs, ue = side * replay.random((M, 2)), side * replay.random((K, 2))
    F = beta_db - (-30.5 - 36.7 * np.log10(brute_force_distance(bs, ue, side, 10.0))) + NOISE_DBM
    delta = np.sqrt(np.sum((ue[:, None] - ue[None]) ** 2, axis=-1))
    want = std**2 * 2.0 ** (-delta / dc)
    np.testing.assert_allclose(np.cov(F.T), want, atol=0.6)  # ~ 16 * 5 / sqrt(M)
    assert abs(F.mean()) < 0.15
    # i.i.d. shadowing: uncorrelated UEs
    _, b2 = nx.drop_large_scale(
        np.random.default_rng(8), M, K, side=side, shadow_std_db=std, decorrelation_m=None
    )
    F2 = b2 - (beta_db - F)
    np.testing.assert_allclose(np.cov(F2.T), std**2 * np.eye(K), atol=0.6)


# --------------------------------------------------------------------------------------------
# bad inputs


def test_bad_inputs():
    _, G, p = system(*SYSTEMS["gram"])
    rng = np.random.default_rng(0)
    Br, Bs = nx.plane_wave_bases((3, 3), (1, 2), 1.0 / 3.0, 0.5)
    cases = [
        (lambda: nx.uplink_se_log_det(G[0], p), "G must have shape"),
        (
            lambda: nx.uplink_se_log_det(np.where(G == G[0, 0, 0, 0, 0], np.nan, G), p),
            "G must be finite",
        ),
        (lambda: nx.uplink_se_log_det(G, p[:2]), "p must be a scalar or have shape"),
        (lambda: nx.uplink_se_log_det(G, -p), "p must be finite and non-negative"),
        (lambda: nx.uplink_se_log_det(G, p, "zf"), "combiner must be one of"),
        (lambda: nx.uplink_se_log_det(G, p, estimator="x"), "estimator must be one of"),
        (lambda: nx.sample_channels(rng, Br, Bs, np.ones(3), 2), "beta must have shape"),
        (lambda: nx.sample_channels(rng, Br, Bs, -np.ones((2, 2)), 2), "beta must be finite"),
        (lambda: nx.sample_channels(rng, Br, Bs, np.ones((2, 2)), 0), "n must be a positive"),
        (
            lambda: nx.sample_channels(rng, Br, Bs, np.ones((2, 2)), 2, dtype=np.float64),
            "dtype must be complex64 or complex128",
        ),
        (lambda: nx.plane_wave_bases(9, (3, 3)), "bs_array must be a pair"),
        (lambda: nx.plane_wave_bases((3, 3), None), "ue_array must be a pair"),
        (lambda: nx.drop_large_scale(rng, 0, 3), "M must be a positive int"),
        (lambda: nx.drop_large_scale(rng, 4, 0), "K must be a positive int"),
        (lambda: nx.drop_large_scale(rng, 4, 3, bs_layout="hex"), "bs_layout must be"),
        (lambda: nx.drop_large_scale(rng, 5, 3, bs_layout="grid"), "M=5 must be a square"),
        (lambda: nx.drop_large_scale(rng, 4, 3, side=0.0), "side must be positive"),
        (lambda: nx.drop_large_scale(rng, 4, 3, shadow_std_db=-1.0), "shadow_std_db must be"),
        (lambda: nx.drop_large_scale(rng, 4, 3, decorrelation_m=0.0), "decorrelation_m must"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fn()
