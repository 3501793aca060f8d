"""The NumPy mobile-AP benchmark environment (bench/numpy_mobile_ap.py) against the JAX
scenario and against checks of its own.

- Step parity: the same state and actions give the same rewards, observations, global states
  and final observations as ``cfmimo_jax.envs.make("mobile_ap")`` (float64) on a tiny network
  over two episodes, with actions out of their boxes, moves across the area's edge and onto a
  UE (both projections), and budget / antenna-power excesses (both penalties).
- Projection ([MOBILE-AP] (22b)-(22c)): feasible, never farther than a brute-force grid search
  over the feasible set finds, a feasible point unchanged; equal to
  ``cfmimo_jax.geometry.project_uav_positions``.
- Path loss: the COST 231 WI NLoS formula against the 3GPP SCM urban-micro closed form it
  reduces to for an AP at 12.5 m; the LoS probability at hand-computed elevations.
- Local scattering (book eq. (2.18)) against direct numerical integration on a dense grid.
- SE with antenna weights ([MOBILE-AP] Theorem 1): against Monte-Carlo estimates of
  ``E[h_k^H w_i]`` and ``E|h_k^H w_i|^2`` from sampled channels and MMSE estimates, with pilot
  reuse (so the coherent interference terms are live).
- Power mapping (22d)-(22e) on a hand-computed case; the error raised for each bad input.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import numpy_mobile_ap as nm
from cfmimo_jax import envs
from cfmimo_jax.envs import spaces
from cfmimo_jax.geometry import project_uav_positions

TINY = dict(n_aps=3, n_antennas=4, n_ues=3, episode_steps=3)


@functools.cache
def tiny():
    env, params = envs.make("mobile_ap", TINY)
    return env, params, jax.jit(env.reset_env), jax.jit(env.step), jax.jit(env.global_state)


def _to_flat_env_units(npe, u):
    """Flat ``u`` in [-1, 1] (clipped) -> the NumPy environment's action units."""
    return npe.action_low + 0.5 * (np.clip(u, -1.0, 1.0) + 1.0) * (npe.action_high - npe.action_low)


def _actions(npe, rng, forced, st):
    """Random flat actions in (and beyond) [-1, 1]; ``forced``: AP 0 flies to 4 m from UE 0
    (the distance projection), AP 1 out of the area, AP 2 stays with every budget fraction 1 and
    one antenna weighted up (power and antenna excesses)."""
    M, N, K = npe.M, npe.N, npe.K
    u = rng.uniform(-1.4, 1.4, (M, N + 2 + K))
    if forced:
        d = nm.wrapped_displacement(np.asarray(st.ap_pos), np.asarray(st.ue_pos), npe.side)[0, 0]
        u[0, N : N + 2] = d * (1.0 - 4.0 / np.linalg.norm(d)) / npe.max_step  # 4 m short
        u[1, N : N + 2] = (-1.0, -1.0)
        u[2, N : N + 2] = 0.0
        u[2, N + 2 :] = 1.0
        u[2, :N] = -1.0
        u[2, 0] = 1.0
    return u


def _start_state(env, params, reset):
    """A JAX reset with AP 0 put 15 m from UE 0 (towards the centre) and AP 1 5 m from the
    corner (0, 0), its statistics recomputed there."""
    _, st = reset(jax.random.PRNGKey(3), params)
    ap = np.asarray(st.ap_pos).copy()
    ue0 = np.asarray(st.ue_pos)[0]
    towards = (0.5 * env.side - ue0) / np.linalg.norm(0.5 * env.side - ue0)
    ap[0] = ue0 + 15.0 * towards
    ap[1] = (5.0, 5.0)
    gain_db, R, B = env.channel(jnp.asarray(ap), st.ue_pos)
    st = dataclasses.replace(st, ap_pos=jnp.asarray(ap), gain_db=gain_db, R=R, B=B)
    return env._obs(st, params), st


def test_step_matches_jax_env():
    env, params, reset, step, gstate = tiny()
    npe = nm.MobileAPNumPy.from_env(env, params)
    rng = np.random.default_rng(0)
    obs, st = _start_state(env, params, reset)
    o_np = npe.set_state(st.ap_pos, st.ue_pos, st.rho, st.q, st.se, 0)
    np.testing.assert_allclose(o_np, np.asarray(obs), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(npe.global_state(), np.asarray(gstate(st)), rtol=1e-7, atol=1e-8)
    n_done = 0
    for t in range(2 * env.episode_steps):
        u = _actions(npe, rng, t == 0, st)
        a = spaces.unflatten(env.action_space, jnp.asarray(u))
        o_j, st, r_j, d_j, info = step(jax.random.PRNGKey(100 + t), st, a, params)
        o_n, r_n, d_n, info_n = npe.step(_to_flat_env_units(npe, u))
        np.testing.assert_allclose(r_n, np.asarray(r_j), rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(info_n["sum_se"], float(info["sum_se"]), rtol=1e-7)
        np.testing.assert_allclose(info_n["se"], np.asarray(info["se"]), rtol=1e-7)
        np.testing.assert_allclose(info_n["penalty"], float(info["penalty"]), atol=1e-8)
        np.testing.assert_allclose(info_n["move_m"], float(info["move_m"]), rtol=1e-7)
        assert bool(d_j) == d_n
        fin = info_n["final_obs"] if d_n else o_n
        np.testing.assert_allclose(fin, np.asarray(info["final_obs"]), rtol=1e-7, atol=1e-8)
        if d_n:
            n_done += 1
            np.testing.assert_allclose(
                info_n["final_state"], np.asarray(info["final_global_state"]), atol=1e-8
            )
            # the JAX reset drew a new drop with its own key: continue both from it
            o_n = npe.set_state(st.ap_pos, st.ue_pos, st.rho, st.q, st.se, int(st.t))
        np.testing.assert_allclose(o_n, np.asarray(o_j), rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(npe.global_state(), np.asarray(gstate(st)), atol=1e-8)
        if t == 0:  # the forced step: every penalty is live
            v = info_n["sum_se"] - r_n  # per-agent penalties
            assert v[0] > 0.2  # 4 m from UE 0: (d_min - 4) / max_step = 0.24
            assert v[1] > 0.3  # 25 m diagonally from 5 m off the corner: 2 (25 / sqrt 2 - 5) / 25
            assert v[2] > 2.0  # budget excess K - 1 = 2, plus the antenna excess
    assert n_done == 2


def _brute_force_nearest(x, ue, d_min, side, radius, n=1001):
    """The nearest feasible grid point to ``x`` within ``radius`` (grid spacing 2 radius / n)."""
    g = np.linspace(-radius, radius, n)
    P = np.stack(np.meshgrid(x[0] + g, x[1] + g, indexing="ij"), -1).reshape(-1, 2)
    P = P[np.all((P >= 0) & (P <= side), axis=1)]
    d = nm.wrapped_displacement(P, ue, side)
    P = P[np.all(np.sum(d**2, -1) >= d_min**2, axis=1)]
    return np.min(np.linalg.norm(P - x, axis=1)), 2 * radius / (n - 1)


def test_projection_feasible_nearest_and_equal_to_jax():
    rng = np.random.default_rng(5)
    side, d_min = 200.0, 10.0
    ue = np.array([[50.0, 50.0], [62.0, 55.0], [5.0, 100.0], [195.0, 3.0]])
    # inside a disc, inside two overlapping discs, outside the area, near a wrapped UE, free
    x = np.array(
        [
            [52.0, 49.0],
            [56.0, 52.0],
            [-7.0, 100.0],
            [199.0, 196.0],
            [120.0, 120.0],
            [3.0, 97.0],
            [210.0, -4.0],
        ]
    )
    x = np.concatenate([x, rng.uniform(-10, side + 10, (6, 2))])
    tol = 64.0 * np.finfo(np.float64).eps * side
    pos, area, dist_v = nm.project_positions(x, ue, d_min, side, tol)
    # feasible
    assert np.all((pos >= 0) & (pos <= side))
    d = np.sqrt(np.sum(nm.wrapped_displacement(pos, ue, side) ** 2, -1))
    assert np.all(d >= d_min - 1e-9)
    # nearest: no feasible grid point is closer (up to the grid spacing)
    for i in range(x.shape[0]):
        got = np.linalg.norm(pos[i] - x[i])
        best, h = _brute_force_nearest(x[i], ue, d_min, side, got + 1.0)
        assert got <= best + 1e-9, (i, got, best)
        assert got >= best - 3 * h, (i, got, best)  # a grid point near the optimum
    # violations by hand: area |x - clip(x)|, distance sum_k max(d_min - d_k(clip(x)), 0)
    y = np.clip(x, 0, side)
    np.testing.assert_allclose(area, np.linalg.norm(x - y, axis=1), atol=1e-12)
    dy = np.sqrt(np.sum(nm.wrapped_displacement(y, ue, side) ** 2, -1))
    np.testing.assert_allclose(dist_v, np.sum(np.maximum(d_min - dy, 0), 1), atol=1e-12)
    free = (area == 0) & (dist_v == 0)
    np.testing.assert_array_equal(pos[free], x[free])
    # against the JAX projection
    j = project_uav_positions(jnp.asarray(x), jnp.asarray(ue), d_min, side)
    np.testing.assert_allclose(pos, np.asarray(j.pos), atol=1e-9)
    np.testing.assert_allclose(area, np.asarray(j.area_violation), atol=1e-9)
    np.testing.assert_allclose(dist_v, np.asarray(j.distance_violation), atol=1e-9)


def test_nlos_reduces_to_the_scm_formula_and_los_probability_by_hand():
    d = np.array([30.0, 200.0, 1000.0])
    f_mhz = 1900.0
    scm = -55.9 + 38.0 * np.log10(d) + (24.5 + 1.5 * f_mhz / 925.0) * np.log10(f_mhz)
    np.testing.assert_allclose(nm.cost231_nlos_db(d, 1.9, 12.5, 1.5), scm, atol=0.01)
    # LoS: 42.6 + 26 log10(0.2) + 20 log10(1900) at 200 m; held at 20 m below
    los = 42.6 + 26.0 * math.log10(0.2) + 20.0 * math.log10(1900.0)
    assert nm.cost231_los_db(np.array(200.0), 1.9) == pytest.approx(los, abs=1e-12)
    assert nm.cost231_los_db(np.array(5.0), 1.9) == pytest.approx(
        nm.cost231_los_db(np.array(20.0), 1.9), abs=1e-12
    )
    # P_LOS at theta = a (= 9.61 deg) is 1 / (1 + a); at 90 deg 1 / (1 + a exp(-b (90 - a)))
    a, b = nm.A2G_URBAN
    el = np.radians(np.array([a, 90.0]))
    want = np.array([1.0 / (1.0 + a), 1.0 / (1.0 + a * math.exp(-b * (90.0 - a)))])
    np.testing.assert_allclose(nm.los_probability(el), want, rtol=1e-12)


@pytest.mark.parametrize("asd_deg, az, el", [(10.0, 0.4, 0.2), (25.0, -1.2, 0.9), (0.0, 2.0, 0.1)])
def test_local_scattering_vs_direct_integration(asd_deg, az, el):
    N = 6
    asd = math.radians(asd_deg)
    R = nm.local_scattering(N, np.array(az), np.array(el), asd)
    lags = np.arange(N)
    if asd == 0:
        row = np.exp(1j * np.pi * lags * math.sin(az) * math.cos(el))
    else:  # trapezoid on a dense grid over +-8 standard deviations
        delta = np.linspace(-8 * asd, 8 * asd, 20001)
        pdf = np.exp(-0.5 * (delta / asd) ** 2) / (math.sqrt(2 * math.pi) * asd)
        f = np.exp(1j * np.pi * lags[:, None] * np.sin(az + delta) * math.cos(el)) * pdf
        row = np.trapezoid(f, delta, axis=1)
    want = np.array([[row[b - a] if b >= a else np.conj(row[a - b]) for b in lags] for a in lags])
    np.testing.assert_allclose(R, want, atol=1e-9)
    assert np.real(np.trace(R)) == pytest.approx(N)


def test_se_with_antenna_weights_vs_monte_carlo():
    rng = np.random.default_rng(7)
    M, N, K, tau_p, tau_c, p = 2, 2, 3, 2, 50, 10.0
    pilot = np.array([0, 1, 0])  # UEs 0 and 2 share a pilot: coherent interference
    az = rng.uniform(-np.pi, np.pi, (M, K))
    beta = 10 ** rng.uniform(-0.5, 0.5, (M, K))
    R = beta[..., None, None] * nm.local_scattering(N, az, np.full((M, K), 0.3), math.radians(20))
    B, X = nm.estimation_statistics(R, pilot, p, tau_p)
    rho = rng.uniform(0.2, 1.0, (M, K))
    q = np.array([[1.0, 0.3], [0.6, 1.0]])
    se = nm.downlink_se_weighted_mr(R, B, X, pilot, p, tau_p, tau_c, rho, q)
    # Monte Carlo: h ~ CN(0, R), received pilots, MMSE estimates, weighted MR precoders
    n = 200_000
    L = np.linalg.cholesky(R)  # [M, K, N, N]

    def cn(*shape):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / math.sqrt(2)

    h = np.einsum("mkab,smkb->smka", L, cn(n, M, K, N))
    onehot = (pilot[:, None] == np.arange(tau_p)).astype(float)  # [K, tau_p]
    y = math.sqrt(p) * tau_p * np.einsum("kt,smka->smta", onehot, h) + math.sqrt(tau_p) * cn(
        n, M, tau_p, N
    )
    Psi = p * tau_p * np.einsum("kt,mkab->mtab", onehot, R) + np.eye(N)
    A = math.sqrt(p) * R @ np.linalg.inv(Psi[:, pilot])  # hhat = A y_{t_k}
    hhat = np.einsum("mkab,smkb->smka", A, y[:, :, pilot])
    bq = np.einsum("mn,mknn->mk", q, np.real(B))
    w = np.sqrt(rho / bq)[None, ..., None] * np.sqrt(q)[None, :, None, :] * hhat
    g = np.einsum("smka,smia->ski", np.conj(h), w)  # h_k^H w_i summed over APs: [s, k, i]
    mean = g.mean(0)
    second = np.mean(np.abs(g) ** 2, 0)
    sig = np.abs(np.diagonal(mean)) ** 2
    sinr = sig / (np.sum(second, axis=1) - sig + 1.0)
    want = (1 - tau_p / tau_c) * np.log2(1 + sinr)
    np.testing.assert_allclose(se, want, rtol=0.02)
    # the precoder's mean power is rho (the normalisation the SE assumes)
    np.testing.assert_allclose(np.mean(np.sum(np.abs(w) ** 2, -1), 0), rho, rtol=0.02)


def test_power_mapping_by_hand():
    N, K = 2, 2
    B = np.zeros((1, K, N, N), complex)
    B[0, 0] = np.diag([3.0, 1.0])
    B[0, 1] = np.diag([1.0, 1.0])
    p_ap = 10.0
    # budget fractions (0.9, 0.6): sum 1.5 -> rho = 10 (0.6, 0.4); q = (1, 0.05 floor)
    rho, q, v_p, v_a = nm.map_actions(
        B, np.array([[0.9, 0.6]]), np.array([[1.2, -1.0]]), p_ap, 0.05
    )
    np.testing.assert_allclose(q, [[1.0, 0.05]])
    assert v_p[0] == pytest.approx(0.5)
    # antenna powers: UE 0 share (3, 0.05) / 3.05, UE 1 (1, 0.05) / 1.05
    P = 6.0 * np.array([3.0, 0.05]) / 3.05 + 4.0 * np.array([1.0, 0.05]) / 1.05
    p_an = p_ap / N
    assert v_a[0] == pytest.approx(np.sum(np.maximum(P - p_an, 0)) / p_ap)
    np.testing.assert_allclose(rho, [[6.0, 4.0]] * np.array(p_an / P.max()))
    # the scaled powers meet (22e) with equality on the peak antenna
    np.testing.assert_allclose(nm.antenna_powers(B, rho, q).max(), p_an)


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(n_aps=0), "n_aps"),
        (dict(n_antennas=2.5), "n_antennas"),
        (dict(n_ues=-1), "n_ues"),
        (dict(episode_steps=0), "episode_steps"),
        (dict(tau_c=6), "tau_c"),
        (dict(side_m=-1.0), "side_m"),
        (dict(max_step_m=0.0), "max_step_m"),
        (dict(p_ap_max_mw=float("nan")), "p_ap_max_mw"),
        (dict(pilot_power_mw=0.0), "pilot_power_mw"),
        (dict(d_min_m=-1.0), "d_min_m"),
        (dict(d_min_m=50.0), "d_min_m"),
        (dict(q_floor=0.0), "q_floor"),
        (dict(ap_height_m=10.0), "ap_height_m"),
        (dict(ue_height_m=5.0), "ue_height_m"),
        (dict(carrier_ghz=3.5), "carrier_ghz"),
        (dict(asd_deg=100.0), "asd_deg"),
    ],
)
def test_bad_config_raises_naming_it(kw, name):
    with pytest.raises(ValueError, match=name):
        nm.MobileAPNumPy(**kw)


def test_bad_actions_and_control_raise():
    npe = nm.MobileAPNumPy(n_aps=3, n_antennas=4, n_ues=3)
    npe.reset()
    with pytest.raises(ValueError, match="actions"):
        npe.step(np.zeros((3, 5)))
    env, params = envs.make("mobile_ap", dict(TINY, control="move"))
    with pytest.raises(ValueError, match="control"):
        nm.MobileAPNumPy.from_env(env, params)


def test_reset_draws_feasible_drops():
    npe = nm.MobileAPNumPy(n_aps=4, n_antennas=2, n_ues=3, seed=2)
    for _ in range(5):
        obs = npe.reset()
        assert obs.shape == (npe.n_agents, npe.obs_dim)
        assert npe.global_state().shape == (npe.state_dim,)
        assert np.all((npe.ap >= 0) & (npe.ap <= npe.side))
        d = np.sqrt(np.sum(nm.wrapped_displacement(npe.ap, npe.ue, npe.side) ** 2, -1))
        assert np.all(d >= npe.d_min)
        np.testing.assert_allclose(npe.rho, npe.p_ap / npe.K)
