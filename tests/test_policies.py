"""The PPO policy protocol (``algorithms.policies``): every model implements it.

For each policy (parameter-shared agent actor-critic with a GRU or an MLP encoder, the
single-agent central actor-critic, the Multi-Agent Transformer) on a tiny AP-selection network:
the shapes of ``sample`` / ``log_prob`` / ``values`` over two leading batch axes; ``log_prob``
of the actions ``sample`` drew equals the ``logp`` it returned (for the transformer: the
teacher-forced conditionals equal the generated ones); the entropies equal a NumPy float64
``-sum_a p_a log p_a`` of the logits, and for a uniform policy (all parameters zero: logits 0)
``log(n_actions)``; greedy actions are the argmax (for the transformer, a fixed point of the
teacher-forced argmax). One compiled program per policy.
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms.mappo import PPOConfig
from algorithms.policies import (
    AgentPolicy,
    CentralPolicy,
    Policy,
    TransformerPolicy,
    categorical_log_prob_entropy,
    make_policy,
)
from cfmimo_jax.envs import ap_selection

LEAD = (2, 3)  # two leading batch axes (e.g. rollout steps x environments)
KINDS = {
    "agent_gru": (dict(lagrangian=True), AgentPolicy),
    "agent_mlp": (dict(encoder="mlp", critic="local"), AgentPolicy),
    "central": (dict(single_agent=True, lagrangian=True), CentralPolicy),
    "mat": (dict(model="mat", lagrangian=True, mat_heads=2), TransformerPolicy),
}


@pytest.fixture(scope="module")
def env():
    return ap_selection.make({"n_aps": 3, "n_ues": 2, "window_slots": 2, "history": 2})[0]


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


_CACHE: dict = {}


def _results(kind, env):
    """Everything the tests read, from one jitted function per policy kind."""
    if kind in _CACHE:
        return _CACHE[kind]
    overrides, cls = KINDS[kind]
    config = PPOConfig(hidden=8, gnn_rounds=1, **overrides)
    pol = make_policy(config, env)
    params = pol.init(jax.random.PRNGKey(0))
    zero = jax.tree.map(jnp.zeros_like, params)
    obs = jax.random.normal(jax.random.PRNGKey(1), LEAD + (env.n_agents,) + env.obs_shape)
    fast = pol.for_inference()

    @jax.jit
    def run(params, zero, obs, key):
        out = {}
        out["action"], out["logp"], out["value"] = pol.sample(params, obs, key)
        out["lp_again"], out["entropy"], out["value_lp"] = pol.log_prob(params, obs, out["action"])
        out["logits"] = pol.forward(params, obs, out["action"])[0]
        out["values"] = pol.values(params, obs)
        out["greedy"], out["greedy_logp"], _ = pol.sample(params, obs, None, greedy=True)
        out["greedy_logits"] = pol.forward(params, obs, out["greedy"])[0]
        out["fast_greedy"] = fast.sample(params, obs, None, greedy=True)[0]
        out["uniform_logp"], out["uniform_entropy"], _ = pol.log_prob(zero, obs, out["action"])
        out["uniform_logits"] = pol.forward(zero, obs, out["action"])[0]
        return out

    res = jax.tree.map(np.asarray, run(params, zero, obs, jax.random.PRNGKey(2)))
    _CACHE[kind] = (pol, cls, config, res)
    return _CACHE[kind]


@pytest.mark.parametrize("kind", list(KINDS))
def test_protocol_and_shapes(env, kind):
    pol, cls, config, r = _results(kind, env)
    assert isinstance(pol, cls) and isinstance(pol, Policy)
    A, H = env.n_agents, 2 if config.lagrangian else 1
    assert (pol.n_agents, pol.n_actions, pol.n_value_heads) == (A, env.n_actions, H)
    assert r["action"].shape == r["greedy"].shape == LEAD + (A,)
    assert r["action"].dtype == r["greedy"].dtype == np.int32
    assert np.all((r["action"] >= 0) & (r["action"] < env.n_actions))
    for name in ("logp", "lp_again", "entropy", "greedy_logp"):
        assert r[name].shape == LEAD + (A,), name
    for name in ("value", "value_lp", "values"):
        assert r[name].shape == LEAD + (A, H), name
    assert r["logits"].shape == LEAD + (A, env.n_actions)
    np.testing.assert_allclose(r["values"], r["value"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(r["value_lp"], r["value"], rtol=1e-6, atol=1e-6)
    if kind == "central":  # one global value per head, broadcast to the agents
        np.testing.assert_array_equal(
            r["value"], np.broadcast_to(r["value"][..., :1, :], r["value"].shape)
        )


@pytest.mark.parametrize("kind", list(KINDS))
def test_log_prob_of_sampled_actions_equals_sample_logp(env, kind):
    _, _, _, r = _results(kind, env)
    np.testing.assert_allclose(r["lp_again"], r["logp"], rtol=1e-5, atol=2e-6)
    want = np.take_along_axis(_log_softmax(r["logits"]), r["action"][..., None], -1)[..., 0]
    np.testing.assert_allclose(r["logp"], want, rtol=1e-5, atol=2e-6)
    assert np.all(r["logp"] < 0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_entropy_against_numpy(env, kind):
    _, _, _, r = _results(kind, env)
    lp = _log_softmax(r["logits"])
    np.testing.assert_allclose(r["entropy"], -(np.exp(lp) * lp).sum(-1), rtol=1e-5, atol=1e-6)
    assert np.all(r["entropy"] > 0) and np.all(r["entropy"] <= np.log(env.n_actions) + 1e-6)
    # all parameters zero: logits 0, the uniform policy
    np.testing.assert_array_equal(r["uniform_logits"], 0.0)
    np.testing.assert_allclose(r["uniform_entropy"], np.log(env.n_actions), rtol=1e-6)
    np.testing.assert_allclose(r["uniform_logp"], -np.log(env.n_actions), rtol=1e-6)


@pytest.mark.parametrize("kind", list(KINDS))
def test_greedy_is_argmax(env, kind):
    _, _, _, r = _results(kind, env)
    # for the transformer the teacher-forced logits given the greedy actions: a fixed point
    np.testing.assert_array_equal(r["greedy"], np.argmax(r["greedy_logits"], -1))
    want = _log_softmax(r["greedy_logits"]).max(-1)
    np.testing.assert_allclose(r["greedy_logp"], want, rtol=1e-5, atol=2e-6)
    np.testing.assert_array_equal(r["fast_greedy"], r["greedy"])  # for_inference: same policy


def test_decisions_and_value_heads(env):
    """Per-agent policies: one PPO decision per agent; the central policy: one joint decision
    (summed log-ratio, team advantage) with a team signal. ``is_value_head`` picks the critics."""
    lr = jnp.asarray(np.random.default_rng(0).normal(size=(4, env.n_agents)), jnp.float32)
    adv = jnp.broadcast_to(jnp.arange(4.0)[:, None], (4, env.n_agents))
    for kind in ("agent_gru", "mat"):
        pol = _results(kind, env)[0]
        got = pol.decisions(lr, adv)
        np.testing.assert_array_equal(got[0], lr)
        np.testing.assert_array_equal(got[1], adv)
        assert not pol.team_signal
    pol = _results("central", env)[0]
    got = pol.decisions(lr, adv)
    np.testing.assert_allclose(got[0], np.asarray(lr).sum(-1), rtol=1e-6)
    np.testing.assert_array_equal(got[1], np.arange(4.0))
    assert pol.team_signal
    for kind, heads in (("agent_gru", {"critic"}), ("central", {"critic"}), ("mat", {"encoders"})):
        pol = _results(kind, env)[0]
        params = pol.init(jax.random.PRNGKey(0))
        picked = {
            jax.tree_util.keystr(p)
            for p, _ in jax.tree_util.tree_leaves_with_path(params)
            if pol.is_value_head(p)
        }
        assert picked and all(any(h in p for h in heads) for p in picked), (kind, picked)
        assert len(picked) < len(jax.tree.leaves(params))


def test_categorical_helper_and_errors(env):
    """The helper equals distrax's ``log_prob`` and (to float rounding) its ``entropy``."""
    logits = jax.random.normal(jax.random.PRNGKey(3), (5, 7, 4)) * 3.0
    a = jax.random.categorical(jax.random.PRNGKey(4), logits)
    logp, ent = categorical_log_prob_entropy(logits, a)
    dist = distrax.Categorical(logits=logits)
    np.testing.assert_array_equal(np.asarray(logp), np.asarray(dist.log_prob(a)))
    np.testing.assert_allclose(np.asarray(ent), np.asarray(dist.entropy()), rtol=1e-6)
    pol = _results("mat", env)[0]
    with pytest.raises(ValueError, match="needs the actions"):
        pol.forward(pol.init(jax.random.PRNGKey(0)), jnp.zeros((2, env.n_agents) + env.obs_shape))
