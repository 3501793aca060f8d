"""Multi-agent environments: the interface, the spaces and one module per scenario.

Registry::

    from cfmimo_jax import envs
    envs.names()                                   # ('ap_selection', 'power_control', ...)
    envs.default_config("power_control")           # the scenario's documented defaults (a dict)
    env, params = envs.make("power_control", {"n_ues": 8})

Each scenario module defines ``DEFAULT_CONFIG`` (a dict, documented in the module docstring)
and ``make(config) -> (env, params)``, which merges ``config`` over the defaults and refuses an
unknown key or a bad value with a ``ValueError`` naming it. A new scenario adds its module and
one line to ``_SCENARIOS`` (see ``docs/adding_a_scenario.md``).
"""

from __future__ import annotations

import copy
import importlib

from . import spaces
from .base import AgentGraph, MultiAgentEnv

__all__ = ["AgentGraph", "MultiAgentEnv", "default_config", "make", "names", "spaces"]

# scenario name -> module (imported on first use)
_SCENARIOS = {
    "ap_cooperation": "cfmimo_jax.envs.ap_cooperation",
    "ap_selection": "cfmimo_jax.envs.ap_selection",
    "mobile_ap": "cfmimo_jax.envs.mobile_ap",
    "power_control": "cfmimo_jax.envs.power_control",
    "xl_uplink": "cfmimo_jax.envs.xl_uplink",
}


def names() -> tuple[str, ...]:
    """The registered scenario names."""
    return tuple(_SCENARIOS)


def _module(name: str):
    if name not in _SCENARIOS:
        raise ValueError(f"scenario must be one of {names()}, got {name!r}")
    return importlib.import_module(_SCENARIOS[name])


def default_config(name: str) -> dict:
    """A copy of the scenario's default configuration (its ``DEFAULT_CONFIG``)."""
    return copy.deepcopy(_module(name).DEFAULT_CONFIG)


def make(name: str, config: dict | None = None):
    """``(env, params)`` of scenario ``name``; ``config`` overrides its defaults (unknown keys
    and bad values raise ``ValueError`` naming the key)."""
    return _module(name).make(config)


def merge_config(name: str, defaults: dict, config: dict | None) -> dict:
    """``defaults`` updated with ``config``, refusing keys that ``defaults`` lacks (helper for the
    scenarios' ``make``)."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown {name} configuration key(s) {unknown} (known: {', '.join(sorted(defaults))})"
        )
    return {**copy.deepcopy(defaults), **config}
