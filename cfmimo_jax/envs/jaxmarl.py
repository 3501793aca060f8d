"""Adapter to JaxMARL's dict-of-agents interface.

JaxMARL (Rutherford et al. 2024) environments expose ``agents`` (names), ``reset(key) ->
(obs_dict, state)`` and ``step(key, state, actions_dict) -> (obs_dict, state, rewards_dict,
dones_dict, infos)`` with ``dones["__all__"]``, plus ``observation_space(agent)`` /
``action_space(agent)`` (here the environment's per-agent ``cfmimo_jax.envs.spaces``).
``JaxMARLAdapter`` wraps any ``MultiAgentEnv`` of this package (array agent axis) into that form
without depending on JaxMARL; agent ``i`` is named ``agent_i``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import MultiAgentEnv
from .spaces import Box, Discrete, MultiDiscrete  # noqa: F401  (re-exported)


class JaxMARLAdapter:
    """Dict-of-agents view of a ``MultiAgentEnv`` with fixed ``params``."""

    def __init__(self, env: MultiAgentEnv, params=None):
        self.env = env
        self.params = env.default_params() if params is None else params
        self.num_agents = env.n_agents
        self.agents = [f"agent_{i}" for i in range(env.n_agents)]

    def _to_dict(self, x):
        return {a: x[i] for i, a in enumerate(self.agents)}

    def reset(self, key):
        obs, state = self.env.reset(key, self.params)
        return self._to_dict(obs), state

    def step(self, key, state, actions: dict):
        missing = set(self.agents) - set(actions)
        if missing:
            raise ValueError(f"actions missing for {len(missing)} agents, e.g. {min(missing)}")
        # stack the agents' (pytree) actions along a new leading agent axis
        a = jax.tree.map(lambda *xs: jnp.stack(xs), *[actions[name] for name in self.agents])
        obs, state, reward, done, info = self.env.step(key, state, a, self.params)
        dones = {name: done for name in self.agents}
        dones["__all__"] = done
        return self._to_dict(obs), state, self._to_dict(reward), dones, info

    def observation_space(self, agent: str):
        """The environment's per-agent observation space (the same for every agent)."""
        return self.env.observation_space

    def action_space(self, agent: str):
        """The environment's per-agent action space (a pytree of spaces if composite)."""
        return self.env.action_space
