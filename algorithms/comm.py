"""GNN-aided communication between agents ([MOBILE-AP] section IV-A, eqs. (42)-(45)).

The agents (mobile APs) form a graph whose edges join every agent to its ``n_neighbours``
nearest agents (wrap-around distances between the positions the agents observe); the graph is
rebuilt from the current observations at every step, so it follows the APs as they move (the
adjacency ``G_{h,t}`` of eq. (44), a dense ``[A, A]`` mask: static shapes). With
``s^(0)_l = E_o(o_l)`` (the agent's encoded observation), ``J`` rounds of

* aggregation (eq. (42)): ``a^(j)_l = sum_{l' in N_l} alpha_{l l'} W_v s^(j-1)_{l'}`` with
  multi-head attention weights ``alpha`` (``n_heads``, Table II: 4) of the query
  ``W_q s^(j-1)_l`` against the keys ``W_k s^(j-1)_{l'}`` over the neighbours only (the pooling
  ``L`` is the attention-weighted sum);
* combination (eq. (43)): ``s^(j)_l = relu(W_c [E_o(o_l); s^(j-1)_l; a^(j)_l] + b_c)``;

then the message encoder (eq. (44)) ``m_l = relu(W_m s^(J)_l + b_m)`` and the observation
update (eq. (45)) ``T_m(o_l, m_l) = [E_o(o_l); m_l]``, the backbone's input. Equivariant to
permutations of the agents (shared weights, a distance-defined graph) and invariant to
permutations of anything inside ``E_o``'s input that ``E_o`` is invariant to.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import attend


def neighbour_mask(pos, n_neighbours: int, period: float | None = None):
    """``pos[..., A, 2]`` -> ``mask[..., A, A]``: ``mask[l, l']`` iff ``l' != l`` is among the
    ``n_neighbours`` agents nearest to ``l`` (distances wrapped with ``period`` when given;
    all other agents when ``n_neighbours >= A - 1``). Ties at the ``n``-th distance admit every
    tied agent."""
    A = pos.shape[-2]
    d = pos[..., :, None, :] - pos[..., None, :, :]
    if period is not None:
        d = d - period * jnp.round(d / period)
    d2 = jnp.sum(d**2, axis=-1)
    eye = jnp.eye(A, dtype=bool)
    d2 = jnp.where(eye, jnp.inf, d2)
    n = min(int(n_neighbours), A - 1)
    if n <= 0:
        return jnp.zeros(d2.shape, bool)
    kth = jnp.sort(d2, axis=-1)[..., n - 1 : n]
    return (d2 <= kth) & ~eye


class CommGNN(nnx.Module):
    """Eqs. (42)-(45): ``x[..., A, d]`` (the encoded observations ``E_o(o)``) and
    ``mask[..., A, A]`` -> ``[..., A, 2 d]`` = ``[x; m]`` (module docstring). ``n_rounds = J``
    rounds, ``n_heads`` attention heads (``d % n_heads == 0``)."""

    def __init__(self, d: int, n_rounds: int, n_heads: int, *, rngs: nnx.Rngs):
        if d % n_heads:
            raise ValueError(f"embed_dim={d} must be a multiple of gnn_heads={n_heads}")
        if n_rounds < 1:
            raise ValueError(f"gnn_rounds must be >= 1, got {n_rounds}")
        self.d = int(d)
        self.n_heads = int(n_heads)
        self.n_rounds = int(n_rounds)
        mk = lambda a, b: nnx.Linear(a, b, rngs=rngs)  # noqa: E731
        # one weight set per round (W_a^(j), W_c^(j) of eqs. (42)-(43)), stacked in lists of
        # modules over the J rounds (a loop over layers, not over data)
        self.q = nnx.List([mk(d, d) for _ in range(self.n_rounds)])
        self.k = nnx.List([mk(d, d) for _ in range(self.n_rounds)])
        self.v = nnx.List([mk(d, d) for _ in range(self.n_rounds)])
        self.c = nnx.List([mk(3 * d, d) for _ in range(self.n_rounds)])
        self.m = mk(d, d)

    def __call__(self, x, mask):
        s = x
        for j in range(self.n_rounds):
            a = attend(self.q[j](s), self.k[j](s), self.v[j](s), mask, self.n_heads)  # (42)
            s = jax.nn.relu(self.c[j](jnp.concatenate([x, s, a], -1)))  # (43)
        m = jax.nn.relu(self.m(s))  # (44)
        return jnp.concatenate([x, m], -1)  # (45)
