"""Small batched linear algebra for Hermitian positive-definite systems, in plain ``jnp`` ops.

The matrices here are tiny (``N x N`` per AP, ``K x K`` per UE, ``L x L`` for LSFD) and come in
large batches. jaxlib 0.10's CPU LAPACK kernels split such batches over the intra-op thread
pool and can deadlock on a 2-core machine (every worker waiting for sub-tasks), so the
Cholesky factorisation and triangular solves are written as ``lax.fori_loop`` over columns,
vectorised over the batch. They are differentiable (forward and reverse), run on any backend,
and cost ``O(n^3)`` per matrix like LAPACK.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def hermitian_part(A):
    """``(A + A^H) / 2`` over the last two axes."""
    return 0.5 * (A + jnp.conj(jnp.swapaxes(A, -1, -2)))


def _ct(A):
    return jnp.conj(jnp.swapaxes(A, -1, -2))


def cholesky(A):
    """Lower Cholesky factor ``Lc`` with ``Lc Lc^H = A`` for HPD ``A[..., n, n]``.

    Column-by-column (left-looking) factorisation: column ``j`` is
    ``(A[:, j] - Lc[:, :j] conj(Lc[j, :j])) / Lc[j, j]`` on and below the diagonal.
    """
    n = A.shape[-1]
    idx = jnp.arange(n)
    rdt = jnp.finfo(A.dtype).dtype

    def body(j, Lc):
        e = (idx == j).astype(A.dtype)  # [n]
        row = jnp.einsum("...ik,i->...k", Lc, e)  # Lc[j, :], zeros beyond column j-1
        v = jnp.einsum("...ij,j->...i", A, e) - jnp.einsum("...ik,...k->...i", Lc, jnp.conj(row))
        d = jnp.sqrt(jnp.maximum(jnp.real(jnp.einsum("...i,i->...", v, e)), jnp.finfo(rdt).tiny))
        col = jnp.where(idx >= j, v / d[..., None].astype(A.dtype), 0.0)
        return Lc + col[..., :, None] * e

    return jax.lax.fori_loop(0, n, body, jnp.zeros_like(A))


def solve_lower(Lc, B):
    """Solve ``Lc X = B`` (``Lc[..., n, n]`` lower triangular, ``B[..., n, m]``), forward."""
    n = Lc.shape[-1]
    idx = jnp.arange(n)
    batch = jnp.broadcast_shapes(Lc.shape[:-2], B.shape[:-2])
    Lc = jnp.broadcast_to(Lc, batch + Lc.shape[-2:])
    B = jnp.broadcast_to(B, batch + B.shape[-2:]).astype(jnp.result_type(Lc, B))

    def body(j, X):
        e = (idx == j).astype(Lc.dtype)
        row = jnp.einsum("...ik,i->...k", Lc, e)  # Lc[j, :]
        diag = jnp.einsum("...k,k->...", row, e)
        bj = jnp.einsum("...im,i->...m", B, e)
        xj = (bj - jnp.einsum("...k,...km->...m", row, X)) / diag[..., None]
        return X + e[:, None] * xj[..., None, :]

    return jax.lax.fori_loop(0, n, body, jnp.zeros_like(B))


def solve_upper(U, B):
    """Solve ``U X = B`` (``U[..., n, n]`` upper triangular) by back substitution."""
    n = U.shape[-1]
    idx = jnp.arange(n)
    batch = jnp.broadcast_shapes(U.shape[:-2], B.shape[:-2])
    U = jnp.broadcast_to(U, batch + U.shape[-2:])
    B = jnp.broadcast_to(B, batch + B.shape[-2:]).astype(jnp.result_type(U, B))

    def body(t, X):
        j = n - 1 - t
        e = (idx == j).astype(U.dtype)
        row = jnp.einsum("...ik,i->...k", U, e)
        diag = jnp.einsum("...k,k->...", row, e)
        bj = jnp.einsum("...im,i->...m", B, e)
        xj = (bj - jnp.einsum("...k,...km->...m", row, X)) / diag[..., None]
        return X + e[:, None] * xj[..., None, :]

    return jax.lax.fori_loop(0, n, body, jnp.zeros_like(B))


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
