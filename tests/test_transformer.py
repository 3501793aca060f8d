"""The Multi-Agent Transformer (MAT-Lagr baseline of APS-GNN, "Graph-Neural Multi-Agent
Coordination for Distributed Access-Point Selection in Cell-Free Massive MIMO"): attention
against NumPy, autoregressive generation against teacher forcing, causality, equivariance of the
encoders, and the trainer's MAT-Lagr path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algorithms import networks
from algorithms.mappo import PPOConfig, make_train
from algorithms.transformer import attend
from cfmimo_jax.envs import ap_selection as aps

A, T, F = 7, 3, 2
KW = dict(
    model="mat",
    obs_features=T * F,
    n_actions=3,
    hidden=8,
    n_blocks=2,
    n_heads=2,
    n_value_heads=2,
    n_groups=(3, 4),
)
IDS = np.stack([np.arange(A) % 3, np.arange(A) % 4], -1)  # two groupings of the agents


@pytest.fixture(scope="module")
def model():
    return networks.init_params(jax.random.PRNGKey(0), **KW)


def _obs(seed, lead=(2,)):
    return jax.random.normal(jax.random.PRNGKey(seed), lead + (A, T, F))


def _np_attention(q, k, v, mask, n_heads):
    """Multi-head scaled dot-product attention in float64 loops (Vaswani et al. eq. (1))."""
    nq, d = q.shape
    dh = d // n_heads
    out = np.zeros((nq, d))
    for h in range(n_heads):
        sl = slice(h * dh, (h + 1) * dh)
        for i in range(nq):
            allowed = [j for j in range(k.shape[0]) if mask[i, j]]
            if not allowed:
                continue
            s = np.array([q[i, sl] @ k[j, sl] / np.sqrt(dh) for j in allowed])
            w = np.exp(s - s.max())
            w /= w.sum()
            out[i, sl] = sum(wj * v[j, sl] for wj, j in zip(w, allowed, strict=True))
    return out


def test_attention_matches_numpy():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(5, 6)) for _ in range(3))
    mask = rng.random((5, 5)) < 0.6
    mask[2] = False  # a row with nothing to attend to gives zeros
    for heads in (1, 2, 3):
        got = attend(*(jnp.asarray(x, jnp.float32) for x in (q, k, v)), mask, heads)
        np.testing.assert_allclose(
            np.asarray(got), _np_attention(q, k, v, mask, heads), rtol=1e-5, atol=1e-6
        )
    causal = np.tril(np.ones((5, 5), bool))
    got = attend(*(jnp.asarray(x, jnp.float32) for x in (q, k, v)), None, 2)
    np.testing.assert_allclose(
        np.asarray(got), _np_attention(q, k, v, np.ones((5, 5), bool), 2), rtol=1e-5, atol=1e-6
    )
    got = attend(*(jnp.asarray(x, jnp.float32) for x in (q, k, v)), causal, 2)
    np.testing.assert_allclose(
        np.asarray(got), _np_attention(q, k, v, causal, 2), rtol=1e-5, atol=1e-6
    )


def test_generation_equals_teacher_forcing(model):
    """The cached agent-by-agent generation and the one-pass causal evaluation give the same
    conditionals; greedy generation is a fixed point of the teacher-forced argmax."""
    gd, p = model
    obs = _obs(1)
    act, logp, val = networks.apply_method(
        gd, p, "sample", obs, jax.random.PRNGKey(2), group_ids=IDS
    )
    assert act.shape == logp.shape == (2, A) and val.shape == (2, A, 2)
    logits, val2 = networks.apply_model(gd, p, obs, act, group_ids=IDS)
    lp2 = jnp.take_along_axis(jax.nn.log_softmax(logits), act[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(logp), np.asarray(lp2), atol=2e-6)
    np.testing.assert_allclose(np.asarray(val), np.asarray(val2), atol=1e-6)
    greedy, _, _ = networks.apply_method(gd, p, "sample", obs, None, greedy=True, group_ids=IDS)
    logits, _ = networks.apply_model(gd, p, obs, greedy, group_ids=IDS)
    np.testing.assert_array_equal(np.asarray(jnp.argmax(logits, -1)), np.asarray(greedy))
    # sampling follows the conditionals: different keys give different joint actions
    acts = jax.vmap(lambda k: networks.apply_method(gd, p, "sample", obs, k, group_ids=IDS)[0])(
        jax.random.split(jax.random.PRNGKey(3), 8)
    )
    assert len({tuple(np.asarray(a).ravel()) for a in acts}) > 1


def test_decoder_is_causal(model):
    """Agent i's conditional depends on the actions of agents < i only."""
    gd, p = model
    obs = _obs(4, lead=())
    a = jnp.zeros((A,), jnp.int32)
    base, _ = networks.apply_model(gd, p, obs, a, group_ids=IDS)
    for j in (0, 3, A - 1):
        changed, _ = networks.apply_model(gd, p, obs, a.at[j].set(2), group_ids=IDS)
        np.testing.assert_allclose(np.asarray(changed[: j + 1]), np.asarray(base[: j + 1]))
        if j < A - 1:
            assert not np.allclose(np.asarray(changed[j + 1 :]), np.asarray(base[j + 1 :]))


@settings(max_examples=15, deadline=None)
@given(perm=st.permutations(list(range(A))), seed=st.integers(0, 1000))
def test_encoders_are_permutation_equivariant(model, perm, seed):
    """The reward and cost encoders are permutation-equivariant over agents when the agents'
    group labels move with them (only the decoder's generation order breaks the symmetry);
    the group labels matter."""
    gd, p = model
    obs = _obs(seed)
    perm = np.asarray(perm)
    v = networks.apply_method(gd, p, "values", obs, group_ids=IDS)
    vp = networks.apply_method(gd, p, "values", obs[:, perm], group_ids=IDS[perm])
    np.testing.assert_allclose(np.asarray(vp), np.asarray(v)[:, perm], rtol=1e-5, atol=1e-5)
    v_other = networks.apply_method(gd, p, "values", obs, group_ids=IDS[::-1])
    assert not np.allclose(np.asarray(v_other), np.asarray(v))
    assert not np.allclose(np.asarray(v[..., 0]), np.asarray(v[..., 1]))  # two encoders


def test_gradients_reach_every_parameter(model):
    gd, p = model
    obs = _obs(5)
    act = jnp.ones((2, A), jnp.int32)

    def loss(params):
        logits, values = networks.apply_model(gd, params, obs, act, group_ids=IDS)
        return jnp.sum(jax.nn.log_softmax(logits)[..., 0]) + jnp.sum(values**2)

    g = jax.grad(loss)(p)
    for path, leaf in jax.tree_util.tree_leaves_with_path(g):
        assert float(jnp.max(jnp.abs(leaf))) > 0, path


def test_value_errors(model):
    gd, p = model
    with pytest.raises(ValueError, match="n_heads"):
        networks.init_params(jax.random.PRNGKey(0), **dict(KW, hidden=9))
    with pytest.raises(ValueError, match=">= 1"):
        networks.init_params(jax.random.PRNGKey(0), **dict(KW, n_blocks=0))
    with pytest.raises(ValueError, match="actions must have shape"):
        networks.apply_model(gd, p, _obs(0), jnp.zeros((2, A + 1), jnp.int32), group_ids=IDS)
    with pytest.raises(ValueError, match="expects obs"):
        networks.apply_model(gd, p, jnp.zeros((2, A, 5)), jnp.zeros((2, A), jnp.int32))
    with pytest.raises(ValueError, match="group_ids"):
        networks.apply_model(gd, p, _obs(0), jnp.zeros((2, A), jnp.int32))
    with pytest.raises(ValueError, match="group_ids must have shape"):
        networks.apply_model(gd, p, _obs(0), jnp.zeros((2, A), jnp.int32), group_ids=IDS[:, :1])
    with pytest.raises(ValueError, match="n_groups"):
        networks.init_params(jax.random.PRNGKey(0), **dict(KW, n_groups=(0,)))
    with pytest.raises(ValueError, match="mat_heads"):
        PPOConfig(model="mat", hidden=8, mat_heads=3)
    with pytest.raises(ValueError, match="exclude"):
        PPOConfig(model="mat", single_agent=True)
    with pytest.raises(ValueError, match="model"):
        PPOConfig(model="rnn")


def test_mat_lagr_trainer():
    """MAT-Lagr through the engine: the rollout's log-probabilities (generation) equal the
    update's (teacher forcing), so the first minibatch starts at ratio 1; the multiplier follows
    the cost; imitation and greedy acting work."""
    env, params = aps.make(
        {"n_aps": 3, "n_ues": 2, "window_slots": 2, "n_windows": 3, "history": 2, "radius_m": 150}
    )
    cfg = dict(
        n_envs=4,
        n_steps=3,
        n_updates=2,
        updates_per_chunk=2,
        epochs=1,
        n_minibatches=1,
        hidden=8,
        lr=3e-3,
        lagrangian=True,
        lambda_lr=0.1,
        model="mat",
        pretrain_policy="2-strongest",
        pretrain_updates=30,
    )
    tr = make_train(cfg, env, params)
    # the agents' groups come from the graph: pair (l, k) = agent l K + k is in AP group l and
    # UE group k
    np.testing.assert_array_equal(
        tr.policy.group_ids, [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]]
    )
    rs, pre = jax.jit(tr.init_with_metrics)(jax.random.PRNGKey(0))
    acc = np.asarray(pre["accuracy"])
    assert acc[-5:].mean() > acc[:5].mean()
    # one rollout: the stored log-probs are the teacher-forced ones
    _, _, traj = jax.jit(tr._rollout)(rs)  # jitted: eager dispatch of the scans is slow
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), traj)
    logits, values = jax.jit(tr.forward)(rs.params, flat["obs"], flat["action"])
    lp = jnp.take_along_axis(jax.nn.log_softmax(logits), flat["action"][..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(lp), np.asarray(flat["logp"]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(values), np.asarray(flat["value"]), atol=1e-5)
    rs2, m = jax.jit(tr.update)(rs)
    for v in m.values():
        assert np.all(np.isfinite(np.asarray(v)))
    lam = np.asarray(m["lagrange"])
    np.testing.assert_allclose(
        lam[1], max(0.0, lam[0] + 0.1 * (float(m["cost"][0]) - 0.0)), rtol=1e-5
    )
    assert any(
        not np.allclose(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(rs.params), jax.tree.leaves(rs2.params), strict=True)
    )
    act = jax.jit(tr.act)(rs2.params, rs2.obs)
    assert act.shape == (4, env.n_agents) and act.dtype == jnp.int32
