"""Truncation-aware generalised advantage estimation (Schulman et al. 2016, eqs. (11)-(16)).

For a rollout of ``T`` steps with auto-reset environments, step ``t`` has reward ``r_t``, value
``V_t = V(s_t)``, the value ``V'_t = V(s'_t)`` of the observation that *followed* the action (for
a finished episode, the final observation ``info["final_obs"]``, not the reset one),
``terminated_t`` and ``done_t = terminated_t or truncated_t``:

``delta_t = r_t + gamma (1 - terminated_t) V'_t - V_t``,
``A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}``, ``A_T = 0``; returns ``A_t + V_t``.

A truncated episode is bootstrapped from the value of its final observation; a terminated one
is not; in neither case does the advantage leak across the episode boundary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards, values, next_values, terminated, done, gamma, lam):
    """Advantages and returns, scanning backwards over the leading time axis.

    ``rewards, values, next_values[T, ...]``; ``terminated, done[T, ...]`` bool, broadcastable
    to the rewards (e.g. ``[T, n_envs, 1, 1]`` against ``[T, n_envs, n_agents, heads]``);
    ``gamma``, ``lam`` scalars (may be traced). Returns ``(advantages, returns)``, each like
    ``rewards``.
    """
    dtype = rewards.dtype
    not_term = 1.0 - jnp.asarray(terminated, dtype)
    not_done = 1.0 - jnp.asarray(done, dtype)
    deltas = rewards + gamma * not_term * next_values - values
    not_done = jnp.broadcast_to(not_done, deltas.shape)

    def body(acc, x):
        delta, nd = x
        acc = delta + gamma * lam * nd * acc
        return acc, acc

    _, adv = jax.lax.scan(body, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True)
    return adv, adv + values
