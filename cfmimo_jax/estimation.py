"""Channel sampling and estimation (book section 4.2).

Shapes: ``R[L, K, N, N]``, ``pilot[K]``, ``p[K]`` (or scalar), channels ``H[n, L, K, N]``,
received pilots ``Y[n, L, tau_p, N]``. Everything is normalised by the noise power.
A real-valued ``R`` (or ``H``) is promoted to the matching complex dtype at every public entry
point (:func:`as_complex`), so channels and noise are always circularly-symmetric complex
Gaussian.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _validate as V
from .linalg import chol_solve, cholesky, hermitian_part


def _check(R, pilot, p, tau_p):
    V.correlation("R", R)
    if R.ndim != 4:
        raise ValueError(f"R must have shape [L, K, N, N], got {R.shape}")
    K = R.shape[1]
    tau_p = V.positive_int("tau_p", tau_p)
    V.pilots("pilot", pilot, K, tau_p)
    V.shape("p", p, (K,), allow_scalar=True)
    V.finite("p", p, nonneg=True)


def powers(p, K, dtype):
    """Uplink powers as a ``[K]`` real array of ``dtype`` (``p`` scalar or ``[K]``)."""
    return jnp.broadcast_to(jnp.asarray(p, dtype), (K,))


def real_dtype(x):
    """The real dtype of ``x`` (``complex64 -> float32``, ``complex128 -> float64``)."""
    return jnp.finfo(jnp.result_type(x)).dtype


def as_complex(x):
    """``x`` as a JAX array of complex dtype; a real ``x`` is promoted to the matching complex
    dtype (``float32 -> complex64``, ``float64 -> complex128``), a complex one is unchanged.

    Every public kernel applies it to its correlation matrices (``R``, ``B``, ``C``) and to the
    channels it adds noise to: channels and noise are drawn in the dtype of ``R``, and a real
    dtype would draw real Gaussians, not the circularly-symmetric ``CN(0, R)`` of book
    eq. (2.3). With it, a real ``R`` (e.g. i.i.d. Rayleigh ``gain * I`` built in NumPy) gives
    exactly the numbers of the same ``R`` cast to complex. Works on tracers (the dtype is static).
    """
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):
        return x
    return x.astype(jnp.result_type(x.dtype, jnp.complex64))


def pilot_covariance(R, pilot, p, tau_p: int):
    """``Psi[l, t] = sum_{i: pilot_i = t} p_i tau_p R_li + I_N`` (book eq. (4.6)).

    Returns ``[L, tau_p, N, N]``; a real ``R`` is promoted to complex (:func:`as_complex`).
    """
    R = as_complex(R)
    L, K, N, _ = R.shape
    p = powers(p, K, real_dtype(R))
    w = jax.nn.one_hot(pilot, tau_p, dtype=p.dtype) * (p * tau_p)[:, None]  # [K, tau_p]
    return jnp.einsum("kt,lkab->ltab", w.astype(R.dtype), R) + jnp.eye(N, dtype=R.dtype)


def _psi_inv_r(R, pilot, p, tau_p):
    """``X[l, k] = Psi_{l, t_k}^{-1} R_lk`` via Cholesky: ``[L, K, N, N]``."""
    psi = pilot_covariance(R, pilot, p, tau_p)[:, pilot]  # [L, K, N, N]
    return chol_solve(psi, R)


def estimation_statistics(R, pilot, p, tau_p: int):
    """MMSE estimate and error correlation matrices (book eqs. (4.7) and (4.9)).

    ``B_lk = p_k tau_p R_lk Psi_{l,t_k}^{-1} R_lk``, ``C_lk = R_lk - B_lk``; each ``[L, K, N, N]``.
    ``R[L, K, N, N]`` Hermitian PSD, ``pilot[K]`` int in ``[0, tau_p)``, ``p`` scalar or ``[K]``.
    """
    _check(R, pilot, p, tau_p)
    return _estimation_statistics(as_complex(R), pilot, p, tau_p)


def _estimation_statistics(R, pilot, p, tau_p):
    K = R.shape[1]
    p = powers(p, K, real_dtype(R))
    X = _psi_inv_r(R, pilot, p, tau_p)
    B = hermitian_part((p * tau_p)[None, :, None, None] * (R @ X))
    return B, R - B


def _sqrt_factor(R):
    """Lower Cholesky factor of ``R + eps tr(R)/N I`` (``eps`` = 10 machine epsilons)."""
    N = R.shape[-1]
    eps = 10 * jnp.finfo(R.dtype).eps
    scale = jnp.real(jnp.trace(R, axis1=-2, axis2=-1)) / N
    jitter = (eps * scale)[..., None, None] * jnp.eye(N, dtype=R.dtype)
    return cholesky(R + jitter)


def _cnormal(key, shape, dtype):
    return jax.random.normal(key, shape, dtype=dtype)  # CN(0, 1): E|z|^2 = 1


def pair_matvec(A, x):
    """``y[j, l, k, a] = sum_b A[l, k, a, b] x[j, l, k, b]``: one small ``N x N`` matrix per
    AP-UE pair applied to ``n`` vectors (``A[L, K, N, N]``, ``x[n, L, K, N]`` -> ``[n, L, K, N]``;
    the products of book eqs. (2.3) and (4.5)).

    A ``lax.fori_loop`` over the ``N`` columns of ``A`` (each step one fused multiply-add over the
    whole batch) rather than an ``einsum``: XLA turns the einsum into a reduce fusion that
    recomputes every element of ``x`` once per output antenna, and when ``x`` is freshly drawn
    (threefry + erfinv) that redraw costs about twice the whole product on a CPU. The loop
    carries ``x`` as an operand, so it is computed once."""
    xb = jnp.moveaxis(x, -1, 0)  # [N(b), n, L, K]
    Ab = jnp.moveaxis(A, -1, 0)  # [N(b), L, K, N(a)]
    dtype = jnp.result_type(A, x)

    def add_column(b, acc):
        return acc + Ab[b][None] * xb[b][..., None]

    return jax.lax.fori_loop(0, A.shape[-1], add_column, jnp.zeros(x.shape, dtype))


def sample_channels(key, R, n: int):
    """``n`` independent realizations ``h_lk ~ CN(0, R_lk)``: ``H[n, L, K, N]`` (book eq. (2.3)).

    Realization ``j`` is drawn from ``jax.random.split(key, n)[j]`` (so a chunked Monte-Carlo
    loop reproduces the same draws); ``h = chol(R) w`` with ``w ~ CN(0, I)``.
    """
    V.correlation("R", R)
    if R.ndim != 4:
        raise ValueError(f"R must have shape [L, K, N, N], got {R.shape}")
    n = V.positive_int("n", n)
    return _sample_channels(jax.random.split(key, n), _sqrt_factor(as_complex(R)))


def _sample_channels(keys, factor):
    shape = factor.shape[:-1]
    w = jax.vmap(lambda k: _cnormal(k, shape, factor.dtype))(keys)  # [n, L, K, N]
    return pair_matvec(factor, w)


def pilot_signal(key, H, pilot, p, tau_p: int):
    """Received pilot signals (book eq. (4.4), after correlating with each pilot).

    ``Y[.., l, t] = sum_{i: pilot_i = t} sqrt(p_i) tau_p h_li + sqrt(tau_p) n_lt``,
    ``n_lt ~ CN(0, I_N)``: ``H[n, L, K, N] -> Y[n, L, tau_p, N]``. Noise for realization ``j``
    is drawn from ``jax.random.split(key, n)[j]``. A real ``H`` is promoted to complex (the
    noise is always complex Gaussian).
    """
    H = as_complex(H)
    if H.ndim != 4:
        raise ValueError(f"H must have shape [n, L, K, N], got {H.shape}")
    n, L, K, N = H.shape
    tau_p = V.positive_int("tau_p", tau_p)
    V.pilots("pilot", pilot, K, tau_p)
    V.shape("p", p, (K,), allow_scalar=True)
    V.finite("p", p, nonneg=True)
    return _pilot_signal(jax.random.split(key, n), H, pilot, p, tau_p)


def _pilot_signal(keys, H, pilot, p, tau_p):
    n, L, K, N = H.shape
    p = powers(p, K, real_dtype(H))
    w = jax.nn.one_hot(pilot, tau_p, dtype=p.dtype) * (jnp.sqrt(p) * tau_p)[:, None]
    noise = jax.vmap(lambda k: _cnormal(k, (L, tau_p, N), H.dtype))(keys)
    return jnp.einsum("kt,jlkn->jltn", w.astype(H.dtype), H) + jnp.sqrt(tau_p) * noise


def mmse_from_pilot_signal(Y, R, pilot, p, tau_p: int):
    """MMSE estimates ``hhat_lk = sqrt(p_k) R_lk Psi_{l,t_k}^{-1} y_{l,t_k}`` (book eq. (4.5)).

    ``Y[n, L, tau_p, N]`` -> ``Hhat[n, L, K, N]``.
    """
    _check(R, pilot, p, tau_p)
    return _mmse_from_pilot_signal(Y, as_complex(R), pilot, p, tau_p)


def mmse_matrices(R, pilot, p, tau_p):
    """``A_lk = sqrt(p_k) R_lk Psi_{l,t_k}^{-1}``, so ``hhat_lk = A_lk y_{l,t_k}``.

    Returns ``[L, K, N, N]``.
    """
    R = as_complex(R)
    K = R.shape[1]
    p = powers(p, K, real_dtype(R))
    X = _psi_inv_r(R, pilot, p, tau_p)  # Psi^{-1} R; (Psi^{-1} R)^H = R Psi^{-1}
    return jnp.sqrt(p)[None, :, None, None] * jnp.conj(jnp.swapaxes(X, -1, -2))


def _mmse_from_pilot_signal(Y, R, pilot, p, tau_p):
    A = mmse_matrices(R, pilot, p, tau_p)
    return pair_matvec(A, Y[:, :, pilot, :])


def ls_from_pilot_signal(Y, pilot, p, tau_p: int):
    """Least-squares estimates ``hhat_lk = y_{l,t_k} / (sqrt(p_k) tau_p)`` (book eq. (4.25)).

    ``Y[n, L, tau_p, N]`` -> ``[n, L, K, N]``; requires ``p > 0``.
    """
    K = jnp.shape(pilot)[0]
    tau_p = V.positive_int("tau_p", tau_p)
    V.pilots("pilot", pilot, K, tau_p)
    V.shape("p", p, (K,), allow_scalar=True)
    V.finite("p", p, positive=True)
    p = powers(p, K, real_dtype(Y))
    return Y[:, :, pilot, :] / (jnp.sqrt(p) * tau_p)[None, None, :, None].astype(Y.dtype)


def mmse_estimates(key, H, R, pilot, p, tau_p: int):
    """MMSE channel estimates from freshly drawn pilot noise: ``H[n, L, K, N] -> Hhat``.

    ``mmse_from_pilot_signal(pilot_signal(key, H, pilot, p, tau_p), R, pilot, p, tau_p)``
    (book eqs. (4.4)-(4.5)); ``hhat ~ CN(0, B)`` and ``h - hhat ~ CN(0, C)``, independent.
    """
    _check(R, pilot, p, tau_p)
    Y = pilot_signal(key, H, pilot, p, tau_p)
    return _mmse_from_pilot_signal(Y, as_complex(R), pilot, p, tau_p)
