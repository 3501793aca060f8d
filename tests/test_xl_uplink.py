"""The xl_uplink scenario ([XL-FUZZY]): spaces, the power map, the reward against
``uplink_se_log_det`` on the same realizations, jit == eager, same key same result, heuristics
through ``step``, the optimiser oracle against maximum power, bad configurations.

Tiny sizes (2 BSs of 2 x 2 patches, 2 UEs of 2 x 1, 4 realizations) so the module compiles a
few small programs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cfmimo_jax import envs
from cfmimo_jax.envs import spaces
from cfmimo_jax.envs import xl_uplink as xl
from cfmimo_jax.nearfield import sample_channels
from cfmimo_jax.se import uplink_se_log_det

TINY = {
    "n_bs": 2,
    "bs_array": [2, 2],
    "n_ues": 2,
    "ue_array": [2, 1],
    "n_realizations": 4,
    "opt_steps": 30,
    "opt_realizations": 8,
    "opt_restarts": 1,
}
# an interference-limited tiny network (100 m square, 1 W): MR, where full power is not optimal
CROWDED = dict(TINY, side_m=100.0, p_max_mw=1000.0, combiner="mr", episode_steps=2)


@pytest.fixture(scope="module")
def tiny():
    return xl.make(TINY)


def test_registry_and_defaults():
    assert "xl_uplink" in envs.names()
    cfg = envs.default_config("xl_uplink")
    assert (cfg["n_bs"], cfg["bs_array"], cfg["n_ues"], cfg["ue_array"]) == (9, [9, 9], 6, [3, 3])
    assert cfg["spacing"] == pytest.approx(1.0 / 3.0)
    assert cfg["combiner"] == "l_mmse"


def test_spaces_and_shapes(tiny):
    env, params = tiny
    assert env.n_agents == 2 and env.N_r == 4 and env.N_s == 2
    assert env.model.n_r == 4 and env.model.n_s == 2  # built once, at make time
    assert env.action_space == spaces.Box(-30.0, 0.0, (1,))
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (env.n_agents, *env.observation_space.shape) == (2, 2)
    assert env.global_state(state).shape == env.global_state_space.shape == (4,)
    # the observation is the normalised large-scale fading of the UE over the BSs
    np.testing.assert_allclose(
        np.asarray(obs), (np.asarray(state.beta_db).T + 30.0) / 10.0, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(state.beta), 10.0 ** (np.asarray(state.beta_db) / 10.0), rtol=1e-6
    )
    a = spaces.sample(jax.random.PRNGKey(1), env.action_space, (env.n_agents,))
    assert bool(spaces.contains(env.action_space, a))
    obs2, state2, reward, done, info = env.step(jax.random.PRNGKey(2), state, a, params)
    assert obs2.shape == obs.shape and reward.shape == (2,) and info["se"].shape == (2,)
    for k in ("sum_se", "min_se", "power_frac", "power_mw"):
        assert info[k].shape == () and np.isfinite(float(info[k])), k
    assert bool(done)  # one step per drop by default
    np.testing.assert_array_equal(np.asarray(info["final_obs"]), np.asarray(obs))


def test_power_map(tiny):
    """Actions in dB below P_max / N_s (clipped to the box); linear mW with power_db_range
    null; N_s p_k <= P_max always."""
    env, _ = tiny
    pa = 100.0 / 2  # P_max / N_s
    p = env.powers(jnp.array([[0.0], [-10.0]]))
    np.testing.assert_allclose(np.asarray(p), [pa, pa / 10.0], rtol=1e-6)
    p = env.powers(jnp.array([[5.0], [-50.0]]))  # outside the box: clipped to [-30, 0]
    np.testing.assert_allclose(np.asarray(p), [pa, pa * 1e-3], rtol=1e-6)
    lin, _ = xl.make(dict(TINY, power_db_range=None))
    assert lin.action_space == spaces.Box(0.0, pa, (1,))
    np.testing.assert_allclose(
        np.asarray(lin.powers(jnp.array([[20.0], [80.0]]))), [20.0, pa], rtol=1e-6
    )


@pytest.mark.parametrize(
    "extra", [{}, {"combiner": "mr"}, {"reward": "own"}], ids=["l_mmse", "mr", "own"]
)
def test_reward_is_log_det_se_on_the_same_realizations(extra):
    """step(key) = uplink_se_log_det on sample_channels(k_step, model, beta, n) with the powers
    of the actions (k_step: the first half of MultiAgentEnv.step's key split)."""
    env, params = xl.make(dict(TINY, **extra))
    obs, state = env.reset(jax.random.PRNGKey(3), params)
    a_db = np.array([[-3.0], [-12.0]])
    key = jax.random.PRNGKey(4)
    _, _, reward, _, info = env.step(key, state, jnp.asarray(a_db), params)
    k_step = jax.random.split(key)[0]
    G = sample_channels(k_step, env.model, state.beta, 4)
    p = (100.0 / 2) * 10.0 ** (a_db[:, 0] / 10.0)
    se = np.asarray(uplink_se_log_det(G, jnp.asarray(p), extra.get("combiner", "l_mmse")))
    want = se if extra.get("reward") == "own" else np.full(2, se.sum())
    np.testing.assert_allclose(np.asarray(reward), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(info["se"]), se, rtol=1e-6)
    np.testing.assert_allclose(float(info["power_mw"]), 2 * p.sum(), rtol=1e-6)
    np.testing.assert_allclose(float(info["power_frac"]), np.mean(2 * p) / 100.0, rtol=1e-6)


def test_jit_equals_eager_and_same_key(tiny):
    env, params = tiny
    (o1, s1), (o2, s2) = (env.reset(jax.random.PRNGKey(5), params) for _ in range(2))
    np.testing.assert_array_equal(np.asarray(o1), np.asarray(o2))
    a = jnp.array([[-1.0], [-7.0]])
    eager = env.step(jax.random.PRNGKey(6), s1, a, params)
    again = env.step(jax.random.PRNGKey(6), s2, a, params)
    jitted = jax.jit(env.step)(jax.random.PRNGKey(6), s1, a, params)
    for x, y, z in zip(jax.tree.leaves(eager), jax.tree.leaves(again), jax.tree.leaves(jitted)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        np.testing.assert_allclose(np.asarray(x), np.asarray(z), rtol=1e-5, atol=1e-6)
    other = env.step(jax.random.PRNGKey(7), s1, a, params)[2]
    assert not np.allclose(np.asarray(other), np.asarray(eager[2]))  # new realizations


def test_heuristics_through_step_batch():
    """Both heuristics on a batch of environments through step_batch; 2-step episodes end,
    reset to a new drop; max power uses the whole budget; the oracle's actions are feasible."""
    env, params = xl.make(CROWDED)
    B = 3
    obs, st = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.PRNGKey(8), B), params)
    step = jax.jit(env.step_batch)
    for name, policy in env.heuristics().items():
        o, s = obs, st
        for t in range(env.episode_steps):
            a = policy(o, s)
            assert a.shape == (B, 2, 1) and bool(spaces.contains(env.action_space, a)), name
            o, s, r, done, info = step(jax.random.split(jax.random.PRNGKey(9 + t), B), s, a, params)
            assert np.all(np.isfinite(np.asarray(r))), name
        assert bool(done.all()) and int(s.t.max()) == 0, name  # truncated, then a new drop
        assert not np.allclose(np.asarray(o), np.asarray(obs))
        if name == "max_power":
            np.testing.assert_allclose(np.asarray(info["power_frac"]), 1.0, rtol=1e-6)


def test_oracle_in_batches_equals_a_loop():
    """The optimised heuristic processes ``opt_batch`` drops at a time (bounded memory): on 3
    drops with batches of 2 (a remainder) it equals ``optimise`` called on each drop alone."""
    env, params = xl.make(dict(CROWDED, opt_batch=2, opt_steps=5))
    obs, st = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.PRNGKey(3), 3), params)
    got = np.asarray(jax.jit(env.heuristics()["optimised"])(obs, st))
    opt = jax.jit(env.optimise)
    for i in range(3):
        one = jax.tree.map(lambda a, i=i: a[i], st)
        want = np.asarray(env.to_actions(opt(one)[0]))
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)


def test_oracle_beats_max_power():
    """On interference-limited tiny drops with MR the optimised powers give a higher sum SE
    than maximum power on independent realizations (128 of them), and never a lower one on the
    oracle's own realizations."""
    env, params = xl.make(CROWDED)
    opt = jax.jit(env.optimise)
    sum_se = jax.jit(lambda G, p: jnp.sum(env.se(G, p)))
    full = jnp.full((2,), env.p_ant_max)
    gains = []
    for seed in (0, 5):
        _, state = env.reset(jax.random.PRNGKey(seed), params)
        x, f = opt(state)
        assert np.all((np.asarray(x) >= 1e-3 - 1e-9) & (np.asarray(x) <= 1 + 1e-9))
        G_own = env.channels(jax.random.split(state.opt_key)[0], state, env.opt_realizations)
        assert float(f) >= float(sum_se(G_own, full)) - 1e-9
        np.testing.assert_allclose(float(f), float(sum_se(G_own, env.p_ant_max * x)), rtol=1e-6)
        G = env.channels(jax.random.PRNGKey(100 + seed), state, 128)
        gains.append(float(sum_se(G, env.p_ant_max * x)) - float(sum_se(G, full)))
    assert min(gains) > 0.05, gains


@pytest.mark.parametrize(
    "key, value",
    [
        ("n_bs", 0),
        ("n_ues", 1.5),
        ("bs_array", 5),  # not a square number of patches
        ("ue_array", [0, 1]),
        ("spacing", 0.0),
        ("ue_spacing", -0.1),
        ("lattice", "square"),
        ("prune_tol", 1.0),
        ("bs_layout", "hex"),
        ("side_m", -1.0),
        ("shadow_std_db", -1.0),
        ("shadow_decorrelation_m", 0.0),
        ("p_max_mw", 0.0),
        ("power_db_range", 0.0),
        ("combiner", "zf"),
        ("estimator", "exact"),
        ("n_realizations", 0),
        ("reward", "max"),
        ("episode_steps", 0),
        ("opt_steps", 0),
        ("opt_lr", -0.1),
        ("opt_realizations", 0),
        ("opt_restarts", -1),
        ("opt_batch", 0),
        ("obs_offset_db", float("nan")),
        ("obs_scale_db", 0.0),
    ],
)
def test_bad_config(key, value):
    with pytest.raises(ValueError, match=key):
        xl.make(dict(TINY, **{key: value}))


def test_bad_config_other():
    with pytest.raises(ValueError, match="n_ue"):
        xl.make({"n_ue": 3})  # unknown key
    with pytest.raises(ValueError, match="n_bs"):
        xl.make(dict(TINY, bs_layout="grid", n_bs=2))  # grid needs a square number of BSs
