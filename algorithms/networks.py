"""Flax NNX actor-critic networks of the PPO trainers, and functional helpers.

Everything is pure JAX inside: the agent axis, the graph nodes/edges and the time axis are array
axes (no Python loops over them), graph arrays are static-shaped with masks, and any number of
leading batch dimensions (environments, rollout steps, ...) are accepted. The building blocks
(``MLP``, ``GRUEncoder``, ``GraphAttention``, ...) live in ``algorithms.layers`` and are
re-exported here.

Models
------
``AgentActorCritic``   shared-parameter actor-critic for all agents: encoder (GRU or MLP) ->
                       GNN (residual) -> policy logits and ``n_value_heads`` values, with a local
                       (IPPO) or centralised (MAPPO: Yu et al. 2022, "The Surprising
                       Effectiveness of PPO in Cooperative Multi-Agent Games") critic.
``CentralActorCritic`` one monolithic agent over all pairs (the single-agent PPO-Lagr
                       baseline of APS-GNN).
``transformer.MultiAgentTransformer`` (``init_params(model="mat")``).

APS-GNN is "Graph-Neural Multi-Agent Coordination for Distributed Access-Point Selection in
Cell-Free Massive MIMO". Functional helpers for trainers (``split_model``, ``apply_model``,
``init_params``) keep the parameters as a plain pytree (an ``nnx.State``) that jit/vmap/scan
and optax handle directly::

    graphdef, _ = init_params(jax.random.PRNGKey(0), **kw)          # static structure, once
    params = jax.vmap(lambda k: init_params(k, **kw)[1])(keys)       # one set per seed
    logits, values = jax.jit(jax.vmap(lambda p, o: apply_model(graphdef, p, o, **graph)))(
        params, obs
    )
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import (  # re-exported (they used to live here)
    MLP,
    GraphAttention,
    GraphEncoder,
    GRUEncoder,
    grid_layout,
    masked_softmax,
)
from .transformer import MultiAgentTransformer

__all__ = [
    "MLP",
    "GRUEncoder",
    "GraphAttention",
    "GraphEncoder",
    "grid_layout",
    "masked_softmax",
    "AgentActorCritic",
    "CentralActorCritic",
    "MultiAgentTransformer",
    "split_model",
    "apply_model",
    "apply_method",
    "init_params",
    "param_count",
]


# --------------------------------------------------------------------------------------------
# Actor-critic
# --------------------------------------------------------------------------------------------


class AgentActorCritic(nnx.Module):
    """Shared-parameter actor-critic for all agents of a scenario.

    ``obs[..., n_agents, T, F]`` (``encoder="gru"``) or ``obs[..., n_agents, F]``
    (``encoder="mlp"``; an ``obs[..., n_agents, T, F]`` with ``T*F == obs_features`` is
    flattened) plus optional graph arrays over the agents -> ``(logits[..., n_agents,
    n_actions], values[..., n_agents, n_value_heads])``.

    Backbone (shared by actor and critic heads, as APS-GNN's reward and cost critics share the
    actor's GRU+GNN, section IV-B of the paper)::

        e_i = GRU(o_i)  or  relu(MLP(o_i))                            [hidden]
        z_i = e_i + GNN(e)_i   (if gnn_rounds > 0 and senders given; else z_i = e_i)
        z_i = 0 for agents outside node_mask

    Heads (two-layer MLPs, ``hidden`` units, ReLU)::

        logits_i = pi(z_i)                      (output kernel init scaled by 0.01)
        values_i = V(z_i)                       critic="local"   (IPPO)
        values_i = V([z_i, mean_{j in mask} z_j])  critic="central" (MAPPO, Yu et al. 2022)

    ``n_value_heads``: 1 for a reward critic, 2 for reward + cost (Lagrangian). ``gru_unroll``
    (call): the GRU's scan unroll for this call (``GRUEncoder``; inference uses a full unroll).
    """

    def __init__(
        self,
        obs_features: int,
        n_actions: int,
        *,
        hidden: int = 64,
        encoder: str = "gru",
        gnn_rounds: int = 2,
        n_edge_types: int = 2,
        critic: str = "local",
        n_value_heads: int = 1,
        rngs: nnx.Rngs,
    ):
        if encoder not in ("gru", "mlp"):
            raise ValueError(f"unknown encoder {encoder!r}; expected 'gru' or 'mlp'")
        if critic not in ("local", "central"):
            raise ValueError(f"unknown critic {critic!r}; expected 'local' or 'central'")
        if gnn_rounds < 0 or n_value_heads < 1 or n_actions < 1 or hidden < 1:
            raise ValueError("gnn_rounds must be >= 0; n_value_heads, n_actions, hidden >= 1")
        self.obs_features = int(obs_features)
        self.n_actions = int(n_actions)
        self.hidden = int(hidden)
        self.encoder_kind = encoder
        self.critic_kind = critic
        self.n_value_heads = int(n_value_heads)
        if encoder == "gru":
            self.encoder = GRUEncoder(self.obs_features, self.hidden, rngs=rngs)
        else:
            self.encoder = MLP(self.obs_features, (self.hidden,), self.hidden, rngs=rngs)
        self.gnn = GraphEncoder(self.hidden, self.hidden, n_edge_types, gnn_rounds, rngs=rngs)
        self.actor = MLP(self.hidden, (self.hidden,), self.n_actions, out_scale=0.01, rngs=rngs)
        critic_in = self.hidden * (2 if critic == "central" else 1)
        self.critic = MLP(critic_in, (self.hidden,), self.n_value_heads, rngs=rngs)

    def __call__(
        self,
        obs: jax.Array,
        senders: jax.Array | None = None,
        receivers: jax.Array | None = None,
        edge_type: jax.Array | None = None,
        edge_mask: jax.Array | None = None,
        node_mask: jax.Array | None = None,
        gru_unroll: int | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        obs = jnp.asarray(obs)
        if self.encoder_kind == "gru":
            if obs.ndim < 3 or obs.shape[-1] != self.obs_features:
                raise ValueError(
                    "encoder 'gru' expects obs[..., n_agents, T, "
                    f"{self.obs_features}], got shape {obs.shape}"
                )
            n_agents = obs.shape[-3]
        else:
            if (
                obs.ndim >= 3
                and obs.shape[-1] != self.obs_features
                and obs.shape[-2] * obs.shape[-1] == self.obs_features
            ):
                obs = obs.reshape(obs.shape[:-2] + (self.obs_features,))
            if obs.ndim < 2 or obs.shape[-1] != self.obs_features:
                raise ValueError(
                    f"encoder 'mlp' expects obs[..., n_agents, {self.obs_features}] (or "
                    f"[..., n_agents, T, F] with T*F == {self.obs_features}), got {obs.shape}"
                )
            n_agents = obs.shape[-2]
        if not jnp.issubdtype(obs.dtype, jnp.floating):
            obs = obs.astype(jnp.float32)

        if node_mask is None:
            mask = jnp.ones((n_agents,), bool)
        else:
            mask = jnp.asarray(node_mask, bool)
            if mask.shape != (n_agents,):
                raise ValueError(f"node_mask must have shape ({n_agents},), got {mask.shape}")

        if self.encoder_kind == "gru":
            e = self.encoder(obs, unroll=gru_unroll)
        else:
            e = nnx.relu(self.encoder(obs))
        z = e
        if self.gnn.rounds > 0 and senders is not None:
            if receivers is None:
                raise ValueError("receivers must be given together with senders")
            z = e + self.gnn(e, senders, receivers, edge_type, edge_mask, mask)
        z = jnp.where(mask[:, None], z, jnp.zeros((), z.dtype))

        logits = self.actor(z)
        if self.critic_kind == "central":
            w = mask.astype(z.dtype)[:, None]
            pooled = jnp.sum(z * w, axis=-2, keepdims=True) / jnp.maximum(jnp.sum(w), 1.0)
            c_in = jnp.concatenate([z, jnp.broadcast_to(pooled, z.shape)], axis=-1)
        else:
            c_in = z
        values = self.critic(c_in)
        return logits, values


class CentralActorCritic(nnx.Module):
    """One monolithic agent over all pairs (APS-GNN's PPO-Lagr baseline, section VI-B).

    The state is the concatenation of every agent's latest observation (for a history
    ``obs[..., n_agents, T, F]`` the last step ``obs[..., -1, :]``, the instantaneous channel
    magnitudes of all AP-UE pairs), ``s[..., n_agents F]``; a shared MLP trunk
    ``x = relu(W2 relu(W1 s))`` feeds an actor head with ``n_agents n_actions`` logits (a
    factorised joint action: one categorical per agent, their log-probabilities summed by the
    trainer) and a critic head with ``n_value_heads`` global values, broadcast to every agent.
    ``-> (logits[..., n_agents, n_actions], values[..., n_agents, n_value_heads])``. Graph
    arguments are accepted and ignored (same call signature as ``AgentActorCritic``).
    """

    def __init__(
        self,
        n_agents: int,
        obs_features: int,
        n_actions: int,
        *,
        hidden: int = 64,
        n_value_heads: int = 1,
        rngs: nnx.Rngs,
    ):
        if min(n_agents, obs_features, n_actions, hidden, n_value_heads) < 1:
            raise ValueError(
                "n_agents, obs_features, n_actions, hidden and n_value_heads must be >= 1"
            )
        self.n_agents = int(n_agents)
        self.obs_features = int(obs_features)
        self.n_actions = int(n_actions)
        self.n_value_heads = int(n_value_heads)
        d = self.n_agents * self.obs_features
        self.trunk = MLP(d, (hidden,), hidden, rngs=rngs)
        self.actor = MLP(
            hidden, (hidden,), self.n_agents * self.n_actions, out_scale=0.01, rngs=rngs
        )
        self.critic = MLP(hidden, (hidden,), self.n_value_heads, rngs=rngs)

    def __call__(
        self, obs, senders=None, receivers=None, edge_type=None, edge_mask=None, node_mask=None
    ):
        obs = jnp.asarray(obs)
        if obs.ndim >= 3 and obs.shape[-3] == self.n_agents:
            obs = obs[..., -1, :]  # the latest step of each agent's history
        if obs.ndim < 2 or obs.shape[-2:] != (self.n_agents, self.obs_features):
            raise ValueError(
                f"CentralActorCritic expects obs[..., {self.n_agents}, (T,) "
                f"{self.obs_features}], got shape {obs.shape}"
            )
        lead = obs.shape[:-2]
        x = nnx.relu(self.trunk(obs.reshape(lead + (-1,))))
        logits = self.actor(x).reshape(lead + (self.n_agents, self.n_actions))
        values = self.critic(x)[..., None, :]
        values = jnp.broadcast_to(values, lead + (self.n_agents, self.n_value_heads))
        return logits, values


# --------------------------------------------------------------------------------------------
# Functional helpers
# --------------------------------------------------------------------------------------------


def split_model(model: nnx.Module) -> tuple[Any, nnx.State]:
    """``nnx.split``: ``(graphdef, params)``; ``params`` is a pytree of arrays (``nnx.State``).

    ``graphdef`` is static (hashable, no arrays): close over it or pass it as a static argument.
    """
    return nnx.split(model)


def apply_model(graphdef: Any, params: nnx.State, *args, **kwargs):
    """Rebuild the module from ``(graphdef, params)`` (``nnx.merge``) and call it.

    Pure function of ``params`` and the inputs: safe under ``jax.jit``/``vmap``/``scan``/``grad``.
    """
    return nnx.merge(graphdef, params)(*args, **kwargs)


def apply_method(graphdef: Any, params: nnx.State, method: str, *args, **kwargs):
    """Like ``apply_model`` but calls the module's method ``method`` (e.g. the transformer's
    ``"sample"`` or ``"values"``)."""
    return getattr(nnx.merge(graphdef, params), method)(*args, **kwargs)


def init_params(key: jax.Array, **ctor_kwargs) -> tuple[Any, nnx.State]:
    """``AgentActorCritic(**ctor_kwargs)`` (or, with ``model="central"``,
    ``CentralActorCritic``; with ``model="mat"``, ``transformer.MultiAgentTransformer``)
    initialised from a PRNG key: ``(graphdef, params)``.

    ``key`` may be a raw ``uint32[2]`` key or a typed key, and may be traced: inside
    ``jax.vmap`` over keys only ``params`` can be returned (``graphdef`` is static; take it from
    one call outside the transformation). Identical keys give identical parameters.
    """
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    ctor_kwargs = dict(ctor_kwargs)
    kind = ctor_kwargs.pop("model", "agent")
    if kind == "agent":
        model = AgentActorCritic(**ctor_kwargs, rngs=nnx.Rngs(params=key))
    elif kind == "central":
        model = CentralActorCritic(**ctor_kwargs, rngs=nnx.Rngs(params=key))
    elif kind == "mat":
        model = MultiAgentTransformer(**ctor_kwargs, rngs=nnx.Rngs(params=key))
    else:
        raise ValueError(f"model must be 'agent', 'central' or 'mat', got {kind!r}")
    return split_model(model)


def param_count(params: nnx.State) -> int:
    """Number of scalar parameters in a params pytree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))
