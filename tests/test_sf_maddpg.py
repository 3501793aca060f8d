"""SF-MADDPG ([MOBILE-AP] section IV): the hyper permutation actor's PI / PE properties under
permutations of the UEs, agent equivariance with GNN communication, the entity embedding
against a NumPy implementation of eq. (40), the neighbour graph against brute force, the
meta-gradient of eq. (53) against finite differences, bad configurations, and a short seeded
training run."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import algorithms
from algorithms import sf_maddpg
from algorithms.comm import neighbour_mask
from algorithms.hpn import HyperEntityEmbedding
from cfmimo_jax import envs

SMALL = {
    "n_envs": 4,
    "n_steps": 5,
    "n_updates": 4,
    "updates_per_chunk": 2,
    "batch_size": 32,
    "meta_batch": 16,
    "learning_starts": 32,
    "buffer_size": 1000,
    "random_steps": 2,
    "rnn_hidden": 32,
    "hyper_hidden": 16,
    "embed_dim": 16,
    "intrinsic_hidden": 16,
    "hidden": [32],
    "gnn_neighbours": 2,
}


@pytest.fixture(scope="module")
def env_params():
    return envs.make(
        "mobile_ap",
        {"n_aps": 4, "n_antennas": 2, "n_ues": 3, "episode_steps": 5, "opt_steps": 2},
    )


@pytest.fixture(scope="module")
def obs_batch(env_params):
    env, p = env_params
    obs, _ = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.PRNGKey(3), 5), p)
    return np.asarray(obs, np.float32)  # [5, A, F]


def _permute_ues(obs, layout, perm):
    """The observation of the same network with the UEs renumbered: UE k's features move to
    row perm^-1... i.e. new entity row k = old entity row perm[k]."""
    out = obs.copy()
    ent = layout["entity"]  # [K, f_r]
    out[..., ent] = obs[..., ent[perm]]
    return out


def _split(env, z):
    """Flat pre-tanh output [..., A, D] -> dict by leaf (spaces.flatten order)."""
    keys = sorted(env.action_space)
    out, i = {}, 0
    for k in keys:
        n = int(np.prod(env.action_space[k].shape))
        out[k] = z[..., i : i + n]
        i += n
    return out


@pytest.mark.parametrize("preset", ["sf_maddpg", "pe_maddpg"])
def test_hpn_actor_pi_and_pe_under_ue_permutations(env_params, obs_batch, preset):
    env, p = env_params
    tr = algorithms.make_train(preset, SMALL, env, p)
    params = tr.actor_net.init(jax.random.PRNGKey(1))
    f = jax.jit(tr.policy_pre)
    z = _split(env, np.asarray(f(params, obs_batch)))
    for perm in itertools.permutations(range(env.K)):
        perm = np.array(perm)
        if (perm == np.arange(env.K)).all():
            continue
        zp = _split(env, np.asarray(f(params, _permute_ues(obs_batch, env.obs_layout, perm))))
        # PI (eq. (27)): the move and the antenna weights do not depend on the UE order
        np.testing.assert_allclose(zp["move"], z["move"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(zp["antenna"], z["antenna"], rtol=1e-4, atol=1e-5)
        # PE (eq. (32)): the per-UE powers are permuted with the UEs
        np.testing.assert_allclose(zp["power"], z["power"][..., perm], rtol=1e-4, atol=1e-5)


def test_mlp_actor_is_not_permutation_invariant(env_params, obs_batch):
    """The same check fails for the plain MLP actor (the test above can fail)."""
    env, p = env_params
    tr = algorithms.make_train("co_maddpg", SMALL, env, p)
    params = tr.actor_net.init(jax.random.PRNGKey(1))
    z = _split(env, np.asarray(tr.policy_pre(params, obs_batch)))
    perm = np.array([1, 2, 0])
    zp = _split(
        env, np.asarray(tr.policy_pre(params, _permute_ues(obs_batch, env.obs_layout, perm)))
    )
    assert np.max(np.abs(zp["move"] - z["move"])) > 1e-3


def test_comm_actor_is_equivariant_to_agent_permutations(env_params, obs_batch):
    env, p = env_params
    tr = algorithms.make_train("sf_maddpg", SMALL, env, p)
    params = tr.actor_net.init(jax.random.PRNGKey(2))
    z = np.asarray(tr.policy_pre(params, obs_batch))
    rng = np.random.default_rng(0)
    for _ in range(3):
        perm = rng.permutation(env.M)
        zp = np.asarray(tr.policy_pre(params, obs_batch[:, perm]))
        np.testing.assert_allclose(zp, z[:, perm], rtol=1e-4, atol=1e-5)


def test_entity_embedding_matches_numpy_eq40():
    f_r, f_o, d, H, hh, K = 3, 2, 8, 2, 5, 4
    mod = HyperEntityEmbedding(f_r, f_o, d, H, hh, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    e = rng.normal(size=(6, K, f_r)).astype(np.float32)
    own = rng.normal(size=(6, f_o)).astype(np.float32)
    got = np.asarray(mod(jnp.asarray(e), jnp.asarray(own)))

    def lin(layer, x):
        return x @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...])

    e64 = e.astype(np.float64)
    hid = np.maximum(lin(mod.hyper_in, e64), 0.0)
    W = lin(mod.hyper_out, hid).reshape(6, K, H, f_r, d // H)  # M_in(e_k) per head
    p = np.zeros((6, H, d // H))
    for k in range(K):  # eq. (40): sum_k W_k^T e_k
        for h in range(H):
            p[:, h] += np.einsum("bf,bfd->bd", e64[:, k], W[:, k, h])
    want = np.maximum(lin(mod.merge, p.reshape(6, d)) + lin(mod.own, own.astype(np.float64)), 0)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_neighbour_mask_against_brute_force():
    rng = np.random.default_rng(4)
    pos = rng.uniform(size=(3, 7, 2))
    got = np.asarray(neighbour_mask(jnp.asarray(pos), 3, 1.0))
    for b in range(3):
        for i in range(7):
            d = []
            for j in range(7):
                dx = np.abs(pos[b, i] - pos[b, j])
                dx = np.minimum(dx, 1.0 - dx)  # wrap-around
                d.append(np.hypot(*dx) if j != i else np.inf)
            want = np.zeros(7, bool)
            want[np.argsort(d)[:3]] = True
            np.testing.assert_array_equal(got[b, i], want)
    assert not np.asarray(neighbour_mask(jnp.asarray(pos), 10, 1.0))[
        :, np.arange(7), np.arange(7)
    ].any()
    assert np.asarray(neighbour_mask(jnp.asarray(pos), 10, 1.0)).sum() == 3 * 7 * 6


@pytest.mark.parametrize("preset", ["sf_maddpg", "liir"])
def test_meta_gradient_matches_finite_differences(env_params, obs_batch, preset):
    """d/d eta of the extrinsic value after one actor step (eq. (53)), along a random
    direction, against central differences."""
    env, p = env_params
    tr = algorithms.make_train(preset, SMALL, env, p)
    params, _ = tr.init_learner(jax.random.PRNGKey(5))
    B = obs_batch.shape[0]
    rng = np.random.default_rng(6)
    act = jnp.asarray(rng.uniform(-1, 1, (B, env.M, tr.D)), jnp.float32)
    obs = jnp.asarray(obs_batch)
    joint = (
        obs.reshape(B, -1)
        if not tr.uses_global_state
        else jnp.asarray(rng.normal(size=(B, tr.S)), jnp.float32)
    )
    r_ex = jnp.asarray(rng.normal(10.0, 1.0, (B, env.M)), jnp.float32)
    v_terms = jnp.asarray(rng.normal(0.0, 1.0, (B, env.M)), jnp.float32)
    eta = params["eta"]

    def f(e):
        return tr.meta_objective(
            params["actor"],
            params["critic"],
            params["critic_ex"],
            e,
            obs,
            act,
            joint,
            r_ex,
            v_terms,
        )

    g = jax.jit(jax.grad(f))(eta)
    f = jax.jit(f)
    leaves, tdef = jax.tree.flatten(eta)
    dirs = [jnp.asarray(rng.normal(size=x.shape), x.dtype) for x in leaves]
    norm = np.sqrt(sum(float(jnp.sum(d**2)) for d in dirs))
    dirs = jax.tree.unflatten(tdef, [d / norm for d in dirs])
    analytic = sum(
        float(jnp.sum(a * b))
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(dirs), strict=True)
    )
    eps = 1e-2
    plus = f(jax.tree.map(lambda x, d: x + eps * d, eta, dirs))
    minus = f(jax.tree.map(lambda x, d: x - eps * d, eta, dirs))
    fd = float(plus - minus) / (2 * eps)
    assert abs(analytic) > 1e-6  # eta does move the extrinsic value
    assert abs(fd - analytic) <= 0.05 * abs(analytic) + 1e-5, (fd, analytic)


def test_bad_configurations(env_params):
    env, p = env_params
    bad = [
        ({"actor_input": "cnn"}, "actor_input"),
        ({"embed_dim": 0}, "embed_dim"),
        ({"embed_dim": 10, "hpn_heads": 4}, "hpn_heads"),
        ({"meta_batch": 64, "batch_size": 32}, "meta_batch"),
        ({"pg_weight": -1.0}, "pg_weight"),
        ({"lr_meta": 0.0}, "lr_meta"),
        ({"gnn_rounds": 0}, "gnn_rounds"),
    ]
    for over, name in bad:
        cfg = {**SMALL, **over}
        with pytest.raises(ValueError, match=name):
            tr = sf_maddpg.make_train(
                {**sf_maddpg.DEFAULT_CONFIG, **cfg, "actor_input": over.get("actor_input", "hpn")},
                env,
                p,
            )
            tr.actor_net.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="unknown"):
        algorithms.make_train("sf_maddpg", {"bogus": 1}, env, p)
    pc, pp = envs.make("power_control", {"n_aps": 4, "n_ues": 3, "n_antennas": 1})
    with pytest.raises(ValueError, match="obs_layout"):
        algorithms.make_train("pe_maddpg", SMALL, pc, pp)


def test_short_training_improves_over_its_start(env_params):
    """A seeded SF-MADDPG run raises the greedy policy's mean reward on held-out drops over
    its initial parameters."""
    env, p = env_params
    cfg = {
        **SMALL,
        "n_updates": 24,
        "updates_per_chunk": 24,
        "n_envs": 8,
        "n_steps": 5,
        "batch_size": 64,
        "meta_batch": 16,
        "learning_starts": 64,
        "noise_decay_steps": 60,
        "gamma": 0.5,
        "lr_actor": 0.003,
        "lr_critic": 0.003,
    }
    tr = algorithms.make_train("sf_maddpg", cfg, env, p)
    rs0 = tr.init(jax.random.PRNGKey(0))
    rs, m = jax.jit(tr.update)(rs0)

    def score(actor):
        keys = jax.random.split(jax.random.PRNGKey(99), 32)
        obs, st = jax.vmap(env.reset, (0, None))(keys, p)

        def step(carry, _):
            obs, st = carry
            a = tr.act(actor, obs)
            st2, r, _ = jax.vmap(env.transition, (0, 0, None))(st, a, p)
            return (jax.vmap(env._obs, (0, None))(st2, p), st2), jnp.mean(r)

        return jnp.mean(jax.lax.scan(step, (obs, st), None, length=5)[1])

    s = jax.jit(score)
    before, after = float(s(rs0.params["actor"])), float(s(rs.params["actor"]))
    assert np.isfinite(np.asarray(m["critic_loss"])).all()
    assert after > before + 0.05, (before, after)
