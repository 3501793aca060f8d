"""AP-selection environment (APS-GNN paper): physics against NumPy float64, dynamics, interface."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cfmimo_jax.envs import ap_selection as aps
from cfmimo_jax.envs.jaxmarl import JaxMARLAdapter
from cfmimo_jax.geometry import waypoint_init, waypoint_step
from cfmimo_jax.pathloss import evaluate_shadowing, shadowing_field, uma_los_pathloss_db
from cfmimo_jax.power import ap_power_consumption

L, K, T, W, H = 5, 3, 3, 2, 2


@pytest.fixture(scope="module")
def env_params():
    return aps.make(
        {"n_aps": L, "n_ues": K, "window_slots": T, "n_windows": W, "history": H, "radius_m": 150}
    )


@pytest.fixture(scope="module")
def jitted(env_params):
    env, params = env_params
    return jax.jit(env.reset), jax.jit(env.step)


# ---- physics against NumPy -------------------------------------------------------------------


def np_mrt_se(h, A, rho):
    """Seed 003 eqs. (5)-(8) with loops: MRT, equal power over each AP's served UEs."""
    Lh, Kh = h.shape
    w = np.zeros((Lh, Kh), complex)
    for m in range(Lh):
        n = A[m].sum()
        for k in range(Kh):
            if A[m, k]:
                w[m, k] = np.sqrt(rho / n) * np.conj(h[m, k]) / abs(h[m, k])
    se = np.zeros(Kh)
    for k in range(Kh):
        sig = abs(sum(h[m, k] * w[m, k] for m in range(Lh))) ** 2
        intf = sum(abs(sum(h[m, k] * w[m, j] for m in range(Lh))) ** 2 for j in range(Kh) if j != k)
        se[k] = np.log2(1 + sig / (intf + 1))
    return se


def test_mrt_se_matches_numpy():
    rng = np.random.default_rng(0)
    for trial in range(4):
        h = (rng.normal(size=(6, 4)) + 1j * rng.normal(size=(6, 4))) * 3
        A = rng.uniform(size=(6, 4)) < 0.5
        A[0, :] = False if trial == 0 else A[0, :]  # an AP serving nobody
        A[:, 1] = False if trial == 1 else A[:, 1]  # a UE served by nobody
        rho = 2.5
        se, _ = aps.mrt_se(jnp.asarray(h), jnp.asarray(A), rho)
        np.testing.assert_allclose(np.asarray(se), np_mrt_se(h, A, rho), rtol=1e-10, atol=1e-12)
    if True:
        assert np.asarray(aps.mrt_se(jnp.asarray(h), jnp.zeros((6, 4), bool), 1.0)[0]).max() == 0


def test_uma_los_pathloss_formula():
    f, hb, hu = 3.5, 25.0, 1.5
    dbp = 4 * (hb - 1) * (hu - 1) * f * 1e9 / 299_792_458.0
    for d2 in [5.0, 10.0, 50.0, 0.9 * dbp, 1.1 * dbp, 2000.0]:
        d2c = max(d2, 10.0)
        d3 = np.hypot(d2c, hb - hu)
        if d2c <= dbp:
            want = 28 + 22 * np.log10(d3) + 20 * np.log10(f)
        else:
            want = 28 + 40 * np.log10(d3) + 20 * np.log10(f) - 9 * np.log10(dbp**2 + (hb - hu) ** 2)
        got = float(uma_los_pathloss_db(jnp.asarray(d2), hb, hu, f))
        assert got == pytest.approx(want, abs=1e-9)


def test_channels_match_formula(env_params):
    env, params = env_params
    rng = np.random.default_rng(1)
    ap = rng.uniform(-100, 100, (L, 2))
    ue = rng.uniform(-100, 100, (K, 2))
    field = shadowing_field(jax.random.PRNGKey(3), L, 16, 37.0)
    h = np.asarray(aps.channels(params, jnp.asarray(ap), jnp.asarray(ue), field))
    w, a, b = (np.asarray(x) for x in field)
    noise = -174 + 10 * np.log10(20e6) + 9
    rho_db = 10 * np.log10(200.0) - noise
    lam = 299_792_458.0 / 2e9
    for m in range(L):
        for k in range(K):
            d2 = np.linalg.norm(ue[k] - ap[m])
            d3 = np.hypot(d2, 18.5)
            pl = float(uma_los_pathloss_db(jnp.asarray(d2), 20.0, 1.5, 2.0))
            sh = (
                6.0
                / np.sqrt(16)
                * sum(
                    a[m, s] * np.cos(w[s] @ ue[k]) + b[m, s] * np.sin(w[s] @ ue[k])
                    for s in range(16)
                )
            )
            want = 10 ** ((rho_db - pl + sh) / 20) * np.exp(-2j * np.pi * d3 / lam)
            assert h[m, k] == pytest.approx(want, rel=1e-8)


def test_channels_over_leading_slot_axes_equal_a_loop(env_params):
    """``channels`` / ``mrt_se`` of positions ``[T, K, 2]`` (all slots of a window at once, as
    the environment computes them) equal the per-slot calls, and ``mrt_se`` the NumPy loop."""
    env, params = env_params
    rng = np.random.default_rng(5)
    ap = jnp.asarray(rng.uniform(-100, 100, (L, 2)))
    ue = jnp.asarray(rng.uniform(-100, 100, (3, K, 2)))
    field = shadowing_field(jax.random.PRNGKey(4), L, 16, 37.0)
    h = np.asarray(aps.channels(params, ap, ue, field))
    assert h.shape == (3, L, K)
    A = rng.uniform(size=(L, K)) < 0.5
    se = np.asarray(aps.mrt_se(jnp.asarray(h), jnp.asarray(A), 1.0)[0])
    for t in range(3):
        np.testing.assert_allclose(
            h[t], np.asarray(aps.channels(params, ap, ue[t], field)), rtol=1e-12
        )
        np.testing.assert_allclose(se[t], np_mrt_se(h[t], A, 1.0), rtol=1e-10, atol=1e-12)


def test_shadowing_field_statistics():
    """Random-Fourier-feature fields: variance std^2, correlation exp(-d^2 / (2 ell^2)) over
    frequency draws, independent across APs."""
    ell, std = 37.0, 6.0
    pts = jnp.array([[0.0, 0.0], [ell, 0.0], [0.0, 3 * ell]])
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    F = jax.vmap(lambda k: evaluate_shadowing(shadowing_field(k, 20, 64, ell), pts, std))(keys)
    F = np.asarray(F)  # [200 draws, 20 APs, 3 points]
    flat = F.reshape(-1, 3)
    assert np.var(flat[:, 0]) == pytest.approx(std**2, rel=0.08)
    corr = np.corrcoef(flat.T)
    assert corr[0, 1] == pytest.approx(np.exp(-0.5), abs=0.05)
    assert abs(corr[0, 2]) < 0.06
    # two APs of one network at the same point: independent fields
    assert abs(np.corrcoef(F[:, 0, 0], F[:, 1, 0])[0, 1]) < 0.2


def test_random_waypoint():
    key = jax.random.PRNGKey(0)
    n, R, dt = 400, 100.0, 0.5
    st = waypoint_init(key, n, R, 5.0, 1.0, 10.0)
    vmax = 10.0

    @jax.jit
    def run(st, key):
        def body(s, k):
            s2 = waypoint_step(k, s, dt, R, 5.0, 1.0, vmax, 0.5, 3.0)
            return s2, (s.pos, s2.pos, s.pause > 0, s2.speed, s2.pause)

        return jax.lax.scan(body, st, jax.random.split(key, 200))

    _, (p0, p1, paused, speed, pause) = run(st, jax.random.PRNGKey(1))
    p0, p1, paused = np.asarray(p0), np.asarray(p1), np.asarray(paused)
    step = np.linalg.norm(p1 - p0, axis=-1)
    assert np.all(np.linalg.norm(p1, axis=-1) <= R + 1e-6)  # stays in the disc
    assert np.all(step <= vmax * dt + 1e-9)
    assert np.all(step[paused] == 0)  # pausing UEs stand still
    assert paused.mean() > 0.01  # pauses happen
    assert np.all((np.asarray(speed) >= 1.0) & (np.asarray(speed) <= vmax))
    assert step[~paused].mean() > 0.5 * dt  # and UEs move


def test_ap_power_model():
    p = ap_power_consumption(jnp.array([True, False, True]), 0.2, 0.4, 0.2)
    np.testing.assert_allclose(np.asarray(p), [0.7, 0.0, 0.7])


# ---- graph -----------------------------------------------------------------------------------


def test_graph_same_ap_same_ue_edges(env_params):
    env, _ = env_params
    g = env.graph()
    s, r, t = (np.asarray(x) for x in (g.senders, g.receivers, g.edge_type))
    assert len(s) == L * K * (K - 1) + K * L * (L - 1)
    assert np.all(s != r)
    sa, sk = np.divmod(s, K)
    ra, rk = np.divmod(r, K)
    assert np.all((t == 0) == (sa == ra)) and np.all((t == 1) == (sk == rk))
    assert np.all((sa == ra) ^ (sk == rk))
    assert len(set(zip(s.tolist(), r.tolist(), strict=True))) == len(s)  # no duplicates
    assert g.to_jraph().n_edge[0] == len(s)


# ---- dynamics and interface ------------------------------------------------------------------


def test_episode_truncation_and_autoreset(env_params, jitted):
    env, params = env_params
    reset, step = jitted
    obs, st = reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (L * K, H, 1)
    a = jnp.ones((L * K,), jnp.int32)
    for t in range(1, W + 1):
        prev = obs
        obs, st, r, done, info = step(jax.random.PRNGKey(t), st, a, params)
        assert bool(done) == (t == W)
        assert bool(info["truncated"]) == (t == W) and not bool(info["terminated"])
    assert int(st.window) == 0  # fresh episode
    assert not np.allclose(np.asarray(obs), np.asarray(info["final_obs"]))
    assert not np.allclose(np.asarray(prev), np.asarray(info["final_obs"]))


def test_reward_cost_metrics(env_params, jitted):
    env, params = env_params
    reset, step = jitted
    obs, st = reset(jax.random.PRNGKey(5), params)
    a = np.zeros((L, K), np.int32)
    a[1, :] = 1
    a[3, 0] = 1
    obs2, st2, r, done, info = step(jax.random.PRNGKey(6), st, jnp.asarray(a.reshape(-1)), params)
    r = np.asarray(r).reshape(L, K)
    np.testing.assert_array_equal(r, -np.array([0, 1, 0, 1, 0])[:, None] * np.ones((1, K)))
    se = np.asarray(info["se"])
    cost = np.asarray(info["cost"]).reshape(L, K)
    np.testing.assert_allclose(cost, np.maximum(params.se_target - se, 0)[None].repeat(L, 0))
    assert float(info["active_aps"]) == 2
    assert float(info["power_w"]) == pytest.approx(2 * (0.2 + 0.2 / 0.4))
    assert float(info["mean_se"]) == pytest.approx(se.mean())
    assert float(info["frac_target"]) == pytest.approx(np.mean(se >= params.se_target))


def test_window_se_matches_numpy_replay(env_params):
    """Replay the slots of one window with NumPy from the mobility the env produced."""
    env, params = env_params
    _, st = env.reset(jax.random.PRNGKey(2), params)
    A = jnp.asarray(np.random.default_rng(0).uniform(size=(L, K)) < 0.6)
    ue, hist, se = env._play_window(jax.random.PRNGKey(9), st, A, params)
    # positions slot by slot, recomputed with the same keys
    ue_t = st.ue
    for t, k in enumerate(jax.random.split(jax.random.PRNGKey(9), T)):
        from cfmimo_jax.envs.ap_selection import KMH

        ue_t = waypoint_step(k, ue_t, 0.05, 150.0, 5 * KMH, 1 * KMH, 10 * KMH, 0.3, 2.0)
        h = np.asarray(aps.channels(params, st.ap_pos, ue_t.pos, st.field))
        np.testing.assert_allclose(np.asarray(se[t]), np_mrt_se(h, np.asarray(A), 1.0), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(ue.pos), np.asarray(ue_t.pos))


def test_k_strongest_and_all_on(env_params, jitted):
    env, params = env_params
    obs, _ = jitted[0](jax.random.PRNGKey(4), params)
    cur = np.asarray(obs[:, -1, 0]).reshape(L, K)
    for k in range(1, L + 1):
        a = np.asarray(aps.k_strongest(obs, L, K, k)).reshape(L, K)
        assert np.all(a.sum(0) == k)
        for u in range(K):
            chosen = cur[a[:, u] == 1, u]
            other = cur[a[:, u] == 0, u]
            assert other.size == 0 or chosen.min() >= other.max()
    assert np.all(np.asarray(aps.all_on(obs)) == 1)
    with pytest.raises(ValueError, match="k must"):
        aps.k_strongest(obs, L, K, 0)


def test_vmap_equals_loop_and_determinism(env_params, jitted):
    env, params = env_params
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    obs_v, st_v = jax.vmap(env.reset, (0, None))(keys, params)
    a = jnp.ones((3, L * K), jnp.int32)
    out_v = jax.vmap(env.step, (0, 0, 0, None))(keys, st_v, a, params)
    for i in range(3):
        obs_i, st_i = jitted[0](keys[i], params)
        np.testing.assert_allclose(np.asarray(obs_v[i]), np.asarray(obs_i), rtol=1e-12)
        out_i = jitted[1](keys[i], st_i, a[i], params)
        np.testing.assert_allclose(np.asarray(out_v[2][i]), np.asarray(out_i[2]))
        np.testing.assert_allclose(np.asarray(out_v[4]["se"][i]), np.asarray(out_i[4]["se"]))
    again = jitted[0](keys[0], params)
    np.testing.assert_array_equal(np.asarray(again[0]), np.asarray(jitted[0](keys[0], params)[0]))


def test_step_batch_equals_vmapped_step(env_params):
    """``step_batch`` (one ``lax.cond`` for the batch's resets) equals ``vmap(step)`` over
    episode ends, including a batch where only some environments end (staggered windows)."""
    env, params = env_params
    keys = jax.random.split(jax.random.PRNGKey(11), 4)
    _, st = jax.vmap(env.reset, (0, None))(keys, params)
    st = dataclasses.replace(st, window=jnp.array([0, 1, 0, 1], jnp.int32))  # staggered
    v_step = jax.jit(jax.vmap(env.step, (0, 0, 0, None)))
    b_step = jax.jit(env.step_batch)
    st_v = st_b = st
    rng = np.random.default_rng(0)
    for t in range(2 * W + 1):
        a = jnp.asarray(rng.integers(0, 2, (4, L * K)), jnp.int32)
        ks = jax.random.split(jax.random.PRNGKey(100 + t), 4)
        out_v, out_b = v_step(ks, st_v, a, params), b_step(ks, st_b, a, params)
        st_v, st_b = out_v[1], out_b[1]
        for x, y in zip(jax.tree.leaves(out_v), jax.tree.leaves(out_b)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="actions must have shape"):
        env.step_batch(ks, st_b, jnp.ones((4, 3), jnp.int32), params)


def test_vmap_over_params(env_params):
    """Sweeps vmap over numeric parameters (here the SE target)."""
    env, params = env_params
    targets = jnp.array([0.5, 1.0, 50.0])
    ps = dataclasses.replace(params, se_target=targets)
    axes = jax.tree.map(lambda _: None, params)
    axes = dataclasses.replace(axes, se_target=0)
    obs, st = env.reset(jax.random.PRNGKey(0), params)
    out = jax.vmap(env.step, (None, None, None, axes))(
        jax.random.PRNGKey(1), st, jnp.ones((L * K,), jnp.int32), ps
    )
    frac = np.asarray(out[4]["frac_target"])
    assert frac[2] == 0 and frac[0] >= frac[1]


def test_jaxmarl_adapter_loop(env_params):
    env, params = env_params
    menv = JaxMARLAdapter(env, params)
    assert menv.num_agents == L * K and menv.action_space(menv.agents[0]).n == 2
    obs, state = menv.reset(jax.random.PRNGKey(0))
    assert set(obs) == set(menv.agents)
    key = jax.random.PRNGKey(1)
    for _ in range(W):
        key, k_act, k_step = jax.random.split(key, 3)
        ks = jax.random.split(k_act, menv.num_agents)
        actions = {
            a: jax.random.randint(ks[i], (), 0, menv.action_space(a).n)
            for i, a in enumerate(menv.agents)
        }
        obs, state, rew, dones, info = menv.step(k_step, state, actions)
        assert set(rew) == set(menv.agents) and "__all__" in dones
    assert bool(dones["__all__"])
    with pytest.raises(ValueError, match="missing"):
        menv.step(key, state, {menv.agents[0]: 1})


def test_bad_input():
    with pytest.raises(ValueError, match="n_aps"):
        aps.APSelection(n_aps=0)
    with pytest.raises(ValueError, match="history"):
        aps.APSelection(window_slots=3, history=5)
    with pytest.raises(ValueError, match="unknown"):
        aps.make({"se_targt": 2.0})
    with pytest.raises(ValueError, match="mobility"):
        aps.make({"mobility": "flying"})
    env = aps.APSelection(n_aps=3, n_ues=2, window_slots=2, history=2)
    obs, st = env.reset(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="actions"):
        env.step(jax.random.PRNGKey(0), st, jnp.ones((5,), jnp.int32))
