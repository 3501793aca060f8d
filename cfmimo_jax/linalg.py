"""Small batched linear algebra for Hermitian positive-definite systems, in plain ``jnp`` ops.

The matrices here are tiny (``N x N`` per AP, ``K x K`` per UE, ``L x L`` for LSFD) and come in
large batches. jaxlib 0.10's CPU LAPACK kernels split such batches over the intra-op thread
pool and can deadlock on a 2-core machine (every worker waiting for sub-tasks), so the
Cholesky factorisation and triangular solves are written as ``lax.fori_loop`` over columns,
vectorised over the batch. They are differentiable (forward and reverse), run on any backend,
and cost ``O(n^3)`` per matrix like LAPACK.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax


def hermitian_part(A):
    """``(A + A^H) / 2`` over the last two axes."""
    return 0.5 * (A + jnp.conj(jnp.swapaxes(A, -1, -2)))


def _ct(A):
    return jnp.conj(jnp.swapaxes(A, -1, -2))


def cholesky(A):
    """Lower Cholesky factor ``Lc`` with ``Lc Lc^H = A`` for HPD ``A[..., n, n]``.

    Left-looking, one column per step: ``v = A[:, j] - Lc conj(Lc[j, :])`` (columns ``>= j`` of
    ``Lc`` are still zero), ``Lc[:, j] = v / sqrt(v_j)`` on and below the diagonal.
    """
    n = A.shape[-1]
    idx = jnp.arange(n)
    tiny = jnp.finfo(jnp.finfo(A.dtype).dtype).tiny

    def body(j, Lc):
        row = lax.dynamic_index_in_dim(Lc, j, axis=-2, keepdims=False)  # Lc[j, :]
        a = lax.dynamic_index_in_dim(A, j, axis=-1, keepdims=False)  # A[:, j]
        v = a - jnp.einsum("...ik,...k->...i", Lc, jnp.conj(row))
        vj = lax.dynamic_index_in_dim(v, j, axis=-1, keepdims=False)
        d = jnp.sqrt(jnp.maximum(jnp.real(vj), tiny)).astype(A.dtype)
        col = jnp.where(idx >= j, v / d[..., None], 0.0)
        return lax.dynamic_update_index_in_dim(Lc, col, j, axis=-1)

    return lax.fori_loop(0, n, body, jnp.zeros_like(A))


def _substitute(T, B, lower: bool):
    n = T.shape[-1]
    batch = jnp.broadcast_shapes(T.shape[:-2], B.shape[:-2])
    dtype = jnp.result_type(T, B)
    T = jnp.broadcast_to(T, batch + T.shape[-2:]).astype(dtype)
    B = jnp.broadcast_to(B, batch + B.shape[-2:]).astype(dtype)

    def body(t, X):
        j = t if lower else n - 1 - t
        row = lax.dynamic_index_in_dim(T, j, axis=-2, keepdims=False)  # T[j, :]
        diag = lax.dynamic_index_in_dim(row, j, axis=-1, keepdims=False)
        bj = lax.dynamic_index_in_dim(B, j, axis=-2, keepdims=False)  # B[j, :]
        xj = (bj - jnp.einsum("...k,...km->...m", row, X)) / diag[..., None]
        return lax.dynamic_update_index_in_dim(X, xj, j, axis=-2)

    return lax.fori_loop(0, n, body, jnp.zeros_like(B))


def solve_lower(Lc, B):
    """Solve ``Lc X = B`` (``Lc[..., n, n]`` lower triangular, ``B[..., n, m]``), forward."""
    return _substitute(Lc, B, lower=True)


def solve_upper(U, B):
    """Solve ``U X = B`` (``U[..., n, n]`` upper triangular, ``B[..., n, m]``), backward."""
    return _substitute(U, B, lower=False)


def chol_solve(A, B):
    """Solve ``A X = B`` for Hermitian positive-definite ``A[..., n, n]`` by Cholesky.

    ``B[..., n, m]`` (batch axes broadcast against ``A``'s).
    """
    c = cholesky(A)
    return solve_upper(_ct(c), solve_lower(c, B))


def inv_chol(Z):
    """``W = chol(Z)^{-1}`` (lower triangular), so ``W^H W = Z^{-1}``, for HPD ``Z[..., n, n]``."""
    c = cholesky(Z)
    eye = jnp.broadcast_to(jnp.eye(Z.shape[-1], dtype=Z.dtype), Z.shape)
    return solve_lower(c, eye)
