"""Fixed-capacity ring replay buffer as an array pytree (for the off-policy trainers).

The buffer lives inside a trainer's runner state: every field is an array, so ``jit``,
``vmap`` (over seeds or hyper-parameters), ``lax.scan`` and Orbax checkpoints handle it like
parameters, and a restored buffer resumes exactly.

* ``replay_init(example, capacity)``: zeros shaped like ``example`` (one transition, a pytree)
  with a leading ``[capacity]`` axis, ``insert = 0``, ``size = 0``;
* ``replay_add(buf, batch)``: writes the ``B`` transitions of ``batch`` (leaves ``[B, ...]``) at
  rows ``(insert + arange(B)) mod capacity`` (the oldest rows are overwritten once full);
  ``insert <- (insert + B) mod capacity``, ``size <- min(size + B, capacity)``;
* ``replay_sample(buf, key, n)``: ``n`` rows drawn uniformly, with replacement, from the
  ``size`` rows written so far (explicit key; the same key gives the same rows).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["ReplayBuffer", "Transition", "replay_add", "replay_init", "replay_sample"]


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class Transition:
    """One environment step of all agents (leading batch axes allowed on every field).

    ``obs[A, ...]`` and ``next_obs[A, ...]`` (``next_obs`` is the final observation when the
    episode ended: ``info["final_obs"]``), ``action`` (the action pytree, ``[A, ...]`` leaves;
    continuous trainers store the flat ``[-1, 1]`` vector ``[A, D]``), ``reward[A]``,
    ``terminated`` (bool scalar: no bootstrap; a truncation bootstraps), and the centralised
    critic's inputs ``state`` / ``next_state`` (the environment's ``global_state`` or the joint
    observation; ``None`` when unused).
    """

    obs: Any
    action: Any
    reward: jax.Array
    next_obs: Any
    terminated: jax.Array
    state: jax.Array
    next_state: jax.Array


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class ReplayBuffer:
    """``data``: pytree of ``[capacity, ...]`` arrays; ``insert``: int32 row of the next write;
    ``size``: int32 number of valid rows."""

    data: Any
    insert: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return int(jax.tree.leaves(self.data)[0].shape[0])


def replay_init(example: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer for transitions shaped like ``example`` (no leading axis)."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
    if not jax.tree.leaves(example):
        raise ValueError("example must hold at least one array")
    data = jax.tree.map(
        lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example
    )
    return ReplayBuffer(data=data, insert=jnp.int32(0), size=jnp.int32(0))


def replay_add(buf: ReplayBuffer, batch: Any) -> ReplayBuffer:
    """Append the ``B`` transitions of ``batch`` (leaves ``[B, ...]``, same structure as the
    buffer's rows); ``B`` must not exceed the capacity."""
    cap = buf.capacity
    sizes = {jnp.shape(x)[0] for x in jax.tree.leaves(batch)}
    if len(sizes) != 1:
        raise ValueError(f"every leaf of batch needs the same leading size, got {sorted(sizes)}")
    (b,) = sizes
    if b > cap:
        raise ValueError(f"batch of {b} transitions exceeds the capacity {cap}")
    rows = (buf.insert + jnp.arange(b, dtype=jnp.int32)) % cap
    data = jax.tree.map(lambda d, x: d.at[rows].set(jnp.asarray(x, d.dtype)), buf.data, batch)
    return ReplayBuffer(
        data=data,
        insert=((buf.insert + b) % cap).astype(jnp.int32),
        size=jnp.minimum(buf.size + b, cap).astype(jnp.int32),
    )


def replay_sample(buf: ReplayBuffer, key: jax.Array, n: int) -> Any:
    """``n`` transitions drawn uniformly with replacement from the valid rows (``size >= 1``
    assumed inside jit; an empty buffer returns its zero rows)."""
    idx = jax.random.randint(key, (n,), 0, jnp.maximum(buf.size, 1))
    return jax.tree.map(lambda d: d[idx], buf.data)
