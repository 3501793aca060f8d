"""Observation and action spaces of the multi-agent environments.

Three kinds, in the style of gymnax / JaxMARL, each describing what **one agent** observes or
does (the agent axis is always the leading array axis of ``obs`` and ``actions``):

* ``Discrete(n)``: an integer in ``[0, n)``, shape ``()``;
* ``MultiDiscrete(nvec)``: integers ``x[i]`` in ``[0, nvec[i])``, shape ``(len(nvec),)``;
* ``Box(low, high, shape)``: reals in ``[low, high]`` (scalars or arrays broadcast to ``shape``).

A composite action is a pytree (dict / tuple) of spaces, e.g. ``{"move": Box(-1, 1, (2,)),
"power": Box(0, 1, (K,))}``; the actions are then the same pytree of arrays with the agent axis
first. Spaces are static Python objects (pytree leaves, never traced).

Continuous trainers (DDPG, MADDPG) act in a flat vector per agent: ``flat_dim(space)`` is its
size, ``unflatten(space, u)`` maps ``u[..., flat_dim]`` in ``[-1, 1]`` to actions inside the
bounds of every ``Box`` leaf (``low + (u + 1) (high - low) / 2``), ``flatten(space, actions)``
is its inverse.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Box",
    "Discrete",
    "MultiDiscrete",
    "Space",
    "is_space",
    "leaves",
    "sample",
    "contains",
    "check_actions",
    "flat_dim",
    "flatten",
    "unflatten",
]


class Space:
    """Base class of the spaces (see the module docstring)."""

    shape: tuple
    dtype: object

    def sample(self, key, batch_shape=()):
        raise NotImplementedError

    def contains(self, x) -> jax.Array:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Discrete(Space):
    """Integers ``0 .. n - 1`` (shape ``()``)."""

    n: int
    dtype: object = jnp.int32

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, int | np.integer) or self.n < 1:
            raise ValueError(f"Discrete: n must be a positive integer, got {self.n!r}")

    @property
    def shape(self) -> tuple:
        return ()

    def __repr__(self):
        return f"Discrete({self.n})"

    def sample(self, key, batch_shape=()):
        """Uniform actions ``[*batch_shape]`` int32."""
        return jax.random.randint(key, tuple(batch_shape), 0, self.n, dtype=self.dtype)

    def contains(self, x):
        x = jnp.asarray(x)
        return jnp.all((x >= 0) & (x < self.n)) & jnp.issubdtype(x.dtype, jnp.integer)


@dataclasses.dataclass(frozen=True)
class MultiDiscrete(Space):
    """Integer vectors with ``x[i]`` in ``[0, nvec[i])`` (shape ``(len(nvec),)``)."""

    nvec: tuple
    dtype: object = jnp.int32

    def __post_init__(self):
        nvec = tuple(int(n) for n in np.atleast_1d(np.asarray(self.nvec)))
        if not nvec or min(nvec) < 1:
            raise ValueError(f"MultiDiscrete: nvec must be positive integers, got {self.nvec!r}")
        object.__setattr__(self, "nvec", nvec)

    @property
    def shape(self) -> tuple:
        return (len(self.nvec),)

    def __repr__(self):
        return f"MultiDiscrete({list(self.nvec)})"

    def sample(self, key, batch_shape=()):
        u = jax.random.uniform(key, tuple(batch_shape) + self.shape)
        return jnp.floor(u * jnp.asarray(self.nvec)).astype(self.dtype)

    def contains(self, x):
        x = jnp.asarray(x)
        return jnp.all((x >= 0) & (x < jnp.asarray(self.nvec))) & jnp.issubdtype(
            x.dtype, jnp.integer
        )


@dataclasses.dataclass(frozen=True)
class Box(Space):
    """Reals in ``[low, high]`` of shape ``shape`` (``low`` / ``high`` scalars or arrays that
    broadcast to ``shape``; stored as NumPy float arrays of that shape)."""

    low: object
    high: object
    shape: tuple
    dtype: object = jnp.float32

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"Box: shape must be non-negative sizes, got {self.shape!r}")
        low = np.broadcast_to(np.asarray(self.low, np.float64), shape)
        high = np.broadcast_to(np.asarray(self.high, np.float64), shape)
        if np.any(np.isnan(low)) or np.any(np.isnan(high)) or np.any(low > high):
            raise ValueError(
                f"Box: need low <= high (no NaN), got low={self.low}, high={self.high}"
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def __repr__(self):
        def short(a):
            return f"{a.flat[0]:g}" if a.size and np.all(a == a.flat[0]) else str(a.tolist())

        return f"Box({short(self.low)}, {short(self.high)}, {self.shape})"

    @property
    def bounded(self) -> bool:
        return bool(np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high)))

    def sample(self, key, batch_shape=()):
        """Uniform in the bounds (``Box`` leaves must be bounded)."""
        if not self.bounded:
            raise ValueError("Box.sample needs finite bounds")
        u = jax.random.uniform(key, tuple(batch_shape) + self.shape, self.dtype)
        return jnp.asarray(self.low, self.dtype) + u * jnp.asarray(self.high - self.low, self.dtype)

    def contains(self, x):
        x = jnp.asarray(x)
        return jnp.all(
            (x >= jnp.asarray(self.low, x.dtype)) & (x <= jnp.asarray(self.high, x.dtype))
        )

    def __eq__(self, other):
        return (
            isinstance(other, Box)
            and self.shape == other.shape
            and np.array_equal(self.low, other.low)
            and np.array_equal(self.high, other.high)
            and self.dtype == other.dtype
        )

    def __hash__(self):
        return hash((self.shape, self.low.tobytes(), self.high.tobytes(), str(self.dtype)))


def is_space(x) -> bool:
    return isinstance(x, Space)


def leaves(space) -> list[Space]:
    """The spaces of a pytree of spaces, in ``jax.tree`` order."""
    out = jax.tree.leaves(space, is_leaf=is_space)
    if not all(is_space(s) for s in out):
        raise TypeError(f"not a pytree of spaces: {space!r}")
    return out


def sample(key, space, batch_shape=()):
    """Uniform samples of a pytree of spaces, each leaf ``[*batch_shape, *leaf.shape]``."""
    flat, treedef = jax.tree.flatten(space, is_leaf=is_space)
    keys = jax.random.split(key, len(flat))
    return jax.tree.unflatten(
        treedef, [s.sample(k, batch_shape) for s, k in zip(flat, keys, strict=True)]
    )


def contains(space, x) -> jax.Array:
    """Whether every leaf of ``x`` lies in its space (a bool scalar; traceable)."""
    flat = [s.contains(a) for s, a in _pair(space, x)]
    return jnp.all(jnp.stack(flat)) if flat else jnp.asarray(True)


def _pair(space, x) -> list[tuple[Space, object]]:
    """``[(leaf space, matching subtree of x)]``; ``ValueError`` if the structures differ."""
    treedef = jax.tree.structure(space, is_leaf=is_space)
    try:
        xs = treedef.flatten_up_to(x)
    except (ValueError, TypeError) as err:
        raise ValueError(f"expected the structure of the space {space}: {err}") from err
    return list(zip(treedef.flatten_up_to(space), xs, strict=True))


def check_actions(space, actions, n_agents: int, batch_ndim: int = 0) -> None:
    """Raise ``ValueError`` unless ``actions`` is the pytree of ``space`` with each leaf of shape
    ``[*batch, n_agents, *leaf.shape]`` (``batch_ndim`` leading batch axes). Shapes only (works on
    traced arrays)."""
    for s, a in _pair(space, actions):
        shp = tuple(jnp.shape(a))
        want = (n_agents,) + tuple(s.shape)
        if len(shp) != batch_ndim + len(want) or shp[batch_ndim:] != want:
            batch = "[B, " if batch_ndim else "["
            dims = "".join(", " + str(d) for d in s.shape)
            raise ValueError(
                f"actions must have shape {batch}n_agents={n_agents}{dims}] for the space {s}, "
                f"got {shp}"
            )


def flat_dim(space) -> int:
    """Size of the flat per-agent vector of a pytree of ``Box`` spaces."""
    out = 0
    for s in leaves(space):
        if not isinstance(s, Box):
            raise TypeError(f"flat_dim needs Box spaces, got {s}")
        out += math.prod(s.shape)
    return out


def unflatten(space, u):
    """``u[..., flat_dim]`` in ``[-1, 1]`` -> the action pytree inside the ``Box`` bounds
    (``low + (clip(u, -1, 1) + 1) (high - low) / 2`` per leaf, leaves in ``jax.tree`` order)."""
    flat, treedef = jax.tree.flatten(space, is_leaf=is_space)
    if u.shape[-1] != flat_dim(space):
        raise ValueError(f"u must have {flat_dim(space)} features, got {u.shape}")
    out, i = [], 0
    lead = u.shape[:-1]
    for s in flat:
        n = math.prod(s.shape)
        x = jnp.clip(u[..., i : i + n], -1.0, 1.0).reshape(lead + s.shape)
        lo, hi = jnp.asarray(s.low, u.dtype), jnp.asarray(s.high, u.dtype)
        out.append(lo + 0.5 * (x + 1.0) * (hi - lo))
        i += n
    return jax.tree.unflatten(treedef, out)


def flatten(space, actions):
    """Inverse of ``unflatten``: actions -> ``u[..., flat_dim]`` in ``[-1, 1]`` (a leaf with
    ``low == high`` maps to 0)."""
    parts = []
    for s, a in _pair(space, actions):
        if not isinstance(s, Box):
            raise TypeError(f"flatten needs Box spaces, got {s}")
        a = jnp.asarray(a)
        lead = a.shape[: a.ndim - len(s.shape)]
        lo, hi = jnp.asarray(s.low, a.dtype), jnp.asarray(s.high, a.dtype)
        span = jnp.where(hi > lo, hi - lo, 1.0)
        parts.append((2.0 * (a - lo) / span - 1.0).reshape(lead + (-1,)))
    return jnp.concatenate(parts, axis=-1)
