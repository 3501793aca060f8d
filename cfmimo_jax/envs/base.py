"""The multi-agent environment interface.

Functional, in the style of gymnax / JaxMARL, with the agent axis as an array axis:

* ``reset(key, params) -> (obs, state)``
* ``step(key, state, actions, params) -> (obs, state, reward, done, info)``

``obs[n_agents, *obs_shape]``, ``actions`` a pytree of arrays matching the per-agent
``action_space`` with the agent axis first (``actions[n_agents]`` int32 for a ``Discrete``
space, ``actions[n_agents, n]`` for ``Box(low, high, (n,))``, a dict of such for composite
actions), ``reward[n_agents]``; ``done`` is one bool per environment (all agents of a network
end an episode together). ``step`` resets automatically: when ``done``, the returned
``obs``/``state`` are those of a fresh episode and ``info["final_obs"]`` holds the last
observation of the finished one; ``info["terminated"]`` and ``info["truncated"]`` are kept apart
(a trainer bootstraps the value of ``final_obs`` after a truncation, never after a termination).
``state`` is an immutable pytree dataclass and ``params`` a pytree of scalars (static shapes),
so ``jax.vmap`` runs thousands of environments, or sweeps over parameters, with one compiled
program. ``step_batch`` is ``jax.vmap(step)`` over a leading environment axis (same keys, same
results) that computes the resets only on the steps where some environment of the batch ends its
episode (one ``lax.cond`` for the batch, instead of a reset per environment per step that
``where`` then discards).

Every environment declares per-agent ``observation_space`` and ``action_space``
(``cfmimo_jax.envs.spaces``), optionally ``global_state(state)`` with its ``global_state_space``
for centralised critics (``info["final_global_state"]`` then carries the global state of the
finished episode's last state, next to ``final_obs``), and its baseline policies in
``heuristics()``: ``name -> policy(obs, state) -> actions``; a heuristic may read the true
``state`` (oracle baselines such as an optimiser of the powers), learned policies only ``obs``.

Agents exchange messages over a static graph (``AgentGraph``): fixed-size sender/receiver
arrays with edge types and masks, the same for every environment of a kind.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import spaces as S


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class AgentGraph:
    """Static communication graph between agents (fixed-size arrays with masks).

    senders[E], receivers[E]: int32 agent indices of each directed edge ``sender -> receiver``;
    edge_type[E]: int32 in ``[0, n_edge_types)``; edge_mask[E], node_mask[n_agents]: bool, false
    for padding.
    """

    senders: jax.Array
    receivers: jax.Array
    edge_type: jax.Array
    edge_mask: jax.Array
    node_mask: jax.Array

    @property
    def n_nodes(self) -> int:
        return int(self.node_mask.shape[-1])

    @property
    def n_edges(self) -> int:
        return int(self.senders.shape[-1])

    def to_jraph(self, nodes=None):
        """The graph as a ``jraph.GraphsTuple`` (edge features: one-hot edge types)."""
        import jraph

        n_types = int(np.max(np.asarray(self.edge_type), initial=0)) + 1
        return jraph.GraphsTuple(
            nodes=nodes,
            edges=jax.nn.one_hot(self.edge_type, n_types),
            senders=self.senders,
            receivers=self.receivers,
            n_node=jnp.array([self.n_nodes]),
            n_edge=jnp.array([self.n_edges]),
            globals=None,
        )


class MultiAgentEnv:
    """Base class: subclasses implement ``reset_env`` and ``step_env`` (no auto-reset).

    Attributes set by subclasses: ``n_agents``, ``observation_space`` and ``action_space``
    (per agent; a pytree of spaces for composite actions), optionally ``global_state_space``.
    ``obs_shape`` and, for a ``Discrete`` action space, ``n_actions`` are derived from them.
    ``sample_metrics``: ``info`` keys (any shape per environment step, e.g. a scalar sum rate
    or per-UE SINRs ``[K]``) whose values an evaluation keeps unaveraged (per drop, step and
    UE, for CDFs; ``algorithms.evaluation``); default none.
    """

    n_agents: int
    observation_space: S.Space
    action_space: object
    global_state_space: S.Space | None = None
    sample_metrics: tuple = ()

    @property
    def obs_shape(self) -> tuple:
        """Shape of one agent's observation."""
        return tuple(self.observation_space.shape)

    @property
    def n_actions(self) -> int:
        """Number of actions of a ``Discrete`` per-agent action space."""
        if not isinstance(self.action_space, S.Discrete):
            raise AttributeError(
                f"n_actions is defined for a Discrete action space, this one is {self.action_space}"
            )
        return int(self.action_space.n)

    def default_params(self):
        raise NotImplementedError

    def reset_env(self, key, params):
        """``-> (obs[n_agents, *obs_shape], state)``."""
        raise NotImplementedError

    def step_env(self, key, state, actions, params):
        """``-> (obs, state, reward[n_agents], terminated, truncated, info)``; no reset."""
        raise NotImplementedError

    def global_state(self, state):
        """The state a centralised critic sees, ``[*global_state_space.shape]`` (``None`` when
        the environment defines none: critics then take the joint observation)."""
        return None

    def graph(self) -> AgentGraph:
        """The agents' communication graph (default: no edges)."""
        z = jnp.zeros((0,), jnp.int32)
        return AgentGraph(z, z, z, jnp.zeros((0,), bool), jnp.ones((self.n_agents,), bool))

    def heuristics(self) -> dict:
        """The scenario's baseline policies, ``name -> policy(obs[..., n_agents, ...], state)
        -> actions`` with the leading axes of ``obs`` (run through the same ``step``; also
        imitation teachers). ``state`` is the environment state (same leading axes)."""
        return {}

    @property
    def default_heuristics(self) -> tuple:
        """Names of the heuristics that an evaluation compares against by default (all)."""
        return tuple(self.heuristics())

    def _final_info(self, info, obs_st, st_st, terminated, truncated, batched: bool):
        info = dict(info, final_obs=obs_st, terminated=terminated, truncated=truncated)
        if self.global_state_space is not None:
            gs = jax.vmap(self.global_state)(st_st) if batched else self.global_state(st_st)
            info["final_global_state"] = gs
        return info

    def reset(self, key, params=None):
        """Start an episode: ``-> (obs, state)``."""
        params = self.default_params() if params is None else params
        return self.reset_env(key, params)

    def step(self, key, state, actions, params=None):
        """One step with auto-reset: ``-> (obs, state, reward, done, info)`` (see module doc)."""
        params = self.default_params() if params is None else params
        actions = jax.tree.map(jnp.asarray, actions)
        S.check_actions(self.action_space, actions, self.n_agents)
        k_step, k_reset = jax.random.split(key)
        obs_st, st_st, reward, terminated, truncated, info = self.step_env(
            k_step, state, actions, params
        )
        obs_re, st_re = self.reset_env(k_reset, params)
        done = jnp.logical_or(terminated, truncated)
        state = jax.tree.map(lambda a, b: jnp.where(done, a, b), st_re, st_st)
        obs = jax.tree.map(lambda a, b: jnp.where(done, a, b), obs_re, obs_st)
        info = self._final_info(info, obs_st, st_st, terminated, truncated, batched=False)
        return obs, state, reward, done, info

    def step_batch(self, keys, states, actions, params=None):
        """``jax.vmap(step, (0, 0, 0, None))`` with the reset work skipped where possible.

        ``keys[B]``, ``states`` with leading axis ``B``, ``actions`` with leading axes
        ``[B, n_agents]`` (every leaf of the action pytree), one shared
        ``params``: ``-> (obs[B, ...], states, reward[B, n_agents], done[B], info)``, equal to
        the vmapped ``step`` with the same keys. The resets of the whole batch run under one
        ``lax.cond(any(done))``, so a batch whose episodes end together (fixed-length episodes
        started together) pays for a reset once per episode instead of at every step. Under an
        outer ``vmap`` (e.g. over seeds) the ``cond`` becomes a select and both branches run.
        """
        params = self.default_params() if params is None else params
        actions = jax.tree.map(jnp.asarray, actions)
        S.check_actions(self.action_space, actions, self.n_agents, batch_ndim=1)
        split = jax.vmap(jax.random.split)(keys)
        k_step, k_reset = split[:, 0], split[:, 1]
        obs_st, st_st, reward, terminated, truncated, info = jax.vmap(
            self.step_env, (0, 0, 0, None)
        )(k_step, states, actions, params)
        done = jnp.logical_or(terminated, truncated)

        def pick(a, b):
            return jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b)

        def with_reset(_):
            obs_re, st_re = jax.vmap(self.reset_env, (0, None))(k_reset, params)
            return jax.tree.map(pick, obs_re, obs_st), jax.tree.map(pick, st_re, st_st)

        obs, state = jax.lax.cond(
            jnp.any(done), with_reset, lambda _: (obs_st, st_st), operand=None
        )
        info = self._final_info(info, obs_st, st_st, terminated, truncated, batched=True)
        return obs, state, reward, done, info


def state_policy(per_env, batch_size: int | None = None):
    """A heuristic ``policy(obs[..., n_agents, *obs_shape], state) -> actions`` from
    ``per_env(state) -> actions`` of one environment (an oracle that reads the state): called
    directly for one environment, ``jax.vmap``-ed over the leading (batch) axes of ``obs``,
    flattened, otherwise. The observation's last two axes are the agent and feature axes.

    ``batch_size``: the environments are processed ``batch_size`` at a time
    (``jax.lax.map(..., batch_size=...)``: the same result, bounded memory, for oracles whose
    per-environment work is large); ``None`` vectorises the whole batch at once."""
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")

    def policy(obs, state):
        batch = tuple(jnp.shape(obs)[:-2])
        if not batch:
            return per_env(state)
        n = int(np.prod(batch))
        flat = jax.tree.map(lambda a: a.reshape((n,) + a.shape[len(batch) :]), state)
        if batch_size is None or batch_size >= n:
            out = jax.vmap(per_env)(flat)
        else:
            out = jax.lax.map(per_env, flat, batch_size=batch_size)
        return jax.tree.map(lambda a: a.reshape(batch + a.shape[1:]), out)

    return policy
