"""The AP-cooperation scenario ([AP-COOP]): spaces, determinism, heuristics, eq. (12) and the
link count against NumPy, precoders and sum rate against the kernels, config checks, DDQN."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algorithms
from cfmimo_jax import cooperation, envs
from cfmimo_jax.envs import ap_cooperation as apc
from cfmimo_jax.envs import spaces
from cfmimo_jax.processing import cluster_rzf, cluster_serving, mrt_precoders

CONFIG = {
    "n_aps": 8,
    "n_antennas": 2,
    "n_ues": 5,
    "tau_p": 3,
    "side_m": 400.0,
    "max_aps_per_ue": 3,
    "max_neighbours": 3,
    "metric_samples": 2,
    "obs_users": 2,
    "obs_history": 2,
    "episode_steps": 2,
}
B = 6  # environments of the batched checks


@pytest.fixture(scope="module")
def env_params():
    return apc.make(CONFIG)


@pytest.fixture(scope="module")
def jitted(env_params):
    env, _ = env_params
    return jax.jit(env.reset), jax.jit(env.step_env), jax.jit(env.step_batch)


@pytest.fixture(scope="module")
def batch(env_params):
    env, params = env_params
    keys = jax.random.split(jax.random.PRNGKey(0), B)
    return jax.jit(jax.vmap(env.reset, (0, None)))(keys, params)


def _want(idx, mask, bits):
    """NumPy: ``want[m, n]`` = AP m requests n (valid slot, bit set)."""
    M, Q = idx.shape
    want = np.zeros((M, M), bool)
    for m in range(M):
        for q in range(Q):
            if mask[m, q] and bits[m, q]:
                want[m, idx[m, q]] = True
    return want


def _bits(actions, Q):
    a = np.asarray(actions)
    return ((a[..., None] >> np.arange(Q)) & 1).astype(bool)


def test_registry_spaces_and_shapes(env_params, jitted):
    env, params = env_params
    assert "ap_cooperation" in envs.names()
    assert envs.default_config("ap_cooperation") == apc.DEFAULT_CONFIG
    Q = CONFIG["max_neighbours"]
    assert env.n_agents == CONFIG["n_aps"] and env.action_space == spaces.Discrete(2**Q)
    F = CONFIG["obs_users"] + 1 + 5 * Q + CONFIG["obs_history"]
    assert env.observation_space.shape == (F,)
    reset, step_env, _ = jitted
    obs, state = reset(jax.random.PRNGKey(1), params)
    assert obs.shape == (env.n_agents, F)
    assert bool(spaces.contains(env.observation_space, obs))
    actions = spaces.sample(jax.random.PRNGKey(2), env.action_space, (env.n_agents,))
    obs2, state2, reward, term, trunc, info = step_env(
        jax.random.PRNGKey(3), state, actions, params
    )
    assert obs2.shape == obs.shape and reward.shape == (env.n_agents,)
    assert term.shape == trunc.shape == () and not bool(term) and not bool(trunc)
    assert env.global_state(state2).shape == env.global_state_space.shape
    for k in env.eval_metrics + env.progress_metrics + ("requests", "clusters"):
        assert info[k].shape == () and np.isfinite(float(info[k])), k
    assert info["rate"].shape == info["rate_mrt"].shape == info["sinr_db"].shape == (env.K,)
    assert np.all(np.isfinite(np.asarray(reward)))
    # the fixed observation layout: U served SNRs (descending), |K_m| / U, mask, Ibar, I dB
    U = CONFIG["obs_users"]
    o = np.asarray(obs)
    D = np.asarray(state.D)
    np.testing.assert_allclose(o[:, U], D.sum(1) / U)
    assert np.all(np.diff(np.where(o[:, :U] == 0, -np.inf, o[:, :U]), axis=1) <= 0)
    mask = np.asarray(state.mask)
    np.testing.assert_array_equal(o[:, U + 1 : U + 1 + Q], mask.astype(float))
    I_nb = np.asarray(state.I_nb)
    top = np.where(mask, I_nb, 0).max(1, keepdims=True)
    rel = np.where(mask, I_nb / np.where(top > 0, top, 1), 0)
    np.testing.assert_allclose(o[:, U + 1 + Q : U + 1 + 2 * Q], rel, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(state.I_rel), rel, rtol=1e-6)
    assert np.all(o[:, U + 1 + 3 * Q :] == 0)  # no requests, links or history at reset


def test_jit_equals_eager_and_same_key(env_params, jitted):
    env, params = env_params
    reset, step_env, _ = jitted
    a = jnp.arange(env.n_agents, dtype=jnp.int32) % env.action_space.n
    k0, k1 = jax.random.PRNGKey(4), jax.random.PRNGKey(5)
    obs_j, st_j = reset(k0, params)
    out_j = step_env(k1, st_j, a, params)
    # the step eagerly (op by op; an eager reset too would double this test's time)
    out_e = env.step_env(k1, st_j, a, params)
    np.testing.assert_allclose(np.asarray(out_e[0]), np.asarray(out_j[0]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(out_e[2]), np.asarray(out_j[2]), rtol=1e-6, atol=1e-9)
    for k in ("sum_rate", "links", "mean_sinr_db"):
        np.testing.assert_allclose(float(out_e[5][k]), float(out_j[5][k]), rtol=1e-6)
    out_j2 = step_env(k1, *reset(k0, params)[1:], a, params)
    for x, y in zip(jax.tree.leaves(out_j), jax.tree.leaves(out_j2), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    other = step_env(jax.random.PRNGKey(6), st_j, a, params)[5]["sum_rate"]
    assert float(other) != float(out_j[5]["sum_rate"])  # the fading is redrawn every step


def test_heuristics_through_step_batch(env_params, jitted, batch):
    env, params = env_params
    _, _, step_batch = jitted
    obs, st = batch
    idx, mask = np.asarray(st.idx), np.asarray(st.mask)
    mutual = np.array(
        [(lambda w: (w & w.T).sum() / 2)(_want(idx[b], mask[b], mask[b])) for b in range(B)]
    )
    assert mutual.sum() > 0  # the test networks have neighbour pairs to cooperate over
    res = {}
    for name, policy in env.heuristics().items():
        o, s = obs, st
        a = policy(o, s)
        assert a.shape == (B, env.n_agents) and a.dtype == jnp.int32, name
        for t in range(env.episode_steps):
            keys = jax.random.split(jax.random.PRNGKey(10 + t), B)
            o, s, r, done, info = step_batch(keys, s, policy(o, s), params)
            if t == 0:
                res[name] = jax.tree.map(np.asarray, (r, info))
        assert bool(done.all()) and int(s.t.max()) == 0, name  # truncated, then auto-reset
        assert info["final_obs"].shape == o.shape
    r0, i0 = res["none"]
    np.testing.assert_array_equal(i0["links"], 0)
    np.testing.assert_array_equal(i0["coop_rate"], 0)
    np.testing.assert_array_equal(r0, 0)
    np.testing.assert_allclose(i0["sum_rate"], i0["sum_rate_mrt"], rtol=1e-12)
    _, i_full = res["full"]
    np.testing.assert_array_equal(i_full["links"], mutual)  # every mutual neighbour pair
    np.testing.assert_array_equal(i_full["coop_rate"], (mask.sum((1, 2)) > 0).astype(float))
    assert np.all(i_full["clusters"][mutual > 0] >= 1)
    assert np.all(i_full["clusters"] <= i_full["links"])
    _, i_thr = res["threshold"]
    assert np.all(i_thr["requests"] <= i_full["requests"])
    assert np.all(i_thr["links"] <= i_full["links"])
    want = (np.asarray(st.I_nb) > 10 ** (env.threshold_db / 10)) & mask
    np.testing.assert_array_equal(i_thr["requests"], want.sum((1, 2)))
    # both baselines see the same channels: sum_rate_mrt does not depend on the policy
    np.testing.assert_allclose(i_full["sum_rate_mrt"], i0["sum_rate"], rtol=1e-12)


def test_no_cooperation_is_mrt_and_full_is_cluster_rzf(env_params, jitted, batch):
    """Step sum rates against the kernels on the step's own channels (``env.channels``)."""
    env, params = env_params
    _, step_env, _ = jitted
    st = jax.tree.map(lambda x: x[0], batch[1])
    key = jax.random.PRNGKey(20)
    H, Hhat = env.channels(key, st, params)
    D = np.asarray(st.D)
    P = params.ap_power_mw
    rho_own = P * D / np.maximum(D.sum(1, keepdims=True), 1)
    # no cooperation: MRT (eq. (18)) on the estimates, equal power over K_m
    none = jnp.zeros((env.n_agents,), jnp.int32)
    info = step_env(key, st, none, params)[5]
    W0 = mrt_precoders(Hhat, st.D)
    want = cooperation.sum_rate(H, W0, jnp.asarray(rho_own))
    np.testing.assert_allclose(float(info["sum_rate"]), float(want), rtol=1e-10)
    np.testing.assert_allclose(float(info["sum_rate_mrt"]), float(want), rtol=1e-10)
    # full cooperation: cluster RZF of the mutual links, each AP on its own UEs (serving)
    full = jnp.full((env.n_agents,), env.action_space.n - 1, jnp.int32)
    info = step_env(key, st, full, params)[5]
    bits = jnp.asarray(st.mask)
    labels = cooperation.cooperation_clusters(st.idx, st.mask, bits)
    W = cluster_rzf(Hhat, labels, st.D, params.rzf_alpha) * st.D[..., None]
    want = cooperation.sum_rate(H, W, jnp.asarray(rho_own))
    np.testing.assert_allclose(float(info["sum_rate"]), float(want), rtol=1e-10)
    sinr = cooperation.downlink_sinr(H, W, jnp.asarray(rho_own))
    np.testing.assert_allclose(
        float(info["mean_sinr_db"]), np.mean(10 * np.log10(sinr)), rtol=1e-10
    )


def test_cluster_transmit_reading(env_params, batch):
    """``transmit="cluster"``: every AP of a cluster sends to all of K_C, power P / |K_C|."""
    env0, params = env_params
    env = apc.APCooperation(**{**_sizes(), "transmit": "cluster"})
    st = jax.tree.map(lambda x: x[0], batch[1])
    key = jax.random.PRNGKey(21)
    full = jnp.full((env.n_agents,), env.action_space.n - 1, jnp.int32)
    info = env.step_env(key, st, full, params)[5]  # eager
    H, Hhat = env.channels(key, st, params)
    labels = cooperation.cooperation_clusters(st.idx, st.mask, st.mask)
    S = np.asarray(cluster_serving(labels, st.D))
    rho = params.ap_power_mw * S / np.maximum(S.sum(1, keepdims=True), 1)
    W = cluster_rzf(Hhat, labels, st.D, params.rzf_alpha)
    want = cooperation.sum_rate(H, W, jnp.asarray(rho))
    np.testing.assert_allclose(float(info["sum_rate"]), float(want), rtol=1e-10)


def _sizes():
    cfg = {**apc.DEFAULT_CONFIG, **CONFIG}
    for k in apc._PARAMS:
        cfg.pop(k)
    return cfg


def test_reward_eq12_and_links_against_numpy(env_params, jitted, batch):
    env, params = env_params
    _, step_env, _ = jitted
    Q = env.Q
    for b in range(3):
        st = jax.tree.map(lambda x, b=b: x[b], batch[1])
        actions = jax.random.randint(jax.random.PRNGKey(30 + b), (env.n_agents,), 0, 2**Q)
        obs, st2, reward, term, trunc, info = step_env(
            jax.random.PRNGKey(40 + b), st, actions, params
        )
        idx, mask, D = np.asarray(st.idx), np.asarray(st.mask), np.asarray(st.D)
        bits = _bits(actions, Q) & mask  # empty slots ignored
        want = _want(idx, mask, bits)
        agree = want & want.T
        links = sum(agree[m, n] for m in range(env.M) for n in range(m + 1, env.M))
        assert float(info["links"]) == links
        assert float(info["requests"]) == bits.sum()
        np.testing.assert_allclose(float(info["coop_rate"]), bits.sum() / max(mask.sum(), 1))
        # eq. (12) from the info's per-UE rates, in float64 NumPy
        R, R0 = np.asarray(info["rate"], np.float64), np.asarray(info["rate_mrt"], np.float64)
        own, own0 = D @ R, D @ R0
        gain = np.where(own0 > 0, (own - own0) / np.where(own0 > 0, own0, 1), 0.0)
        rel = np.asarray(st.I_rel, np.float64)
        r = (
            params.alpha_1 * gain
            - params.alpha_2 * bits.sum(1)
            - params.alpha_3 * (rel * bits).sum(1)
        )
        np.testing.assert_allclose(np.asarray(reward), r, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            float(info["efficiency"]),
            (R.sum() - R0.sum()) / links if links else 0.0,
            rtol=1e-9,
        )
        # the observation's cooperation vector, links and gain history
        U = env.U
        o = np.asarray(obs)
        np.testing.assert_array_equal(o[:, U + 1 + 3 * Q : U + 1 + 4 * Q], bits)
        linked = np.array(
            [[agree[m, idx[m, q]] & mask[m, q] for q in range(Q)] for m in range(env.M)]
        )
        np.testing.assert_array_equal(o[:, U + 1 + 4 * Q : U + 1 + 5 * Q], linked)
        np.testing.assert_allclose(o[:, U + 1 + 5 * Q], gain, rtol=1e-9, atol=1e-12)
        assert np.all(o[:, U + 2 + 5 * Q :] == 0)
    # alpha values enter as documented (params is a pytree: a replaced value, same program)
    p2 = dataclasses.replace(params, alpha_1=0.0, alpha_2=1.0, alpha_3=0.0)
    reward = step_env(jax.random.PRNGKey(40), st, actions, p2)[2]
    np.testing.assert_allclose(np.asarray(reward), -bits.sum(1))


def test_bad_config_names_the_key():
    for bad, match in (
        ({"n_ap": 4}, "n_ap"),
        ({"n_aps": 1}, "n_aps"),
        ({"n_ues": 0}, "n_ues"),
        ({"tau_p": 200}, "tau_p"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.5}, "delta"),
        ({"max_neighbours": 11}, "max_neighbours"),
        ({"max_aps_per_ue": 0}, "max_aps_per_ue"),
        ({"neighbour_ratio": -0.1}, "neighbour_ratio"),
        ({"neighbour_per_ap": "yes"}, "neighbour_per_ap"),
        ({"rzf_alpha": 0.0}, "rzf_alpha"),
        ({"ap_power_mw": -1.0}, "ap_power_mw"),
        ({"alpha_2": float("nan")}, "alpha_2"),
        ({"alpha_3": "big"}, "alpha_3"),
        ({"obs_scale_db": 0.0}, "obs_scale_db"),
        ({"transmit": "everyone"}, "transmit"),
        ({"metric_samples": 0}, "metric_samples"),
        ({"episode_steps": 1.5}, "episode_steps"),
        ({"side_m": 0}, "side_m"),
    ):
        with pytest.raises(ValueError, match=match):
            apc.make({**CONFIG, **bad})


def test_ddqn_trains_end_to_end(env_params):
    env, params = env_params
    cfg = dict(
        n_envs=2,
        n_steps=2,
        n_updates=4,
        updates_per_chunk=2,
        buffer_size=64,
        batch_size=8,
        learning_starts=8,
        hidden=[16, 8],
        dropout=0.1,
        shared_parameters=False,
        target_period=4,
        eps_start=0.8,
        eps_end=0.01,
        eps_decay_steps=8,
    )
    tr = algorithms.make_train("ddqn", cfg, env, params)
    rs, metrics = jax.jit(tr.train)(jax.random.PRNGKey(7))
    for k in ("td_loss", "sum_rate", "links", "coop_rate"):
        v = np.asarray(metrics[k])
        assert v.shape[0] == cfg["n_updates"] and np.all(np.isfinite(v)), k
    obs, _ = env.reset(jax.random.PRNGKey(8), params)
    a = tr.act(rs.params, obs)
    assert a.shape == (env.n_agents,) and bool(spaces.contains(env.action_space, a))
