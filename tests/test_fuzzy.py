"""The fuzzy-logic layer ([XL-FUZZY] section IV-A) and the FL-CTCE / FL-CTDE trainers.

Hand-computed references: a 2-entity, 2-fuzzy-agent, 2-dimension example worked out on paper
(memberships ``exp(-L1 distance / (d_a m))`` with ``d_a m = 2``, the normalised mappings, the
defuzzified actions, the fuzzified rewards and next states, and the membership update of
Algorithm 1 line 9); the environment wrapper against the same formulas in NumPy around the
wrapped environment's own step; tiny training runs of both trainers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algorithms
from algorithms import fuzzy as fz
from cfmimo_jax.envs import spaces
from cfmimo_jax.envs import xl_uplink as xl

# ---- the hand-computed example ---------------------------------------------------------------
# entities s = [(0, 1), (4, 1)], fuzzy states (centres) c = [(0, 0), (2, 1)], scale d_a m = 2
# (d_a = 1, m = 2). L1 distances: entity 0 -> (1, 2), entity 1 -> (5, 2), so
# mu = [[e^-0.5, e^-1], [e^-2.5, e^-1]].
OBS = np.array([[0.0, 1.0], [4.0, 1.0]])
CENTRES = np.array([[0.0, 0.0], [2.0, 1.0]])
MU = np.array([[math.exp(-0.5), math.exp(-1.0)], [math.exp(-2.5), math.exp(-1.0)]])
# rows over the fuzzy agents: 1 / (1 + e^-0.5) = 0.6224593, e^-1.5 / (1 + e^-1.5) = 0.1824255
MUBAR = np.array([[0.6224593, 0.3775407], [0.1824255, 0.8175745]])
# columns over the entities: 1 / (1 + e^-2) = 0.8807971; fuzzy agent 1 is equidistant: 1/2
W_MEAN = np.array([[0.8807971, 0.5], [0.1192029, 0.5]])
FUZZY_ACTIONS = np.array([[-10.0], [-2.0]])
# a_0 = -10 (0.6224593) - 2 (0.3775407), a_1 = -10 (0.1824255) - 2 (0.8175745)
ACTIONS = np.array([[-6.9796744], [-3.4594035]])
REWARD = np.array([1.0, 3.0])
NEXT_OBS = np.array([[1.0, 1.0], [3.0, 2.0]])
# mean: rhat_0 = 0.8807971 + 3 (0.1192029), rhat_1 = (1 + 3) / 2
RHAT_MEAN = np.array([1.2384058, 2.0])
# sum: rhat_0 = 0.6224593 + 3 (0.1824255), rhat_1 = 0.3775407 + 3 (0.8175745)
RHAT_SUM = np.array([1.1697358, 2.8302642])
# next fuzzy states: 0.8807971 (1, 1) + 0.1192029 (3, 2), and (2, 1.5)
SHAT_NEXT = np.array([[1.2384058, 1.1192029], [2.0, 1.5]])


def test_memberships_by_hand():
    obs, c = jnp.asarray(OBS), jnp.asarray(CENTRES)
    assert fz.default_scale(1, 2) == 2.0
    np.testing.assert_allclose(np.asarray(fz.memberships(obs, c, 2.0)), MU, rtol=1e-12)
    log_mu = fz.log_memberships(obs, c, 2.0)
    np.testing.assert_allclose(np.asarray(fz.defuzzify_weights(log_mu)), MUBAR, atol=1e-7)
    np.testing.assert_allclose(np.asarray(fz.fuzzify_weights(log_mu, "mean")), W_MEAN, atol=1e-7)
    np.testing.assert_allclose(np.asarray(fz.fuzzify_weights(log_mu, "sum")), MUBAR, atol=1e-7)
    with pytest.raises(ValueError, match="fuzzify"):
        fz.fuzzify_weights(log_mu, "max")


def test_defuzzify_and_fuzzify_by_hand():
    a, maps = fz.fuzzy_actions_to_entities(
        jnp.asarray(CENTRES), jnp.asarray(OBS), jnp.asarray(FUZZY_ACTIONS), 2.0, "mean"
    )
    np.testing.assert_allclose(np.asarray(a), ACTIONS, atol=1e-6)
    rhat, shat = fz.fuzzify_outcome(maps, jnp.asarray(REWARD), jnp.asarray(NEXT_OBS))
    np.testing.assert_allclose(np.asarray(rhat), RHAT_MEAN, atol=1e-6)
    np.testing.assert_allclose(np.asarray(shat), SHAT_NEXT, atol=1e-6)
    _, maps_sum = fz.fuzzy_actions_to_entities(
        jnp.asarray(CENTRES), jnp.asarray(OBS), jnp.asarray(FUZZY_ACTIONS), 2.0, "sum"
    )
    rhat_sum, _ = fz.fuzzify_outcome(maps_sum, jnp.asarray(REWARD), jnp.asarray(NEXT_OBS))
    np.testing.assert_allclose(np.asarray(rhat_sum), RHAT_SUM, atol=1e-6)
    # a pytree of actions and leading batch axes
    tree = {"p": jnp.asarray(FUZZY_ACTIONS)[None].repeat(3, 0)}
    out = fz.defuzzify(jnp.asarray(MUBAR)[None].repeat(3, 0), tree)
    np.testing.assert_allclose(np.asarray(out["p"][2]), ACTIONS, atol=1e-6)


def test_membership_update_by_hand():
    """Line 9: the membership functions move to the next fuzzy states; the next step's
    mappings are evaluated at the entities' next observations. Distances from (1, 1) to
    (1.2384058, 1.1192029) and (2, 1.5): 0.3576087 and 1.5; from (3, 2): 2.6423913 and 1.5."""
    log_mu = fz.log_memberships(jnp.asarray(NEXT_OBS), jnp.asarray(SHAT_NEXT), 2.0)
    d = np.array([[0.3576087, 1.5], [2.6423913, 1.5]])
    np.testing.assert_allclose(np.asarray(log_mu), -d / 2.0, atol=1e-6)
    e = np.exp(-d / 2.0)
    want = e / e.sum(axis=1, keepdims=True)  # entity 0: 1 / (1 + e^-0.5711956) = 0.6390
    assert want[0, 0] == pytest.approx(0.6390, abs=1e-4)
    np.testing.assert_allclose(np.asarray(fz.defuzzify_weights(log_mu)), want, atol=1e-6)


def test_normalisation_sums_to_one():
    """Rows of mubar and columns of the mean weights sum to 1, also for entities so far from
    every centre that exp underflows (the log-domain softmax keeps them finite)."""
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(4, 5, 3)) * np.array([1.0, 1.0, 1e3])[None, None])
    centres = jnp.asarray(rng.normal(size=(4, 2, 3)))
    log_mu = fz.log_memberships(obs, centres, 1.0)
    assert float(jnp.min(jnp.exp(log_mu))) == 0.0  # underflow present
    mubar, w = fz.defuzzify_weights(log_mu), fz.fuzzify_weights(log_mu, "mean")
    assert np.all(np.isfinite(np.asarray(mubar))) and np.all(np.isfinite(np.asarray(w)))
    np.testing.assert_allclose(np.asarray(mubar.sum(-1)), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(w.sum(-2)), 1.0, atol=1e-12)


def test_init_centres_sample_observations():
    obs = jnp.arange(12.0).reshape(6, 2)
    c = np.asarray(fz.init_centres(jax.random.PRNGKey(0), obs, 4))
    rows = [tuple(r) for r in np.asarray(obs)]
    assert all(tuple(r) in rows for r in c) and len({tuple(r) for r in c}) == 4  # no repeats
    c8 = np.asarray(fz.init_centres(jax.random.PRNGKey(1), obs, 8))  # m > K: with replacement
    assert c8.shape == (8, 2) and all(tuple(r) in rows for r in c8)
    np.testing.assert_array_equal(np.asarray(fz.first_centres(obs, 3)), np.asarray(obs[:3]))


# ---- the environment wrapper -------------------------------------------------------------------

ENV_CFG = {
    "n_bs": 2,
    "bs_array": [2, 1],
    "n_ues": 3,
    "ue_array": [1, 1],
    "n_realizations": 2,
    "combiner": "mr",
    "episode_steps": 2,
    "opt_steps": 2,
    "opt_realizations": 2,
    "opt_restarts": 0,
}


def _weights(obs, centres, scale):
    d = np.abs(obs[:, None, :] - centres[None, :, :]).sum(-1)
    mu = np.exp(-d / scale)
    return mu / mu.sum(1, keepdims=True), mu / mu.sum(0, keepdims=True)


def test_fuzzy_env_step_against_numpy():
    """FuzzyEnv.step = the NumPy formulas around the wrapped environment's own step: entity
    actions defuzzified, rewards and next observations fuzzified, the fuzzy states carried
    within an episode and sampled anew from the next drop's UEs at its end."""
    env, params = xl.make(ENV_CFG)
    fenv = fz.FuzzyEnv(env, 2)
    assert fenv.n_agents == 2 and fenv.scale == 2.0 and fenv.global_state_space is None
    sobs, st = fenv.reset(jax.random.PRNGKey(0), params)
    uobs = np.asarray(st.obs)
    rows = [tuple(r) for r in uobs]
    assert all(tuple(r) in rows for r in np.asarray(sobs))  # line 1: sampled UE observations
    step = jax.jit(fenv.step)
    for t in range(2):
        ahat = jnp.array([[-20.0], [-5.0]]) + t
        key = jax.random.PRNGKey(10 + t)
        fobs, st2, rhat, done, info = step(key, st, ahat, params)
        mubar, w = _weights(np.asarray(st.obs), np.asarray(st.centres), 2.0)
        a = mubar @ np.asarray(ahat)
        k_env = jax.random.split(key)[0]
        uobs2, ust2, r, udone, uinfo = env.step(k_env, st.inner, jnp.asarray(a), params)
        np.testing.assert_allclose(np.asarray(rhat), w.T @ np.asarray(r), rtol=1e-6)
        np.testing.assert_allclose(
            np.asarray(info["final_obs"]), w.T @ np.asarray(uinfo["final_obs"]), rtol=1e-6
        )
        np.testing.assert_allclose(float(info["sum_se"]), float(uinfo["sum_se"]), rtol=1e-6)
        assert bool(done) == bool(udone) == (t == 1)
        if t == 0:  # carried: the fuzzification of the same drop's observations
            np.testing.assert_allclose(np.asarray(fobs), w.T @ np.asarray(uobs2), rtol=1e-6)
        else:  # a new drop: new fuzzy states sampled from its UEs
            new_rows = [tuple(r) for r in np.asarray(uobs2)]
            assert all(tuple(r) in new_rows for r in np.asarray(fobs))
        np.testing.assert_array_equal(np.asarray(st2.centres), np.asarray(fobs))
        st = st2


def _tiny_trainer(name, **extra):
    env, params = xl.make(ENV_CFG)
    cfg = {
        "n_envs": 2,
        "n_steps": 2,
        "n_updates": 2,
        "updates_per_chunk": 1,
        "buffer_size": 64,
        "batch_size": 8,
        "learning_starts": 4,
        "hidden": [8],
        "gamma": 0.5,
        "n_fuzzy": 2,
        "random_steps": 1,
        **extra,
    }
    return env, algorithms.make_train(name, cfg, env, params)


@pytest.mark.parametrize(
    "name, extra",
    [("fl_ctce", {}), ("fl_ctde", {"shared_parameters": False, "act_refine": 1})],
)
def test_tiny_training_runs(name, extra):
    env, trainer = _tiny_trainer(name, **extra)
    assert trainer.n_agents == 2 and trainer.env.K == 3
    rs, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    m = jax.device_get(metrics)
    for k in ("critic_loss", "actor_loss", "q", "reward", "sum_se", "fuzzy_entropy"):
        assert m[k].shape == (2,) and np.all(np.isfinite(m[k])), k
    assert int(rs.grad_step) > 0 and float(m["learning"][-1]) == 1.0
    assert rs.buffer.data.obs.shape[1:] == (2, 2)  # fuzzy experience: m fuzzy states of M dims
    obs, _ = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.PRNGKey(1), 4), None)
    for key in (None, jax.random.PRNGKey(2)):
        a = trainer.act(rs.params, obs, key)
        assert a.shape == (4, 3, 1) and bool(spaces.contains(env.action_space, a))


def test_bad_fuzzy_config():
    env, params = xl.make(ENV_CFG)
    for key, value in (
        ("n_fuzzy", 0),
        ("fuzzy_scale", -1.0),
        ("fuzzify", "max"),
        ("fuzzy_reinit", "yes"),
        ("act_refine", -1),
    ):
        with pytest.raises(ValueError, match=key):
            algorithms.make_train("fl_ctce", {key: value}, env, params)
    with pytest.raises(ValueError, match="n_fuzz"):
        algorithms.make_train("fl_ctde", {"n_fuzz": 2}, env, params)
