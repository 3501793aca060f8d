"""The PPO loss of ``algorithms.mappo.Trainer`` against NumPy float64 formulas from the equations.

``Trainer._loss(params, minibatch, hparams)`` is called on a minibatch built by hand (random
actions, old log-probabilities, old values, returns and advantages) for a tiny AP-selection
network; the reference takes the logits and values that ``Trainer.forward`` returns for the same
minibatch and evaluates, in float64:

* the clipped surrogate (Schulman et al. 2017, "Proximal Policy Optimization Algorithms",
  eq. (7)): ``L = mean(min(r A, clip(r, 1 - eps, 1 + eps) A))``, ``r = exp(logp - logp_old)``,
  ``pg_loss = -L``;
* the clipped value loss ``0.5 mean(sum_heads max((V - R)^2, (V_old + clip(V - V_old, -eps,
  eps) - R)^2))``;
* the entropy of the categorical policy ``H = mean(-sum_a p_a log p_a)``;
* ``total = pg_loss + vf_coef v_loss - ent_coef H``.

The Lagrangian actor advantage (APS-GNN eq. (13), divided by ``1 + lambda``),
``(norm(A_r) - lambda norm(A_c)) / (1 + lambda)`` with ``norm(x) = (x - mean x) / (std x +
1e-8)`` over the whole rollout, is inline in ``Trainer._update_step``: the test runs one real
update (one epoch, one minibatch) with ``_loss`` wrapped to record the minibatch it receives,
recovers the raw reward and cost advantages from it (GAE returns are ``A + V``) and compares
the actor advantage the update used with the formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algorithms
from cfmimo_jax.envs import ap_selection

ENV = {"n_aps": 3, "n_ues": 2, "window_slots": 2, "history": 2}
SMALL = {
    "n_envs": 4,
    "n_steps": 2,
    "n_updates": 1,
    "updates_per_chunk": 1,
    "epochs": 1,
    "n_minibatches": 1,
    "hidden": 8,
    "gnn_rounds": 1,
}
CLIP, VF_COEF, ENT_COEF = 0.2, 0.7, 0.05


@pytest.fixture(scope="module")
def env_params():
    return ap_selection.make(ENV)


@pytest.fixture(scope="module")
def mappo(env_params):
    """A small ``mappo`` trainer and its initial runner state."""
    env, params = env_params
    trainer = algorithms.make_train("mappo", SMALL, env, params)
    return trainer, trainer.init(jax.random.key(0))


# ---- independent float64 reference ----------------------------------------------------------


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def reference_loss(logits, values, mb, clip, vf_coef, ent_coef):
    """PPO loss terms from the equations, in float64 (see the module docstring)."""
    logits = np.asarray(logits, np.float64)
    values = np.asarray(values, np.float64)
    action = np.asarray(mb["action"])
    logp_old = np.asarray(mb["logp"], np.float64)
    adv = np.asarray(mb["adv"], np.float64)
    v_old = np.asarray(mb["value"], np.float64)
    ret = np.asarray(mb["ret"], np.float64)

    logp_all = _log_softmax(logits)
    logp = np.take_along_axis(logp_all, action[..., None], axis=-1)[..., 0]
    ratio = np.exp(logp - logp_old)
    surrogate = np.minimum(ratio * adv, np.clip(ratio, 1.0 - clip, 1.0 + clip) * adv)
    pg_loss = -surrogate.mean()

    v_clipped = v_old + np.clip(values - v_old, -clip, clip)
    v_loss = 0.5 * np.maximum((values - ret) ** 2, (v_clipped - ret) ** 2).sum(-1).mean()

    p = np.exp(logp_all)
    entropy = (-(p * logp_all).sum(-1)).mean()
    total = pg_loss + vf_coef * v_loss - ent_coef * entropy
    return dict(
        total=total,
        pg_loss=pg_loss,
        v_loss=v_loss,
        entropy=entropy,
        approx_kl=np.mean((ratio - 1.0) - np.log(ratio)),
        clip_frac=np.mean(np.abs(ratio - 1.0) > clip),
        ratio=ratio,
    )


def reference_lagrangian_advantage(adv_r, adv_c, lam):
    """``(norm(A_r) - lambda norm(A_c)) / (1 + lambda)``, each normalised by its own statistics."""

    def norm(x):
        x = np.asarray(x, np.float64)
        return (x - x.mean()) / (x.std() + 1e-8)

    return (norm(adv_r) - lam * norm(adv_c)) / (1.0 + lam)


# ---- the clipped surrogate, value clipping and entropy ---------------------------------------


def _hand_minibatch(trainer, rs, n_heads, seed):
    """A minibatch like those of ``_update_step`` (leading axis: samples), built by hand: the
    observations of the runner state's environments and perturbed copies of them, random
    actions, and old log-probabilities / values perturbed from the current policy's so that
    ratios and value differences fall on both sides of the clip range."""
    rng = np.random.default_rng(seed)
    params = rs.params
    obs0 = np.asarray(rs.obs, np.float32)
    obs = jnp.asarray(np.concatenate([obs0, obs0 + rng.normal(0.0, 0.5, obs0.shape)]), jnp.float32)
    B, A = obs.shape[:2]
    env = trainer.env
    action = jnp.asarray(rng.integers(0, env.n_actions, (B, A)), jnp.int32)
    logits, values = jax.jit(trainer.forward)(params, obs, action)
    logp_now = np.take_along_axis(
        np.asarray(jax.nn.log_softmax(logits)), np.asarray(action)[..., None], -1
    )[..., 0]
    v_now = np.asarray(values)
    assert v_now.shape == (B, A, n_heads)
    mb = dict(
        obs=obs,
        action=action,
        logp=jnp.asarray(logp_now + rng.normal(0.0, 0.4, (B, A)), jnp.float32),
        value=jnp.asarray(v_now + rng.normal(0.0, 0.3, v_now.shape), jnp.float32),
        adv=jnp.asarray(rng.normal(0.0, 1.0, (B, A)), jnp.float32),
        ret=jnp.asarray(v_now + rng.normal(0.0, 1.0, v_now.shape), jnp.float32),
    )
    return mb, logits, values


@pytest.mark.parametrize("algorithm", ["mappo", "mappo_lagr"])
def test_loss_matches_equations(env_params, mappo, algorithm):
    """``_loss`` equals the float64 formulas of eq. (7), the clipped value loss and the
    categorical entropy (``mappo_lagr``: two value heads, reward and cost, summed)."""
    env, params = env_params
    if algorithm == "mappo":
        trainer, rs = mappo
    else:
        trainer = algorithms.make_train(algorithm, SMALL, env, params)
        rs = trainer.init(jax.random.key(0))
    n_heads = 2 if algorithm == "mappo_lagr" else 1
    hp = trainer.config.hparams(clip=CLIP, vf_coef=VF_COEF, ent_coef=ENT_COEF)
    mb, logits, values = _hand_minibatch(trainer, rs, n_heads, seed=1)

    total, aux = jax.jit(trainer._loss)(rs.params, mb, hp)
    ref = reference_loss(logits, values, mb, CLIP, VF_COEF, ENT_COEF)

    # the minibatch exercises every branch: ratios clipped above and below and not at all,
    # advantages of both signs, old values clipped and not, and the clipped value term chosen
    # by the max for some samples and not for others
    ratio = ref["ratio"]
    assert (ratio > 1 + CLIP).any() and (ratio < 1 - CLIP).any()
    assert (np.abs(ratio - 1) < CLIP).any()
    v_new = np.asarray(values, np.float64)
    v_old = np.asarray(mb["value"], np.float64)
    ret = np.asarray(mb["ret"], np.float64)
    v_clip = v_old + np.clip(v_new - v_old, -CLIP, CLIP)
    picks_clipped = (v_clip - ret) ** 2 > (v_new - ret) ** 2
    assert picks_clipped.any() and (~picks_clipped).any()

    tol = dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(float(aux["pg_loss"]), ref["pg_loss"], **tol)
    np.testing.assert_allclose(float(aux["v_loss"]), ref["v_loss"], **tol)
    np.testing.assert_allclose(float(aux["entropy"]), ref["entropy"], **tol)
    np.testing.assert_allclose(float(total), ref["total"], **tol)
    np.testing.assert_allclose(float(aux["approx_kl"]), ref["approx_kl"], **tol)
    np.testing.assert_allclose(float(aux["clip_frac"]), ref["clip_frac"], atol=1e-6)

    # the test can fail: each term is far from its variants with a flipped sign or a dropped
    # clip, relative to the tolerance above
    adv = np.asarray(mb["adv"], np.float64)
    unclipped = -(ratio * adv).mean()
    maxed = -np.maximum(ratio * adv, np.clip(ratio, 1 - CLIP, 1 + CLIP) * adv).mean()
    assert min(abs(ref["pg_loss"] - unclipped), abs(ref["pg_loss"] - maxed)) > 1e-3
    v_plain = 0.5 * ((v_new - ret) ** 2).sum(-1).mean()
    assert abs(ref["v_loss"] - v_plain) > 1e-3
    assert abs(ENT_COEF * ref["entropy"]) > 1e-3  # + ent_coef H would be caught


# ---- the Lagrangian advantage of one real update ---------------------------------------------


def test_lagrangian_advantage_of_one_update(env_params):
    """One ``_update_step`` of ``mappo_lagr``: the advantage its actor loss receives equals
    ``(norm(A_r) - lambda norm(A_c)) / (1 + lambda)`` of the rollout's reward and cost
    advantages, and the multiplier then takes the projected step
    ``max(0, lambda + eta (mean cost - d))``."""
    env, params = env_params
    lam0, eta, limit = 1.5, 0.3, 0.05
    cfg = dict(SMALL, lambda_init=lam0, lambda_lr=eta, cost_limit=limit)
    trainer = algorithms.make_train("mappo_lagr", cfg, env, params)
    seen = []
    loss = trainer._loss

    def recording_loss(p, mb, hp):
        jax.debug.callback(
            lambda *a: seen.append([np.asarray(x) for x in a]), mb["adv"], mb["ret"], mb["value"]
        )
        return loss(p, mb, hp)

    trainer._loss = recording_loss  # the instance's; _update_step differentiates self._loss
    rs = trainer.init(jax.random.key(4))
    rs2, metrics = jax.jit(trainer._update_step)(rs, None)
    jax.effects_barrier()

    assert seen, "the update did not call _loss"
    adv, ret, value = seen[0]
    B, A = trainer.batch, env.n_agents
    assert adv.shape == (B, A) and ret.shape == value.shape == (B, A, 2)
    raw = ret.astype(np.float64) - value.astype(np.float64)  # GAE: returns = A + V
    assert raw[..., 1].std() > 1e-3  # the cost advantage is not degenerate
    want = reference_lagrangian_advantage(raw[..., 0], raw[..., 1], lam0)
    np.testing.assert_allclose(adv, want, rtol=1e-4, atol=1e-4)
    # a flipped sign of the cost term or a missing 1 + lambda would be caught
    flipped = reference_lagrangian_advantage(raw[..., 0], -raw[..., 1], lam0)
    assert np.abs(flipped - want).max() > 1e-2
    assert np.abs(want * (1.0 + lam0) - want).max() > 1e-2

    np.testing.assert_allclose(float(metrics["lagrange"]), lam0, rtol=1e-6)
    lam1 = max(0.0, lam0 + eta * (float(metrics["cost"]) - limit))
    np.testing.assert_allclose(float(rs2.lagrange), lam1, rtol=1e-5, atol=1e-6)
