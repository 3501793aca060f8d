"""Power-control testbed environment: rewards against NumPy float64 closed forms, spaces,
batching, determinism, auto-reset, heuristics (the optimiser oracle beats full and fractional)
and configuration errors.

Every variant is exercised through one jitted program (``_rollout``): reset a batch of setups,
apply each heuristic and a random action through ``step_batch``. The physics is checked
against the NumPy references of ``tests/reference.py`` (estimation statistics, the UatF SINR
of book Thm 5.4, the downlink closed form of book Cor. 6.3) with the pilots at ``p_max`` and the
action's data powers.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from cfmimo_jax import envs
from cfmimo_jax.envs import power_control as pc
from cfmimo_jax.envs import spaces
from cfmimo_jax.setup import generate_setup

CFG = dict(
    n_aps=5,
    n_antennas=2,
    n_ues=4,
    tau_p=2,
    tau_c=50,
    side_m=300.0,
    episode_steps=3,
    opt_steps=60,
    features="gains",  # the raw-gain layout (the coupling features have their own test)
    power_db_range=None,  # linear actions (the dB map has its own test)
)
VARIANTS = {
    "ul": dict(link="uplink"),
    "ul_disc_asd": dict(link="uplink", action="discrete", n_levels=4, asd=15.0),
    "dl": dict(link="downlink"),
    "dl_disc": dict(link="downlink", action="discrete"),
}
N_ENVS = 3
POLICIES = ("full", "fractional", "optimised", "random")


def _env(name):
    return pc.make({**CFG, **VARIANTS[name]})


@functools.cache
def _rollout(name, seed=7):
    """``(env, params, obs, states, actions, outs)``: ``N_ENVS`` fresh setups and one step of
    each policy, all policies through a single ``step_batch`` on the setups repeated (one
    compiled program per variant: the setup generator dominates the compile time)."""
    env, params = _env(name)
    hs = env.heuristics()
    n_pol = len(POLICIES)

    def run(key):
        k_reset, k_act, k_step = jax.random.split(key, 3)
        obs, st = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, N_ENVS), params)
        acts = {n: hs[n](obs, st) for n in POLICIES[:3]}
        acts["random"] = spaces.sample(k_act, env.action_space, (N_ENVS, env.n_agents))
        a_all = jnp.concatenate([acts[n] for n in POLICIES])
        st_all = jax.tree.map(lambda a: jnp.concatenate([a] * n_pol), st)
        ks = jax.random.split(k_step, N_ENVS * n_pol)
        return obs, st, acts, env.step_batch(ks, st_all, a_all, params)

    obs, st, acts, out = jax.device_get(jax.jit(run)(jax.random.PRNGKey(seed)))
    outs = {
        n: jax.tree.map(lambda a, i=i: a[i * N_ENVS : (i + 1) * N_ENVS], out)
        for i, n in enumerate(POLICIES)
    }
    return env, params, obs, st, acts, outs


@functools.cache
def _jitted(name):
    """Unbatched ``reset`` and ``step``, jitted once per variant."""
    env, params = _env(name)
    return jax.jit(env.reset), jax.jit(env.step)


def _one(tree, i):
    return jax.tree.map(lambda a: np.asarray(a)[i], tree)


# ---- NumPy float64 reference ----------------------------------------------------------------


def np_uplink_se(R, B, pilot, D, q, p, tau_p, tau_c, lsfd):
    """Distributed MR uplink closed form (book Cor. 5.6) with pilot powers ``q`` and data powers
    ``p``: ``E[g_ki]_l = sqrt(q_k q_i) tau_p tr(R_lk Psi_{l,t_k}^{-1} R_li)`` (same pilot),
    ``E|g_ki|^2_l = tr(B_lk R_li) + |E[g_ki]_l|^2``, ``E||v_lk||^2 = tr(B_lk)``; the SINR of book
    Thm 5.4 (``ref.distributed_uplink_sinr``)."""
    L, K, N, _ = R.shape
    q = ref._powers(q, K)
    Psi = ref.psi_matrices(R, pilot, q, tau_p)
    m = np.zeros((K, K, L), complex)
    qq = np.zeros((K, K, L))
    F = np.zeros((K, L))
    for k in range(K):
        for l in range(L):
            if not D[l, k]:
                continue
            F[k, l] = np.trace(B[l, k]).real
            for i in range(K):
                if pilot[i] == pilot[k]:
                    m[k, i, l] = (
                        np.sqrt(q[k] * q[i])
                        * tau_p
                        * np.trace(R[l, k] @ np.linalg.solve(Psi[l, pilot[k]], R[l, i]))
                    )
                qq[k, i, l] = np.trace(B[l, k] @ R[l, i]).real + abs(m[k, i, l]) ** 2
    sinr, _ = ref.distributed_uplink_sinr(m, qq, F, D, p, lsfd)
    return ref.prelog(tau_p, tau_c) * np.log2(1.0 + sinr)


def np_powers(env, st, a):
    """The action -> power maps of the module docstring, with loops."""
    L, K = env.L, env.K
    D = np.asarray(st.D)
    a = np.asarray(a) if env.action == "discrete" else np.asarray(a, np.float64)
    if env.uplink:
        if env.action == "discrete":
            return np.array([env.p_max * a[k] / (env.n_levels - 1) for k in range(K)])
        return np.clip(a[:, 0], 0, env.p_max)
    rho = np.zeros((L, K))
    if env.action == "discrete":
        split = ref.fractional_downlink(10 ** (np.asarray(st.gain_db) / 10), D, env.rho_max)
        for l in range(L):
            rho[l] = a[l] / (env.n_levels - 1) * split[l]
        return rho
    for l in range(L):
        w = [a[l, k] if D[l, k] else 0.0 for k in range(K)]
        rho[l] = env.rho_max * np.array(w) / max(1.0, sum(w))
    return rho


def np_se(env, st, a):
    R, pilot, D = np.asarray(st.R), np.asarray(st.pilot), np.asarray(st.D)
    B, _ = ref.estimation_statistics(R, pilot, env.p_max, env.tau_p)
    power = np_powers(env, st, a)
    if env.uplink:
        se = np_uplink_se(R, B, pilot, D, env.p_max, power, env.tau_p, env.tau_c, env.lsfd)
    else:
        se = ref.downlink_se_mr_closed_form(
            R, B, pilot, D, power, env.tau_p, env.tau_c, p=env.p_max
        )
    return se, power


@pytest.mark.parametrize("name", list(VARIANTS))
def test_reward_matches_numpy_closed_form(name):
    env, params, obs, st, acts, outs = _rollout(name)
    for pol in POLICIES:
        _, _, reward, done, info = outs[pol]
        for i in range(2):
            se, power = np_se(env, _one(st, i), _one(acts[pol], i))
            np.testing.assert_allclose(info["se"][i], se, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(reward[i], np.full(env.n_agents, se.sum()), rtol=1e-9)
            assert info["sum_se"][i] == pytest.approx(se.sum(), rel=1e-9)
            assert info["min_se"][i] == pytest.approx(se.min(), rel=1e-9)
            pmax = env.p_max * env.K if env.uplink else env.rho_max * env.L
            assert info["power_frac"][i] == pytest.approx(power.sum() / pmax, rel=1e-9)
        assert not done.any()


def test_lsfd_reward_matches_numpy_and_beats_plain_sum():
    """``lsfd=True`` (optimal LSFD, book eq. (5.30)) on the setups and random powers of the
    ``a = 1`` rollout: equals NumPy, and no UE's SE is below its ``a = 1`` SE."""
    env, params, obs, st, acts, outs = _rollout("ul")
    env_lsfd, _ = pc.make({**CFG, **VARIANTS["ul"], "lsfd": True})
    assert env_lsfd.lsfd
    se_fn = jax.jit(jax.vmap(lambda s, a: env_lsfd.se(s, env_lsfd.powers(s, a))))
    got = np.asarray(se_fn(jax.tree.map(jnp.asarray, st), jnp.asarray(acts["random"])))
    for i in range(N_ENVS):
        s = _one(st, i)
        B = ref.estimation_statistics(s.R, s.pilot, env.p_max, env.tau_p)[0]
        p = np_powers(env, s, _one(acts["random"], i))
        want = np_uplink_se(s.R, B, s.pilot, s.D, env.p_max, p, env.tau_p, env.tau_c, True)
        np.testing.assert_allclose(got[i], want, rtol=1e-9)
        assert np.all(got[i] >= outs["random"][4]["se"][i] * (1 - 1e-9))


def test_full_power_equals_kernel_closed_forms():
    """At full power (data = pilot powers) the env's SE is the library's closed forms."""
    from cfmimo_jax.se import downlink_se_mr_closed_form, uplink_se_mr_closed_form

    for name in ("ul", "dl"):
        env, params, obs, st, acts, outs = _rollout(name)
        s = _one(st, 0)
        B = ref.estimation_statistics(s.R, s.pilot, env.p_max, env.tau_p)[0]
        power = np_powers(env, s, _one(acts["full"], 0))
        if env.uplink:
            want = uplink_se_mr_closed_form(s.R, B, s.pilot, s.D, power, env.tau_p, env.tau_c)
            ref_want = ref.uplink_se_mr_closed_form(
                s.R, B, s.pilot, s.D, power, env.tau_p, env.tau_c
            )
            np.testing.assert_allclose(want, ref_want, rtol=1e-9)
        else:
            want = downlink_se_mr_closed_form(
                s.R, B, s.pilot, s.D, power, env.tau_p, env.tau_c, p=env.p_max
            )
            assert np.allclose(power.sum(axis=1), env.rho_max)  # the whole budget
        np.testing.assert_allclose(outs["full"][4]["se"][0], want, rtol=1e-9)


def test_reset_draws_the_books_setup():
    env, params, obs, st, acts, outs = _rollout("ul_disc_asd")
    keys = jax.random.split(jax.random.split(jax.random.PRNGKey(7), 3)[0], N_ENVS)
    deg = np.pi / 180
    s = generate_setup(keys[1], 5, 4, 2, 2, 15 * deg, 15 * deg, side=300.0)
    np.testing.assert_allclose(st.R[1], s.R, rtol=1e-12)
    np.testing.assert_array_equal(st.D[1], s.D)
    np.testing.assert_array_equal(st.pilot[1], s.pilot)
    assert not np.allclose(st.gain_db[0], st.gain_db[1])  # a new setup per reset


# ---- interface ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_shapes_spaces_and_observation_layout(name):
    env, params, obs, st, acts, outs = _rollout(name)
    L, K, A = env.L, env.K, env.n_agents
    assert A == (K if env.uplink else L)
    assert obs.shape == (N_ENVS, A) + env.obs_shape
    assert env.obs_shape == ((2 * L + 3,) if env.uplink else (5 * K,))
    assert obs.dtype == np.float64
    for pol in POLICIES:
        spaces.check_actions(env.action_space, acts[pol], A, batch_ndim=1)
        assert bool(spaces.contains(env.action_space, acts[pol])), pol
        o2, st2, reward, done, info = outs[pol]
        assert o2.shape == obs.shape and reward.shape == (N_ENVS, A) and done.shape == (N_ENVS,)
        assert info["se"].shape == (N_ENVS, K) and info["sum_se"].shape == (N_ENVS,)
        assert set(env.eval_metrics) <= set(info) and set(env.progress_metrics) <= set(info)
        assert info["final_global_state"].shape == (N_ENVS,) + env.global_state_space.shape
    # layout, after the random step: previous powers and SEs are those of that step
    o2, st2, _, _, info = outs["random"]
    s = _one(st2, 0)
    g = (s.gain_db - params.obs_offset_db) / params.obs_scale_db
    load = np.array([np.sum(s.pilot == s.pilot[k]) for k in range(K)]) / K
    se = info["se"][0] / params.obs_se_scale
    power = np_powers(env, _one(st, 0), _one(acts["random"], 0))
    if env.uplink:
        want = np.concatenate(
            [g.T, s.D.T, load[:, None], power[:, None] / env.p_max, se[:, None]], axis=1
        )
        gs_power = power / env.p_max
    else:
        rep = np.ones((L, 1))
        want = np.concatenate([g, s.D, rep * load, power / env.rho_max, rep * se], axis=1)
        gs_power = power.reshape(-1) / env.rho_max
    np.testing.assert_allclose(o2[0], want, rtol=1e-12, atol=1e-12)
    gs = np.asarray(env.global_state(jax.tree.map(jnp.asarray, s)))
    want_gs = np.concatenate([g.reshape(-1), s.D.reshape(-1), gs_power, se])
    np.testing.assert_allclose(gs, want_gs, rtol=1e-12, atol=1e-12)
    # at reset the previous powers are full power
    full = np_powers(env, _one(st, 0), _one(acts["full"], 0))
    np.testing.assert_allclose(st.power[0], full, rtol=1e-12)
    np.testing.assert_allclose(st.se[0], outs["full"][4]["se"][0], rtol=1e-12)


def test_vmap_equals_loop_same_key_and_auto_reset():
    env, params, obs_b, st_b, acts, outs = _rollout("ul")
    reset, step = _jitted("ul")
    keys = jax.random.split(jax.random.split(jax.random.PRNGKey(7), 3)[0], N_ENVS)
    skeys = jax.random.split(jax.random.split(jax.random.PRNGKey(7), 3)[2], 4 * N_ENVS)
    for i in range(N_ENVS):
        obs, st = reset(keys[i], params)
        np.testing.assert_allclose(obs, obs_b[i], rtol=1e-12)
        np.testing.assert_allclose(st.m, st_b.m[i], rtol=1e-12)
        j = 3 * N_ENVS + i  # the random action's step
        o, s, r, d, info = step(skeys[j], st, acts["random"][i], params)
        np.testing.assert_allclose(o, outs["random"][0][i], rtol=1e-12)
        np.testing.assert_allclose(r, outs["random"][2][i], rtol=1e-12)
        np.testing.assert_allclose(info["se"], outs["random"][4]["se"][i], rtol=1e-12)
    # same key, same result
    o1, s1 = reset(keys[0], params)
    o2, s2 = reset(keys[0], params)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)))
    # truncated after episode_steps, then a fresh setup from the step key's reset half
    st, k = s1, jax.random.PRNGKey(11)
    a = jnp.asarray(acts["random"][0], jnp.float64)
    for t in range(env.episode_steps):
        k, sub = jax.random.split(k)
        obs, st_new, r, done, info = step(sub, st, a, params)
        last = t == env.episode_steps - 1
        assert bool(done) == last and bool(info["truncated"]) == last
        assert not bool(info["terminated"])
        if last:
            o_re, s_re = reset(jax.random.split(sub)[1], params)
            np.testing.assert_allclose(st_new.gain_db, s_re.gain_db, rtol=1e-12)
            np.testing.assert_allclose(obs, o_re, rtol=1e-12)
            assert int(st_new.t) == 0
            np.testing.assert_allclose(info["final_obs"][:, -2], a[:, 0] / env.p_max)
        else:
            assert int(st_new.t) == t + 1
        st = st_new


# ---- heuristics ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_optimised_beats_full_and_fractional(name):
    env, params, obs, st, acts, outs = _rollout(name)
    se = {p: outs[p][4]["sum_se"] for p in POLICIES}
    for p in ("full", "fractional", "random"):
        assert np.all(se["optimised"] >= se[p] - 1e-9 * se[p]), (p, se["optimised"], se[p])
    assert se["optimised"].mean() > se["full"].mean()


def test_heuristic_actions():
    for name in ("ul", "dl", "ul_disc_asd"):
        env, params, obs, st, acts, outs = _rollout(name)
        s = _one(st, 0)
        gain = 10 ** (s.gain_db / 10)
        frac = acts["fractional"][0]
        if name == "ul":
            beta = (gain * s.D).sum(axis=0)
            want = env.p_max * np.sqrt(beta.min() / beta)
            np.testing.assert_allclose(frac[:, 0], want, rtol=1e-12)
            np.testing.assert_allclose(acts["full"][0], env.p_max)
        elif name == "dl":
            want = ref.fractional_downlink(gain, s.D, 1.0)
            np.testing.assert_allclose(frac, want, rtol=1e-12)
            np.testing.assert_allclose(acts["full"][0], 1.0)
        else:
            beta = (gain * s.D).sum(axis=0)
            x = np.sqrt(beta.min() / beta) * (env.n_levels - 1)
            np.testing.assert_array_equal(frac, np.clip(np.round(x), 1, env.n_levels - 1))
            assert frac.dtype == np.int32 and np.all(acts["full"][0] == env.n_levels - 1)


def test_heuristics_unbatched_through_step():
    """A policy on one environment (no batch axes) equals the batched one, through ``step``."""
    env, params, obs_b, st_b, acts, outs = _rollout("ul")
    reset, step = _jitted("ul")
    i = 1
    st = jax.tree.map(lambda a: jnp.asarray(a[i]), st_b)
    for name, pol in env.heuristics().items():
        a = jax.jit(pol)(jnp.asarray(obs_b[i]), st)
        assert a.shape == (env.K, 1)
        np.testing.assert_allclose(a, acts[name][i], rtol=1e-12)
        _, _, r, _, info = step(jax.random.PRNGKey(1), st, a, params)
        assert float(info["sum_se"]) == pytest.approx(float(outs[name][4]["sum_se"][i]), rel=1e-12)


# ---- configuration ---------------------------------------------------------------------------


def test_registry_and_defaults():
    assert "power_control" in envs.names()
    cfg = envs.default_config("power_control")
    assert cfg == pc.DEFAULT_CONFIG and cfg is not pc.DEFAULT_CONFIG
    env, params = envs.make("power_control")
    assert (env.L, env.N, env.K, env.tau_p, env.tau_c) == (16, 2, 6, 3, 200)
    assert env.n_agents == 6 and env.action_space == spaces.Box(-30.0, 0.0, (1,))
    assert env.features == "coupling" and env.db_range == 30.0
    env, _ = envs.make("power_control", {"link": "downlink", "action": "discrete"})
    assert env.n_agents == 16 and env.action_space == spaces.Discrete(5)
    env, _ = envs.make("power_control", {"link": "downlink"})
    assert env.action_space == spaces.Box(-30.0, 0.0, (6,)) and env.features == "gains"


@pytest.mark.parametrize(
    "key, value",
    [
        ("n_aps", 0),
        ("n_aps", 2.5),
        ("n_antennas", -1),
        ("n_ues", "6"),
        ("tau_p", 0),
        ("tau_c", 3),  # tau_c <= tau_p
        ("side_m", 0.0),
        ("asd", -5.0),
        ("asd", "15"),
        ("link", "sidelink"),
        ("action", "hybrid"),
        ("n_levels", 1),
        ("p_max_mw", 0.0),
        ("rho_max_mw", float("nan")),
        ("lsfd", "yes"),
        ("episode_steps", 0),
        ("opt_steps", 0),
        ("opt_lr", -0.1),
        ("obs_offset_db", None),
        ("obs_scale_db", 0.0),
        ("obs_se_scale", -1.0),
        ("features", "raw"),
        ("power_db_range", 0.0),
        ("power_db_range", "30"),
        ("bogus_key", 1),
    ],
)
def test_bad_config_raises_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        pc.make({key: value})


def test_lsfd_downlink_refused():
    with pytest.raises(ValueError, match="lsfd"):
        pc.make({"link": "downlink", "lsfd": True})


@pytest.mark.parametrize("name", ["ul", "dl"])
def test_decibel_actions_map_to_the_same_powers(name):
    """``power_db_range = r``: an action ``a`` in ``[-r, 0]`` dB is the power ``p_max 10^(a/10)``
    (downlink: the budget fraction ``10^(a/10)``), so the linear env's powers, written in dB,
    give the same powers; full and fractional give the same powers as in the linear env (the
    fractional ones floored at ``-r`` dB)."""
    env, params, obs, st, acts, _ = _rollout(name)
    r = 30.0
    env_db, _ = pc.make({**CFG, **VARIANTS[name], "power_db_range": r})
    assert env_db.action_space == spaces.Box(-r, 0.0, env.action_space.shape)
    rng = np.random.default_rng(0)
    scale = env.p_max if env.uplink else 1.0
    for i in range(N_ENVS):
        s_i = _one(st, i)
        lin = scale * 10.0 ** rng.uniform(-r / 10, 0, (env.n_agents,) + env.action_space.shape)
        np.testing.assert_allclose(
            np.asarray(env_db.powers(s_i, 10.0 * np.log10(lin / scale))),
            np.asarray(env.powers(s_i, lin)),
            rtol=1e-9,
        )
    hs_db = env_db.heuristics()
    for pol in ("full", "fractional"):
        a_db = np.asarray(hs_db[pol](obs, st))
        assert np.all(a_db >= -r - 1e-9) and np.all(a_db <= 1e-12)
        floored = np.maximum(np.asarray(acts[pol]), scale * 10 ** (-r / 10))
        for i in range(N_ENVS):
            np.testing.assert_allclose(
                np.asarray(env_db.powers(_one(st, i), a_db[i])),
                np.asarray(env.powers(_one(st, i), floored[i])),
                rtol=1e-9,
            )


def test_coupling_features_determine_the_sinr():
    """``features="coupling"``: from the observed ``snr_k`` and ``inr_ki`` (dB / 10) alone,
    ``SINR_k = q_k snr_k / (sum_i q_i inr_ki - q_k snr_k + 1)`` with ``q = p / p_max`` gives the
    environment's SE for any powers (book Thm 5.4, a = 1), in NumPy float64; the observation
    and global-state layouts hold them."""
    env, params, obs, st, acts, _ = _rollout("ul")
    env_c, _ = pc.make({**CFG, "features": "coupling"})
    K = env.K
    assert env_c.observation_space.shape == (2 * K + 4,)
    assert env_c.global_state_space.shape == (K + K * K + K + K,)
    rng = np.random.default_rng(1)
    for i in range(N_ENVS):
        s_i = _one(st, i)
        o = np.asarray(env_c._obs(s_i, params))
        snr, inr = 10.0 ** o[:, 0], 10.0 ** o[:, 1 : 1 + K]  # log10 = dB / 10
        np.testing.assert_allclose(10.0 ** o[:, 1 + K : 1 + 2 * K], inr.T, rtol=1e-9)
        gs = np.asarray(env_c.global_state(s_i))
        np.testing.assert_allclose(gs[:K], o[:, 0], rtol=1e-12)
        q = rng.uniform(0.0, 1.0, K)
        sinr = q * snr / (inr @ q - q * snr + 1.0)
        want = (env.tau_c - env.tau_p) / env.tau_c * np.log2(1.0 + sinr)
        got = np.asarray(env.se(s_i, env.p_max * q))
        np.testing.assert_allclose(got, want, rtol=1e-8)
    with pytest.raises(ValueError, match="uplink only"):
        pc.make({"link": "downlink", "features": "coupling"})


# ---- setup pool ------------------------------------------------------------------------------

POOL, POOL_SEED = 4, 3


@functools.cache
def _pool_env():
    """``(env, params)`` of the ``ul`` variant with a pool of ``POOL`` setups."""
    return pc.make({**CFG, **VARIANTS["ul"], "setup_pool": POOL, "setup_pool_seed": POOL_SEED})


def test_setup_pool_is_the_generator_output_for_the_documented_keys():
    env, params = _pool_env()
    pool = params.setups
    assert isinstance(pool, pc.PowerControlSetups) and pool.size == POOL
    assert pool.R.shape == (POOL, 5, 4, 2, 2) and pool.pilot.shape == (POOL, 4)
    assert all(isinstance(a, jax.Array) for a in jax.tree.leaves(pool))  # arrays in the pytree
    keys = jax.random.split(jax.random.PRNGKey(POOL_SEED), POOL)
    for i in range(POOL):
        s = generate_setup(keys[i], 5, 4, 2, 2, side=300.0)
        np.testing.assert_allclose(pool.R[i], s.R, rtol=1e-12)
        np.testing.assert_allclose(pool.gain_db[i], s.gain_db, rtol=1e-12)
        np.testing.assert_array_equal(pool.pilot[i], s.pilot)
        np.testing.assert_array_equal(pool.D[i], s.D)
    assert not np.allclose(pool.gain_db[0], pool.gain_db[1])
    # the same pool through the registry and from default_params (drawn once per environment)
    _, p2 = envs.make("power_control", {**CFG, "setup_pool": POOL, "setup_pool_seed": POOL_SEED})
    np.testing.assert_array_equal(p2.setups.R, pool.R)
    assert env.default_params().setups is env.pool_setups()
    # no pool by default
    assert pc.make(CFG)[1].setups is None and pc.DEFAULT_CONFIG["setup_pool"] == 0


def test_setup_pool_reset_picks_a_pool_setup_and_computes_the_rest_as_a_fresh_one():
    env, params = _pool_env()
    env0, params0 = _env("ul")
    pool = jax.device_get(params.setups)
    n = 12
    keys = jax.random.split(jax.random.PRNGKey(5), n)
    obs, st = jax.device_get(jax.jit(jax.vmap(env.reset, (0, None)))(keys, params))
    picked = []
    for j in range(n):
        i = int(jax.random.randint(keys[j], (), 0, POOL))  # the documented pick
        picked.append(i)
        np.testing.assert_array_equal(st.R[j], pool.R[i])
        np.testing.assert_array_equal(st.gain_db[j], pool.gain_db[i])
        np.testing.assert_array_equal(st.pilot[j], pool.pilot[i])
        np.testing.assert_array_equal(st.D[j], pool.D[i])
    assert len(set(picked)) > 1  # different keys, different setups
    # everything downstream equals a fresh reset that generates that setup
    gen = jax.random.split(jax.random.PRNGKey(POOL_SEED), POOL)
    obs0, st0 = jax.device_get(jax.jit(jax.vmap(env0.reset, (0, None)))(gen, params0))
    for j, i in enumerate(picked):
        np.testing.assert_allclose(obs[j], obs0[i], rtol=1e-12, atol=1e-15)
        for a, b in zip(jax.tree.leaves(_one(st, j)), jax.tree.leaves(_one(st0, i)), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # same key, same result
    o1, s1 = jax.jit(env.reset)(keys[0], params)
    np.testing.assert_array_equal(o1, obs[0])
    assert all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(_one(st, 0)))
    )
    # the automatic reset of step_batch picks from the pool too
    s, a = st, jnp.full((n, env.n_agents, 1), 0.5 * env.p_max)
    step = jax.jit(lambda k, s: env.step_batch(jax.random.split(k, n), s, a, params))
    for t in range(env.episode_steps):
        _, s, _, done, _ = step(jax.random.PRNGKey(t), s)
    assert bool(np.all(done)) and int(np.max(s.t)) == 0
    for j in range(n):
        assert any(np.array_equal(s.R[j], pool.R[i]) for i in range(POOL))


@pytest.mark.parametrize(
    "key, value",
    [("setup_pool", -1), ("setup_pool", 2.5), ("setup_pool", "8"), ("setup_pool", True)]
    + [("setup_pool_seed", -1), ("setup_pool_seed", 1.5), ("setup_pool_seed", 2**32)],
)
def test_bad_setup_pool_raises_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        pc.make({**CFG, key: value})


def test_setup_pool_params_mismatch_refused():
    env, params = _pool_env()
    env0, params0 = _env("ul")
    with pytest.raises(ValueError, match="setup_pool=4 but the params carry no pool"):
        env.reset(jax.random.PRNGKey(0), params0)
    with pytest.raises(ValueError, match="setup_pool=0 but the params carry a pool of 4"):
        env0.reset(jax.random.PRNGKey(0), params)
    with pytest.raises(ValueError, match="setup_pool=0"):
        env0.pool_setups()
