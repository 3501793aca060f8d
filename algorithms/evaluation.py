"""Policy evaluation shared by every trainer and the command line.

``evaluate_policy`` runs one policy on a batch of environments; ``evaluate_policies`` runs
several on the same episodes in one compiled program (the learned policy and the scenario's
heuristics compare on identical channel draws).

Both return the per-step means over the environments of every scalar metric. With
``samples=(key, ...)`` (``info`` keys; a scenario lists its own in ``env.sample_metrics``) they
also return those metrics unaveraged, one value of any shape per environment and step (e.g. a
sum rate ``[]`` or per-UE SINRs ``[K]``), for distributions such as CDFs over drops and UEs.
Memory: ``n_policies * n_envs * n_steps * prod(shape)`` values per metric.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _raw_key(key):
    key = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


_RESERVED = ("final_obs", "final_global_state", "terminated", "truncated")


def evaluate_policy(env, env_params, policy, key, n_envs: int, n_steps: int, samples=()):
    """Run ``policy(obs[n_envs, A, ...], key, state) -> actions`` for ``n_steps`` steps on
    ``n_envs`` environments (the same episodes for every policy given the same key; ``state`` is
    the batch of environment states, which only oracle heuristics read). Returns the per-step
    means of every scalar ``info`` metric and of reward and cost, each ``[n_steps]``.

    ``samples``: ``info`` keys kept unaveraged. When given, returns ``(means, kept)`` with
    ``kept[k]`` of shape ``[n_envs, n_steps, *shape_k]`` (environment-major: row ``e`` holds
    environment ``e``'s steps in order; ``shape_k`` the per-environment shape of ``info[k]``,
    e.g. ``[]`` or ``[K]``). ``ValueError`` (naming ``samples``) for a key ``info`` lacks.
    """
    samples = tuple(samples)
    k_reset, k_run = jax.random.split(_raw_key(key))
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, n_envs), env_params)

    def step(carry, key):
        obs, state = carry
        k_pol, k_env = jax.random.split(key)
        a = policy(obs, k_pol, state)
        obs, state, reward, done, info = env.step_batch(
            jax.random.split(k_env, n_envs), state, a, env_params
        )
        out = {
            k: jnp.mean(v) for k, v in info.items() if k not in _RESERVED and v.shape == (n_envs,)
        }
        out["reward"] = jnp.mean(reward)
        if "cost" in info:
            out["cost"] = jnp.mean(info["cost"])
        missing = [k for k in samples if k not in info or k in _RESERVED]
        if missing:
            known = sorted(k for k in info if k not in _RESERVED)
            raise ValueError(f"samples: {missing} not in the environment's info (known: {known})")
        kept = {k: info[k] for k in samples}
        return (obs, state), (out, kept)

    _, (out, kept) = jax.lax.scan(step, (obs, state), jax.random.split(k_run, n_steps))
    if not samples:
        return out
    return out, {k: jnp.swapaxes(v, 0, 1) for k, v in kept.items()}


def evaluate_policies(env, env_params, policies, key, n_envs: int, n_steps: int, samples=()):
    """``evaluate_policy`` for several policies at once, in one compiled program.

    ``policies``: a sequence of ``policy(obs[n_envs, A, ...], key, state) -> actions`` (the same
    pytree structure and shapes for every policy; integer actions are cast to int32 and real
    ones to the default float type, so float32 and float64 policies mix). A ``lax.map`` over
    the policy index runs the same episodes (same ``key``) for each, choosing the policy with
    ``lax.switch``, so the environment is traced and compiled once instead of once per policy.
    Returns the metrics of ``evaluate_policy``, each ``[n_policies, n_steps]``; row ``i`` equals
    ``evaluate_policy(..., policies[i], ...)``. With ``samples`` (``info`` keys), returns
    ``(means, kept)`` with ``kept[k]`` of shape ``[n_policies, n_envs, n_steps, *shape_k]``
    (``evaluate_policy``'s samples stacked over the policies).
    """
    policies = list(policies)
    if not policies:
        raise ValueError("policies must hold at least one policy")

    def common(a):  # one dtype per kind, so every branch of the switch has the same types
        a = jnp.asarray(a)
        if jnp.issubdtype(a.dtype, jnp.integer) or a.dtype == jnp.bool_:
            return a.astype(jnp.int32)
        return a.astype(jnp.result_type(float))

    branches = [lambda o, k, s, pol=pol: jax.tree.map(common, pol(o, k, s)) for pol in policies]

    def one(i):
        return evaluate_policy(
            env,
            env_params,
            lambda obs, k, s: jax.lax.switch(i, branches, obs, k, s),
            key,
            n_envs,
            n_steps,
            samples,
        )

    return jax.lax.map(one, jnp.arange(len(policies)))
