"""Setup kernels (correlation, path loss, geometry, shadowing, pilots, DCC) vs the NumPy
reference in ``tests/reference.py``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from scipy import integrate

DEG = np.pi / 180.0

# (N, azimuth, elevation, asd_azimuth, asd_elevation)
LS_CASES = [
    (1, 0.3, 0.1, 15 * DEG, 10 * DEG),
    (2, -2.5, 0.02, 10 * DEG, 0.0),
    (4, 1.1, 0.4, 20 * DEG, 5 * DEG),
    (4, np.pi - 0.05, 0.0, 5 * DEG, 0.0),
    (8, -0.7, 0.2, 15 * DEG, 15 * DEG),
    (8, 0.0, 0.05, 30 * DEG, 0.0),
    (16, 2.2, 0.3, 15 * DEG, 10 * DEG),
    (16, -1.4, 0.01, 10 * DEG, 0.0),
]


# ----------------------------------------------------------------------------------------------
# Reference self-checks (no JAX)
# ----------------------------------------------------------------------------------------------


def _quad_entry(n, azimuth, elevation, asd_az, asd_el, spacing=0.5):
    """``[R]_{1,n+1}`` by adaptive scipy quadrature of the defining integral."""
    d = n * spacing
    if asd_el == 0.0:

        def f(x, part):
            phase = 2 * np.pi * d * np.sin(azimuth + x) * np.cos(elevation)
            dens = np.exp(-(x**2) / (2 * asd_az**2)) / (np.sqrt(2 * np.pi) * asd_az)
            return (np.cos(phase) if part == 0 else np.sin(phase)) * dens

        kw = dict(limit=500, epsabs=1e-13, epsrel=1e-13)
        lim = 12 * asd_az
        re = integrate.quad(f, -lim, lim, args=(0,), **kw)[0]
        im = integrate.quad(f, -lim, lim, args=(1,), **kw)[0]
        return re + 1j * im

    def g(y, x, part):
        phase = 2 * np.pi * d * np.sin(azimuth + x) * np.cos(elevation + y)
        dens = np.exp(-(x**2) / (2 * asd_az**2) - y**2 / (2 * asd_el**2))
        dens /= 2 * np.pi * asd_az * asd_el
        return (np.cos(phase) if part == 0 else np.sin(phase)) * dens

    lx, ly = 10 * asd_az, 10 * asd_el
    kw = dict(epsabs=1e-12, epsrel=1e-12)
    re = integrate.dblquad(g, -lx, lx, -ly, ly, args=(0,), **kw)[0]
    im = integrate.dblquad(g, -lx, lx, -ly, ly, args=(1,), **kw)[0]
    return re + 1j * im


@pytest.mark.parametrize(
    "case",
    [
        (16, 0.3, 0.2, 15 * DEG, 0.0),
        (16, -2.0, 0.05, 30 * DEG, 0.0),
        (4, 1.2, 0.6, 15 * DEG, 10 * DEG),
    ],
)
def test_reference_local_scattering_converged(case):
    N, az, el, sa, se = case
    row = ref.local_scattering_first_row(N, az, el, sa, se)
    fine = ref.local_scattering_first_row(N, az, el, sa, se, n_grid=1201, width=16.0)
    coarse = ref.local_scattering_first_row(N, az, el, sa, se, n_grid=241)
    assert np.max(np.abs(row - fine)) < 1e-9
    assert np.max(np.abs(coarse - fine)) < 1e-9
    # Independent adaptive quadrature of the last (most oscillatory) entry.
    assert abs(row[N - 1] - _quad_entry(N - 1, az, el, sa, se)) < 1e-9


def test_reference_local_scattering_properties():
    R = ref.local_scattering(6, 0.4, 0.1, 15 * DEG, 10 * DEG)
    np.testing.assert_allclose(R, R.conj().T, atol=1e-15)
    np.testing.assert_allclose(np.diag(R), 1.0, atol=1e-14)
    assert np.linalg.eigvalsh(R).min() > -1e-12
    # Zero angular spread: a rank-one steering-vector outer product.
    a = np.exp(1j * 2 * np.pi * 0.5 * np.arange(4) * np.sin(0.4) * np.cos(0.1))
    np.testing.assert_allclose(ref.local_scattering(4, 0.4, 0.1, 0.0, 0.0), np.outer(a.conj(), a))


def test_reference_wraparound_geometry():
    ap = np.array([[10.0, 10.0], [500.0, 500.0]])
    ue = np.array([[990.0, 995.0], [500.0, 530.0]])
    d, az, el = ref.wrapped_geometry(ap, ue)
    # AP (10,10) to UE (990,995) wraps to displacement (-20, -15).
    np.testing.assert_allclose(d[0, 0], np.sqrt(20**2 + 15**2 + 10**2))
    np.testing.assert_allclose(az[0, 0], np.arctan2(-15.0, -20.0))
    np.testing.assert_allclose(d[1, 1], np.sqrt(30**2 + 10**2))
    np.testing.assert_allclose(az[1, 1], np.pi / 2)
    np.testing.assert_allclose(el, np.arcsin(10.0 / d))


def test_reference_pilot_assignment_hand_example():
    # 2 APs, 4 UEs, 2 pilots.  UE 2 (master AP 1) sees UE 0 at -10 dB and UE 1 at -20 dB
    # on AP 1 -> pilot 1.  UE 3 (master AP 0): pilot 0 carries UE0 (0 dB); pilot 1 carries
    # UE1 (-30 dB) + UE2 (-40 dB) -> pilot 1.
    g = np.array(
        [
            [0.0, -30.0, -40.0, 10.0],
            [-10.0, -20.0, 5.0, -50.0],
        ]
    )
    pilot = ref.assign_pilots(g, 2)
    np.testing.assert_array_equal(pilot, [0, 1, 1, 1])
    D = ref.dcc(g, pilot, 2)
    # masters: UE0->AP0, UE1->AP1, UE2->AP1, UE3->AP0; AP0 best on pilot 0: UE0,
    # on pilot 1: UE3; AP1 best on pilot 0: UE0, on pilot 1: UE2.
    expected = np.array([[True, False, False, True], [True, True, True, False]])
    np.testing.assert_array_equal(D, expected)


# ----------------------------------------------------------------------------------------------
# JAX vs reference
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", LS_CASES)
def test_local_scattering_matches_integral(case):
    from cfmimo_jax.correlation import local_scattering

    N, az, el, sa, se = case
    R = np.asarray(local_scattering(N, az, el, sa, se))
    R_ref = ref.local_scattering(N, az, el, sa, se)
    assert R.shape == (N, N)
    np.testing.assert_allclose(R, R_ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(R, R.conj().T, atol=1e-12)
    np.testing.assert_allclose(np.trace(R).real, N, rtol=1e-9)
    assert abs(np.trace(R).imag) < 1e-9


def test_local_scattering_spacing():
    from cfmimo_jax.correlation import local_scattering

    R = np.asarray(local_scattering(4, 0.6, 0.1, 12 * DEG, 0.0, spacing=0.25))
    np.testing.assert_allclose(
        R, ref.local_scattering(4, 0.6, 0.1, 12 * DEG, 0.0, spacing=0.25), atol=1e-5
    )


def test_noise_and_pathloss():
    from cfmimo_jax.pathloss import noise_power_dbm, pathloss_db

    np.testing.assert_allclose(float(noise_power_dbm()), ref.noise_power_dbm(), rtol=1e-12)
    np.testing.assert_allclose(
        float(noise_power_dbm(10e6, 9.0)), ref.noise_power_dbm(10e6, 9.0), rtol=1e-12
    )
    d = np.array([10.05, 37.0, 250.0, 707.1])
    np.testing.assert_allclose(np.asarray(pathloss_db(d)), ref.pathloss_db(d), rtol=1e-12)


def _check_setup(s, L, K, N, tau_p, asd_az, asd_el, side=1000.0, height=10.0):
    ap = np.asarray(s.ap_pos, dtype=np.float64)
    ue = np.asarray(s.ue_pos, dtype=np.float64)
    assert ap.shape == (L, 2) and ue.shape == (K, 2)
    assert np.all((ap >= 0) & (ap <= side)) and np.all((ue >= 0) & (ue <= side))
    d, az, el = ref.wrapped_geometry(ap, ue, side, height)
    np.testing.assert_allclose(np.asarray(s.distance), d, rtol=1e-10)
    np.testing.assert_allclose(np.angle(np.exp(1j * (np.asarray(s.azimuth) - az))), 0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(s.elevation), el, rtol=1e-10)
    shadow = np.asarray(s.shadowing_db, dtype=np.float64)
    gain_db = np.asarray(s.gain_db, dtype=np.float64)
    np.testing.assert_allclose(gain_db, ref.gain_db_from_geometry(d, shadow), rtol=0, atol=1e-9)
    gain = 10 ** (gain_db / 10)
    R = np.asarray(s.R)
    assert R.shape == (L, K, N, N)
    for l in range(L):
        for k in range(K):
            if asd_az is None:
                R_ref = np.eye(N)
            else:
                R_ref = ref.local_scattering(N, az[l, k], el[l, k], asd_az, asd_el)
            np.testing.assert_allclose(R[l, k] / gain[l, k], R_ref, rtol=0, atol=1e-5)
    pilot = ref.assign_pilots(gain_db, tau_p)
    np.testing.assert_array_equal(np.asarray(s.pilot), pilot)
    np.testing.assert_array_equal(np.asarray(s.D), ref.dcc(gain_db, pilot, tau_p))
    assert np.asarray(s.D).dtype == bool
    np.testing.assert_array_equal(np.asarray(s.master), ref.master_aps(gain_db))


@pytest.mark.parametrize("correlated", [True, False])
def test_generate_setup_rederived(correlated):
    from cfmimo_jax.setup import generate_setup

    asd = (15 * DEG, 10 * DEG) if correlated else (None, None)
    for seed in (0, 1):
        s = generate_setup(jax.random.PRNGKey(seed), 6, 5, 3, 3, *asd)
        _check_setup(s, 6, 5, 3, 3, *asd)


def test_generate_setup_given_positions_wraparound():
    from cfmimo_jax.setup import generate_setup

    # Positions near the edges and corners so that the wrap-around matters.
    ap = np.array([[10.0, 10.0], [990.0, 500.0], [500.0, 500.0], [20.0, 980.0], [700.0, 5.0]])
    ue = np.array([[995.0, 995.0], [5.0, 505.0], [480.0, 520.0], [600.0, 990.0], [30.0, 40.0]])
    s = generate_setup(jax.random.PRNGKey(5), 5, 5, 2, 2, 15 * DEG, 0.0, ap_pos=ap, ue_pos=ue)
    np.testing.assert_allclose(np.asarray(s.ap_pos), ap)
    np.testing.assert_allclose(np.asarray(s.ue_pos), ue)
    _check_setup(s, 5, 5, 2, 2, 15 * DEG, 0.0)
    d, _, _ = ref.wrapped_geometry(ap, ue)
    assert d[0, 0] < 30.0  # corner-to-corner pair is a neighbour through the wrap-around


def test_generate_setup_shadowing_statistics():
    """Shadowing ~ N(0, Sigma) per AP with Sigma[k, i] = 16 * 2^(-delta/9): UEs placed close
    together so the correlation is strong; compared entry-wise with z-scores."""
    from cfmimo_jax.setup import generate_setup

    rng = np.random.default_rng(3)
    ue = 500.0 + rng.uniform(0.0, 25.0, (5, 2))
    L = 40
    samples = []
    for seed in range(8):
        s = generate_setup(jax.random.PRNGKey(100 + seed), L, 5, 1, 5, ue_pos=ue)
        samples.append(np.asarray(s.shadowing_db, dtype=np.float64))
    F = np.concatenate(samples, axis=0)  # [8 L, K], rows independent
    n = F.shape[0]
    Sigma = ref.shadowing_covariance(ue)
    S = F.T @ F / n
    se = np.sqrt((np.outer(np.diag(Sigma), np.diag(Sigma)) + Sigma**2) / n)
    assert np.max(np.abs(S - Sigma) / se) < 5.0
    assert np.max(np.abs(F.mean(axis=0)) / np.sqrt(np.diag(Sigma) / n)) < 5.0
    # Whitened samples: unit variance, uncorrelated.
    Z = np.linalg.solve(np.linalg.cholesky(Sigma), F.T).T
    np.testing.assert_allclose(np.cov(Z.T), np.eye(5), atol=5 * np.sqrt(2.0 / n))


# (L, K, tau_p)
PILOT_SHAPES = [(8, 7, 3), (8, 7, 2), (8, 4, 5), (8, 7, 7)]


@pytest.mark.parametrize("shape", PILOT_SHAPES)
def test_assign_pilots_and_dcc_match_reference(shape):
    from cfmimo_jax.pilots import assign_pilots, dcc

    L, K, tau_p = shape
    for seed in range(6):
        rng = np.random.default_rng(1000 * L + 100 * K + 10 * tau_p + seed)
        gain_db = rng.uniform(-40.0, 10.0, (L, K))
        pilot_ref = ref.assign_pilots(gain_db, tau_p)
        pilot = np.asarray(assign_pilots(jnp.asarray(gain_db), tau_p))
        np.testing.assert_array_equal(pilot, pilot_ref)
        D = np.asarray(dcc(jnp.asarray(gain_db), jnp.asarray(pilot_ref, jnp.int32), tau_p))
        assert D.shape == (L, K) and D.dtype == bool
        np.testing.assert_array_equal(D, ref.dcc(gain_db, pilot_ref, tau_p))


def test_pilots_accept_numpy_inputs():
    """The public functions take plain NumPy arrays as well as JAX arrays."""
    from cfmimo_jax.pilots import assign_pilots, dcc

    gain_db = np.random.default_rng(7).uniform(-40.0, 10.0, (8, 7))
    pilot_ref = ref.assign_pilots(gain_db, 3)
    np.testing.assert_array_equal(np.asarray(assign_pilots(gain_db, 3)), pilot_ref)
    np.testing.assert_array_equal(
        np.asarray(dcc(gain_db, pilot_ref.astype(np.int32), 3)), ref.dcc(gain_db, pilot_ref, 3)
    )
