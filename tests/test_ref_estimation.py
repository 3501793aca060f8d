"""Channel estimation and combiners vs the NumPy reference; statistics of the samplers."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import reference as ref
import scipy.linalg
from conftest import N_REALIZATIONS

N_STAT = 4000  # realizations for the statistical checks
Z_MAX = 6.0  # max |z| over all entries of a moment check (deterministic keys)


def _cn(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)


def _moment_z(x, y, target):
    """Max |z-score| of the sample moment ``mean x_a conj(y_b)`` against ``target[..., a, b]``.

    ``x, y``: ``[n, ..., N]``; the standard error of each entry is estimated from the samples.
    """
    prod = x[..., :, None] * y[..., None, :].conj()  # [n, ..., N, N]
    n = prod.shape[0]
    mean = prod.mean(axis=0)
    se = np.sqrt(np.mean(np.abs(prod - mean) ** 2, axis=0) / n)
    return np.max(np.abs(mean - target) / se)


# ----------------------------------------------------------------------------------------------
# Reference self-checks (no JAX)
# ----------------------------------------------------------------------------------------------


def test_reference_estimate_statistics_by_monte_carlo(corr_reuse):
    sc = corr_reuse
    rng = np.random.default_rng(0)
    H = ref.sample_channels(rng, sc.R, 3000)
    Y = ref.pilot_signal(rng, H, sc.pilot, sc.p, sc.tau_p)
    Hhat = ref.mmse_from_pilot_signal(Y, sc.R, sc.pilot, sc.p, sc.tau_p)
    assert _moment_z(H, H, sc.R) < Z_MAX
    assert _moment_z(Hhat, Hhat, sc.B) < Z_MAX
    assert _moment_z(H - Hhat, Hhat, 0.0) < Z_MAX
    assert _moment_z(H - Hhat, H - Hhat, sc.C) < Z_MAX
    # LS: hhat_ls - h is zero-mean noise plus pilot contamination.
    err = ref.ls_from_pilot_signal(Y, sc.pilot, sc.p, sc.tau_p) - H
    se = np.sqrt(np.mean(np.abs(err - err.mean(axis=0)) ** 2, axis=0) / err.shape[0])
    assert np.max(np.abs(err.mean(axis=0)) / se) < Z_MAX


def test_reference_mmse_combiner_maximizes_centralized_sinr(corr_reuse):
    """MMSE (5.11) maximises the instantaneous SINR of Theorem 5.1: perturbing it lowers it."""
    sc = corr_reuse
    rng = np.random.default_rng(1)
    H = ref.sample_channels(rng, sc.R, 2)
    Hhat = ref.mmse_from_pilot_signal(
        ref.pilot_signal(rng, H, sc.pilot, sc.p, sc.tau_p), sc.R, sc.pilot, sc.p, sc.tau_p
    )
    V = ref.centralized_combiners(Hhat, sc.C, sc.D, sc.p, "mmse")
    k = 0
    Mk = ref.serving_aps(sc.D, k)

    def sinr(v):
        dim = v.size
        Z = np.eye(dim, dtype=complex)
        for i in range(sc.K):
            Z += sc.p[i] * scipy.linalg.block_diag(*[sc.C[l, i] for l in Mk])
        g = [np.vdot(v, Hhat[0, Mk, i].reshape(-1)) for i in range(sc.K)]
        interf = sum(sc.p[i] * abs(g[i]) ** 2 for i in range(sc.K) if i != k)
        return sc.p[k] * abs(g[k]) ** 2 / (interf + np.vdot(v, Z @ v).real)

    v = V[0, Mk, k].reshape(-1)
    best = sinr(v)
    for _ in range(20):
        assert sinr(v + 0.1 * np.linalg.norm(v) * _cn(rng, v.shape)) < best
    assert np.all(V[:, ~sc.D[:, k], k] == 0)


# ----------------------------------------------------------------------------------------------
# JAX vs reference
# ----------------------------------------------------------------------------------------------


def test_estimation_statistics(scenario):
    from cfmimo_jax.estimation import estimation_statistics

    sc = scenario
    B, C = estimation_statistics(sc.R, sc.pilot, sc.p, sc.tau_p)
    np.testing.assert_allclose(np.asarray(B), sc.B, rtol=1e-9, atol=1e-12 * np.abs(sc.R).max())
    np.testing.assert_allclose(np.asarray(C), sc.C, rtol=1e-9, atol=1e-12 * np.abs(sc.R).max())


def test_estimation_statistics_scalar_power(corr_reuse):
    from cfmimo_jax.estimation import estimation_statistics

    sc = corr_reuse
    B_ref, C_ref = ref.estimation_statistics(sc.R, sc.pilot, 100.0, sc.tau_p)
    B, C = estimation_statistics(sc.R, sc.pilot, 100.0, sc.tau_p)
    np.testing.assert_allclose(np.asarray(B), B_ref, rtol=1e-9, atol=1e-12 * np.abs(sc.R).max())
    np.testing.assert_allclose(np.asarray(C), C_ref, rtol=1e-9, atol=1e-12 * np.abs(sc.R).max())


def test_mmse_and_ls_from_pilot_signal(scenario):
    from cfmimo_jax.estimation import ls_from_pilot_signal, mmse_from_pilot_signal

    sc = scenario
    rng = np.random.default_rng(2)
    scale = np.sqrt(sc.tau_p * (1.0 + sc.p.max() * sc.tau_p * sc.gain.max()))
    Y = scale * _cn(rng, (N_REALIZATIONS, sc.L, sc.tau_p, sc.N))
    Hhat = np.asarray(mmse_from_pilot_signal(Y, sc.R, sc.pilot, sc.p, sc.tau_p))
    Hhat_ref = ref.mmse_from_pilot_signal(Y, sc.R, sc.pilot, sc.p, sc.tau_p)
    assert Hhat.shape == (N_REALIZATIONS, sc.L, sc.K, sc.N)
    np.testing.assert_allclose(Hhat, Hhat_ref, rtol=1e-9, atol=1e-12 * np.abs(Hhat_ref).max())
    Hls = np.asarray(ls_from_pilot_signal(Y, sc.pilot, sc.p, sc.tau_p))
    np.testing.assert_allclose(
        Hls, ref.ls_from_pilot_signal(Y, sc.pilot, sc.p, sc.tau_p), rtol=1e-12
    )


def test_mmse_estimates_is_pilot_signal_then_mmse(corr_reuse):
    from cfmimo_jax.estimation import (
        mmse_estimates,
        mmse_from_pilot_signal,
        pilot_signal,
        sample_channels,
    )

    sc = corr_reuse
    key_h, key_n = jax.random.split(jax.random.PRNGKey(4))
    H = sample_channels(key_h, sc.R, N_REALIZATIONS)
    Y = pilot_signal(key_n, H, sc.pilot, sc.p, sc.tau_p)
    assert Y.shape == (N_REALIZATIONS, sc.L, sc.tau_p, sc.N)
    a = np.asarray(mmse_estimates(key_n, H, sc.R, sc.pilot, sc.p, sc.tau_p))
    b = np.asarray(mmse_from_pilot_signal(Y, sc.R, sc.pilot, sc.p, sc.tau_p))
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    c = ref.mmse_from_pilot_signal(np.asarray(Y), sc.R, sc.pilot, sc.p, sc.tau_p)
    np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12 * np.abs(c).max())


def test_sample_channels_deterministic(corr_reuse):
    from cfmimo_jax.estimation import sample_channels

    sc = corr_reuse
    a = np.asarray(sample_channels(jax.random.PRNGKey(1), sc.R, N_REALIZATIONS))
    b = np.asarray(sample_channels(jax.random.PRNGKey(1), sc.R, N_REALIZATIONS))
    c = np.asarray(sample_channels(jax.random.PRNGKey(2), sc.R, N_REALIZATIONS))
    assert a.shape == (N_REALIZATIONS, sc.L, sc.K, sc.N)
    assert np.iscomplexobj(a)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # Distinct realizations are distinct draws.
    assert not np.allclose(a[0], a[1])


@pytest.fixture(scope="module")
def jax_draws(corr_reuse):
    """Many JAX draws for the statistical checks: H, the pilot noise and the MMSE estimates."""
    from cfmimo_jax.estimation import mmse_from_pilot_signal, pilot_signal, sample_channels

    sc = corr_reuse
    key_h, key_n = jax.random.split(jax.random.PRNGKey(11))
    H = sample_channels(key_h, sc.R, N_STAT)
    Y = pilot_signal(key_n, H, sc.pilot, sc.p, sc.tau_p)
    Hhat = mmse_from_pilot_signal(Y, sc.R, sc.pilot, sc.p, sc.tau_p)
    return np.asarray(H), np.asarray(Y), np.asarray(Hhat)


def test_sampled_channel_covariance(corr_reuse, jax_draws):
    sc = corr_reuse
    H, _, _ = jax_draws
    assert _moment_z(H, H, sc.R) < Z_MAX
    # Zero mean and circular symmetry (pseudo-covariance E[h h^T] = 0).
    se = np.sqrt(np.einsum("lknn->lkn", sc.R).real / N_STAT)
    assert np.max(np.abs(H.mean(axis=0)) / se) < Z_MAX
    assert _moment_z(H, H.conj(), 0.0) < Z_MAX


def test_pilot_signal_noise_statistics(corr_reuse, jax_draws):
    sc = corr_reuse
    H, Y, _ = jax_draws
    signal = np.zeros_like(Y)
    for i in range(sc.K):
        signal[:, :, sc.pilot[i]] += np.sqrt(sc.p[i]) * sc.tau_p * H[:, :, i]
    noise = (Y - signal) / np.sqrt(sc.tau_p)
    assert _moment_z(noise, noise, np.eye(sc.N)) < Z_MAX
    assert _moment_z(noise, noise.conj(), 0.0) < Z_MAX
    # Noise independent of the channels.
    assert _moment_z(noise[:, :, sc.pilot], H, 0.0) < Z_MAX


def test_estimate_and_error_statistics(corr_reuse, jax_draws):
    sc = corr_reuse
    H, _, Hhat = jax_draws
    E = H - Hhat
    assert _moment_z(Hhat, Hhat, sc.B) < Z_MAX
    assert _moment_z(E, Hhat, 0.0) < Z_MAX  # error uncorrelated with the estimate
    assert _moment_z(E, E, sc.C) < Z_MAX


# ----------------------------------------------------------------------------------------------
# Combiners
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ref_estimates():
    """NumPy-drawn MMSE estimates per scenario (the combiners are deterministic in them)."""
    cache = {}

    def get(sc):
        if sc.name not in cache:
            rng = np.random.default_rng(5)
            H = ref.sample_channels(rng, sc.R, N_REALIZATIONS)
            Y = ref.pilot_signal(rng, H, sc.pilot, sc.p, sc.tau_p)
            cache[sc.name] = ref.mmse_from_pilot_signal(Y, sc.R, sc.pilot, sc.p, sc.tau_p)
        return cache[sc.name]

    return get


@pytest.mark.parametrize("scheme", ["mmse", "p_mmse", "p_rzf", "mr"])
def test_centralized_combiners(scenario, ref_estimates, scheme):
    from cfmimo_jax.processing import centralized_combiners

    sc = scenario
    Hhat = ref_estimates(sc)
    V = np.asarray(centralized_combiners(Hhat, sc.C, sc.D, sc.p, scheme))
    V_ref = ref.centralized_combiners(Hhat, sc.C, sc.D, sc.p, scheme)
    assert V.shape == Hhat.shape
    np.testing.assert_allclose(V, V_ref, rtol=1e-8, atol=1e-11 * np.abs(V_ref).max())
    assert np.all(V[:, ~sc.D] == 0)


@pytest.mark.parametrize("scheme", ["l_mmse", "lp_mmse", "mr"])
def test_distributed_combiners(scenario, ref_estimates, scheme):
    from cfmimo_jax.processing import distributed_combiners

    sc = scenario
    Hhat = ref_estimates(sc)
    V = np.asarray(distributed_combiners(Hhat, sc.C, sc.D, sc.p, scheme))
    V_ref = ref.distributed_combiners(Hhat, sc.C, sc.D, sc.p, scheme)
    assert V.shape == Hhat.shape
    np.testing.assert_allclose(V, V_ref, rtol=1e-8, atol=1e-11 * np.abs(V_ref).max())
    assert np.all(V[:, ~sc.D] == 0)
