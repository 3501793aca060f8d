"""Small batched linear-algebra helpers (Hermitian positive-definite solves)."""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular


def hermitian_part(A):
    """``(A + A^H) / 2`` over the last two axes."""
    return 0.5 * (A + jnp.conj(jnp.swapaxes(A, -1, -2)))


def chol_solve(A, B):
    """Solve ``A X = B`` for Hermitian positive-definite ``A[..., n, n]`` by Cholesky.

    ``B[..., n, m]`` (batch axes broadcast against ``A``'s).
    """
    c = jnp.linalg.cholesky(A)
    batch = jnp.broadcast_shapes(c.shape[:-2], B.shape[:-2])
    c = jnp.broadcast_to(c, batch + c.shape[-2:])
    B = jnp.broadcast_to(B, batch + B.shape[-2:])
    y = solve_triangular(c, B, lower=True)
    return solve_triangular(jnp.conj(jnp.swapaxes(c, -1, -2)), y, lower=False)
