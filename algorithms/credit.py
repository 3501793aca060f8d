"""Credit assignment by learned intrinsic rewards ([MOBILE-AP] section IV-B, eqs. (47)-(53)).

The team reward (the sum SE) is shared by all agents; an intrinsic reward per agent, mixed
with the extrinsic one, tells each agent its own contribution:

* ``AttentionIntrinsicReward`` (ARN, ``A_r`` of eq. (47)): ``r_in,l = A_r(O_t, A_t)_l``; each
  agent's observation and action are embedded, ``e_l = relu(W_e [o_l; u_l] + b_e)``, attend to
  all agents' embeddings (``n_heads`` heads), and
  ``r_in,l = scale tanh(w^T [e_l; att_l] + c)``;
* ``HyperRewardMixer`` (HRN, ``H_r`` of eq. (47)): a hypernetwork of the global state ``s``
  generates per-agent mixing weights,
  ``r_m,l = softplus(w_ex,l(s) + c0) r_ex,l + w_in,l(s) r_in,l`` (``c0`` so that the initial
  extrinsic weight is 1; the extrinsic weight stays positive, as in QMIX's monotone mixing);
* ``LocalIntrinsicReward`` (LIIR, Du et al. 2019, "LIIR: Learning Individual Intrinsic Reward in
  Multi-Agent Reinforcement Learning"): ``r_in,l = scale tanh(MLP([o_l; u_l; onehot(l)]))``
  with the fixed mixing ``r_m,l = r_ex,l + lambda r_in,l``.

Their parameters ``eta`` are learned by the meta-gradient of eq. (53) (``algorithms.sf_maddpg``):
the actor step ``theta'(eta)`` taken on the mixed rewards is differentiated, and ``eta`` ascends
the extrinsic critic's value of the updated actors.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import MLP, MultiHeadAttention

_C0 = math.log(math.e - 1.0)  # softplus(_C0) = 1


class AttentionIntrinsicReward(nnx.Module):
    """ARN: ``obs[..., A, F]``, ``u[..., A, D]`` -> ``r_in[..., A]`` in ``[-scale, scale]``
    (module docstring; equivariant to permutations of the agents)."""

    def __init__(self, obs_features, action_features, d, n_heads, scale, *, rngs: nnx.Rngs):
        self.embed = nnx.Linear(int(obs_features) + int(action_features), int(d), rngs=rngs)
        self.att = MultiHeadAttention(int(d), int(n_heads), rngs=rngs)
        self.out = MLP(2 * int(d), [], 1, out_scale=0.1, rngs=rngs)
        self.scale = float(scale)

    def __call__(self, obs, u):
        e = jax.nn.relu(self.embed(jnp.concatenate([obs, u], -1)))
        att = self.att(e, e)
        return self.scale * jnp.tanh(self.out(jnp.concatenate([e, att], -1))[..., 0])


class HyperRewardMixer(nnx.Module):
    """HRN: ``s[..., S]``, ``r_ex[..., A]``, ``r_in[..., A]`` -> ``(r_m[..., A], w_ex[..., A])``
    with ``r_m = softplus(w_ex(s) + c0) r_ex + w_in(s) r_in`` (module docstring)."""

    def __init__(self, state_features, n_agents, hidden, *, rngs: nnx.Rngs):
        self.n_agents = int(n_agents)
        self.hyper = MLP(
            int(state_features), [int(hidden)], 2 * self.n_agents, out_scale=0.1, rngs=rngs
        )

    def __call__(self, s, r_ex, r_in):
        w = self.hyper(s).reshape(s.shape[:-1] + (self.n_agents, 2))
        w_ex = jax.nn.softplus(w[..., 0] + _C0)
        return w_ex * r_ex + w[..., 1] * r_in, w_ex


class LocalIntrinsicReward(nnx.Module):
    """LIIR: ``obs[..., A, F]``, ``u[..., A, D]`` -> ``r_in[..., A]`` in ``[-scale, scale]``
    from each agent's own observation, action and one-hot id."""

    def __init__(self, obs_features, action_features, n_agents, hidden, scale, *, rngs):
        self.n_agents = int(n_agents)
        self.net = MLP(
            int(obs_features) + int(action_features) + self.n_agents,
            [int(hidden)],
            1,
            out_scale=0.1,
            rngs=rngs,
        )
        self.scale = float(scale)

    def __call__(self, obs, u):
        ids = jnp.broadcast_to(
            jnp.eye(self.n_agents, dtype=obs.dtype), obs.shape[:-1] + (self.n_agents,)
        )
        x = jnp.concatenate([obs, u, ids], -1)
        return self.scale * jnp.tanh(self.net(x)[..., 0])
