"""Multi-agent RL trainers and networks for the cell-free MIMO environments.

Registry::

    import algorithms
    algorithms.names()                          # ('mappo', 'mappo_lagr', ..., 'maddpg', 'ddqn')
    algorithms.default_config("maddpg")         # the trainer keys a configuration may set
    trainer = algorithms.make_train("maddpg", {"n_updates": 100}, env, env_params)

Every trainer follows one contract (``make_train(config, env, env_params)`` of its module):
``init(key) -> runner_state``, ``update(runner_state) -> (runner_state, metrics)`` (a chunk of
``updates_per_chunk`` updates inside ``lax.scan``), ``train(key)`` composing them (one jittable
function, so ``jax.vmap`` runs seeds), ``act(params, obs, key=None)`` and ``config`` with
``n_envs``, ``n_steps``, ``n_updates`` and ``updates_per_chunk``. An algorithm name is a module
plus a preset of switches (``mappo_lagr`` = PPO with a centralised critic and the Lagrangian);
the presets live here, not in the command line.
"""

from __future__ import annotations

import copy
import importlib

__all__ = ["action_kind", "default_config", "make_train", "module_of", "names", "preset"]

# name -> (trainer module, preset switches applied over the configuration)
_ALGORITHMS: dict[str, tuple[str, dict]] = {
    "mappo": ("algorithms.mappo", dict(critic="central", lagrangian=False)),
    "ippo": ("algorithms.mappo", dict(critic="local", lagrangian=False)),
    "mappo_lagr": ("algorithms.mappo", dict(critic="central", lagrangian=True)),
    "ippo_lagr": ("algorithms.mappo", dict(critic="local", lagrangian=True)),
    # APS-GNN's single-agent baselines: one agent over the whole association matrix
    "ppo_lagr": ("algorithms.mappo", dict(critic="central", lagrangian=True, single_agent=True)),
    "ppo": ("algorithms.mappo", dict(critic="central", lagrangian=False, single_agent=True)),
    # APS-GNN's MAT-Lagr baseline: Multi-Agent Transformer, autoregressive over the agents
    "mat_lagr": ("algorithms.mappo", dict(critic="central", lagrangian=True, model="mat")),
    "mat": ("algorithms.mappo", dict(critic="central", lagrangian=False, model="mat")),
    # off-policy (continuous actions): one actor-critic over the network / CTDE per agent
    "ddpg": ("algorithms.ddpg", dict(centralised_actor=True)),
    "maddpg": ("algorithms.ddpg", dict(centralised_actor=False)),
    # off-policy (discrete actions): independent double DQN
    "ddqn": ("algorithms.dqn", {}),
    # [XL-FUZZY]: DDPG / MADDPG over fuzzy agents (algorithms.fuzzy) that stand for the agents
    "fl_ctce": ("algorithms.fuzzy_ddpg", dict(centralised_actor=True)),
    "fl_ctde": ("algorithms.fuzzy_ddpg", dict(centralised_actor=False)),
    # [MOBILE-AP]: SF-MADDPG (hyper permutation actor + GNN communication + directional
    # decoupling) and its ablations, on the MADDPG of algorithms.ddpg
    "sf_maddpg": ("algorithms.sf_maddpg", dict(actor_input="hpn", comm="gnn", credit="arn_hrn")),
    "pe_maddpg": ("algorithms.sf_maddpg", dict(actor_input="hpn", comm="none", credit="none")),
    "co_maddpg": ("algorithms.sf_maddpg", dict(actor_input="mlp", comm="gnn", credit="none")),
    "airmn": ("algorithms.sf_maddpg", dict(actor_input="mlp", comm="none", credit="arn_hrn")),
    "liir": ("algorithms.sf_maddpg", dict(actor_input="mlp", comm="none", credit="liir")),
    # [MOBILE-AP]'s MDGNN baseline: centralised multidimensional GNN power control, static APs
    "mdgnn": ("algorithms.mdgnn", {}),  # dims=3 by default (trainer key dims: 1 | 2 | 3)
}


def names() -> tuple[str, ...]:
    """The registered algorithm names."""
    return tuple(_ALGORITHMS)


def _entry(name: str):
    if name not in _ALGORITHMS:
        raise ValueError(f"algorithm must be one of {names()}, got {name!r}")
    return _ALGORITHMS[name]


def module_of(name: str) -> str:
    """The trainer module of an algorithm (algorithms of one module share one config schema)."""
    return _entry(name)[0]


def preset(name: str) -> dict:
    """The switches that ``name`` sets over its module's configuration."""
    return dict(_entry(name)[1])


def default_config(name: str) -> dict:
    """The trainer keys a configuration of ``name`` may set, with their defaults (the module's
    ``DEFAULT_CONFIG``; the preset's switches are not among them)."""
    mod = importlib.import_module(module_of(name))
    return copy.deepcopy(mod.DEFAULT_CONFIG)


# the per-agent action spaces each trainer module handles
_ACTIONS = {
    "algorithms.mappo": "a Discrete action space",
    "algorithms.dqn": "a Discrete action space",
    "algorithms.ddpg": "bounded Box action spaces (a pytree of them for composite actions)",
    "algorithms.fuzzy_ddpg": "bounded Box action spaces and a flat Box observation per agent",
    "algorithms.sf_maddpg": "bounded Box action spaces (the permutation and communication "
    "actors also need the environment's obs_layout)",
    "algorithms.mdgnn": "the mobile_ap dict action {move, power, antenna} and its observations",
}


def action_kind(name: str) -> str:
    """What per-agent action space algorithm ``name`` needs (in words)."""
    return _ACTIONS[module_of(name)]


def _check_actions(name: str, env) -> None:
    from cfmimo_jax.envs import spaces

    leaves = spaces.leaves(env.action_space)
    if module_of(name) in ("algorithms.mappo", "algorithms.dqn"):
        ok = isinstance(env.action_space, spaces.Discrete)
    else:
        ok = all(isinstance(s, spaces.Box) and s.bounded for s in leaves)
    if not ok:
        raise ValueError(
            f"algorithm {name} needs {action_kind(name)}; this environment's per-agent action "
            f"space is {env.action_space}"
        )


def make_train(name: str, config: dict | None, env, env_params):
    """The trainer of algorithm ``name`` for ``env``: ``config`` (keys of ``default_config``)
    merged over the defaults, then the preset's switches. Unknown keys, or an environment whose
    action space the algorithm cannot handle, raise ``ValueError``."""
    mod_name, sw = _entry(name)
    _check_actions(name, env)
    mod = importlib.import_module(mod_name)
    config = dict(config or {})
    unknown = sorted(set(config) - set(mod.DEFAULT_CONFIG))
    if unknown:
        raise ValueError(
            f"unknown {name} trainer option(s) {unknown} "
            f"(known: {', '.join(sorted(mod.DEFAULT_CONFIG))})"
        )
    cfg = {**copy.deepcopy(mod.DEFAULT_CONFIG), **config, **sw}
    return mod.make_train(cfg, env, env_params)
