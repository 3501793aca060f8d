"""Power allocation: heuristics and a projected-gradient optimiser (book section 7.1).

Heuristics: fractional uplink and downlink power control (book section 7.1); the AP
power-consumption model of [APS-GNN] eq. (9). Optimiser: ``optimize_powers``, projected gradient
ascent of any differentiable objective (e.g. the closed-form sum SE of ``cfmimo_jax.se``) with
optax, and ``project_budget``, the Euclidean projection onto the per-AP downlink power budgets.
Shapes: ``gain[L, K]``, ``D[L, K]`` (bool), uplink powers ``p[K]``, downlink ``rho[L, K]`` (mW).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _validate as V


def fractional_downlink(gain, D, rho_max, exponent: float = 0.5):
    """Distributed fractional downlink power allocation (book eq. (7.47)): ``-> rho[L, K]``.

    ``rho_lk = rho_max gain_lk^exponent / sum_{i served by l} gain_li^exponent`` if AP ``l``
    serves UE ``k`` (``D[l, k]``), else 0, so every AP spends exactly ``rho_max`` (mW) when it
    serves someone. ``gain[L, K]`` is linear (normalised by the noise), ``D[L, K]`` bool,
    ``rho_max`` a scalar or ``[L]``.
    """
    if jnp.ndim(gain) != 2:
        raise ValueError(f"gain must have shape [L, K], got {jnp.shape(gain)}")
    L, K = jnp.shape(gain)
    V.serving("D", D, L, K)
    V.finite("gain", gain, nonneg=True)
    V.finite("rho_max", rho_max, nonneg=True)
    D = jnp.asarray(D, bool)
    weights = jnp.where(D, jnp.asarray(gain) ** exponent, 0.0)
    total = jnp.sum(weights, axis=1, keepdims=True)
    rho_max = jnp.reshape(jnp.asarray(rho_max, weights.dtype), (-1, 1))
    return rho_max * weights / jnp.where(total > 0, total, 1.0)


def ap_power_consumption(active, tx_power_w, amp_efficiency, circuit_power_w):
    """Power drawn by each AP in watts ([APS-GNN] eq. (9); Ngo et al. 2018 model).

    ``P_l = a_l (P_circuit + P_tx / eta)``: an AP that serves at least one UE (``active[L]``)
    transmits at full power ``P_tx`` through an amplifier of efficiency ``eta`` and pays its
    constant circuit power; an AP that serves nobody is switched off and draws nothing.
    ``active[..., L]`` bool -> ``[..., L]``.
    """
    per_ap = circuit_power_w + tx_power_w / amp_efficiency
    return jnp.asarray(active, jnp.result_type(float)) * per_ap


def fractional_uplink(gain, D, p_max, exponent: float = 0.5):
    """Fractional uplink power control (book section 7.1): ``-> p[K]`` (mW).

    ``p_k = p_max (min_i beta_i)^exponent / beta_k^exponent`` with
    ``beta_k = sum_{l in M_k} gain_lk`` the total gain of UE ``k`` to its serving APs
    (``M_k = {l : D[l, k]}``): the weakest UE transmits at ``p_max``, stronger UEs back off
    (``exponent = 0``: all at ``p_max``; ``exponent = 1``: equal received power ``beta_k p_k``).
    ``gain[L, K]`` linear (normalised by the noise), ``D[L, K]`` bool, ``p_max`` a scalar or
    ``[K]``. A UE served by no AP (``beta_k = 0``) is left out of the minimum and gets
    ``p_max``. Jittable and differentiable in ``gain``.
    """
    if jnp.ndim(gain) != 2:
        raise ValueError(f"gain must have shape [L, K], got {jnp.shape(gain)}")
    L, K = jnp.shape(gain)
    V.serving("D", D, L, K)
    V.finite("gain", gain, nonneg=True)
    V.shape("p_max", p_max, (K,), allow_scalar=True)
    V.finite("p_max", p_max, nonneg=True)
    V.finite("exponent", exponent)
    gain = jnp.asarray(gain)
    beta = jnp.sum(jnp.where(jnp.asarray(D, bool), gain, 0.0), axis=0)  # [K]
    served = beta > 0
    beta_min = jnp.min(jnp.where(served, beta, jnp.inf))
    beta_min = jnp.where(jnp.isfinite(beta_min), beta_min, 1.0)
    safe = jnp.where(served, beta, 1.0)
    ratio = jnp.where(served, (beta_min / safe) ** exponent, 1.0)
    return jnp.asarray(p_max, gain.dtype) * ratio


_OPTIMIZERS = {
    "adam": optax.adam,
    "sgd": optax.sgd,
    "rmsprop": optax.rmsprop,
    "adagrad": optax.adagrad,
}


def _bound_tree(b, x):
    """``b`` as a pytree matching ``x``: itself if it has ``x``'s structure, else broadcast."""
    if jax.tree.structure(b) == jax.tree.structure(x):
        return b
    return jax.tree.map(lambda _: b, x)


def optimize_powers(
    objective,
    init,
    bounds,
    *,
    project=None,
    steps: int = 200,
    lr: float = 0.05,
    optimizer: str = "adam",
    log_domain: bool = False,
):
    """Projected gradient ascent of ``objective`` over a box (and an optional projection).

    Maximises a scalar differentiable ``objective(x)`` over ``x`` (an array or a pytree of
    arrays, e.g. uplink powers ``p[K]`` or downlink powers ``rho[L, K]``, best normalised to
    ``[0, 1]`` since the optimiser's step is about ``lr`` in the units of ``x``). Each of the
    ``steps`` iterations: ``g = grad objective(x)``; an optax step of ``optimizer`` (Adam by
    default) on ``-g`` (ascent); then the projection ``P(x) = project(clip(x, low, high))``
    (``project`` e.g. ``lambda r: project_budget(r, D, rho_max)``; omitted: the box only).
    ``x_0 = P(init)``. ``bounds = (low, high)``: scalars, arrays broadcastable to ``x`` (or
    pytrees of ``x``'s structure).

    ``log_domain=True`` runs the optax steps on ``y = log x`` (multiplicative updates, for
    powers that span decades; needs ``low > 0``): ``x = P(exp(y))``, ``y = log x``.

    Returns ``(x_best, objective_best, history[steps])``: the best projected iterate seen
    (``x_0`` included; a NaN objective never counts as best), its objective, and the objective
    after every step. One ``lax.scan`` over the steps (``steps + 1`` gradient evaluations): the
    function is jittable and vmappable over ``init`` and over the data that ``objective``
    closes over (``steps`` and ``optimizer`` static). ``optimizer``: ``"adam"``, ``"sgd"``,
    ``"rmsprop"`` or ``"adagrad"``; ``lr`` a positive number or an optax schedule
    (``step -> rate``). Projected gradient replaces the convex solvers of the literature (e.g.
    the book's section 7.1 sum-SE power control); it finds a stationary point (the global
    maximum only for concave objectives). With ``"sgd"`` (a small enough ``lr``) it is the
    classical projected gradient method, which converges to the constrained optimum of a
    smooth concave objective; Adam's per-coordinate step scaling keeps the fixed points exact
    under the box alone, but under a coupling ``project`` (a budget) it settles near, not at,
    the stationary point, closer the smaller ``lr``.
    """
    steps = V.positive_int("steps", steps)
    lr_c = None if callable(lr) else V.concrete(lr)
    if lr_c is not None and (np.ndim(lr_c) != 0 or not np.isfinite(lr_c) or not lr_c > 0):
        raise ValueError(f"lr must be a positive scalar, got {lr!r}")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}")
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (low, high), got {bounds!r}")
    low = _bound_tree(bounds[0], init)
    high = _bound_tree(bounds[1], init)
    for lo, hi in zip(jax.tree.leaves(low), jax.tree.leaves(high), strict=True):
        lo_c, hi_c = V.concrete(lo), V.concrete(hi)
        if lo_c is not None and hi_c is not None:
            if np.any(np.isnan(lo_c)) or np.any(np.isnan(hi_c)) or np.any(lo_c > hi_c):
                raise ValueError(f"bounds: need low <= high (no NaN), got low={lo}, high={hi}")
            if log_domain and np.any(lo_c <= 0):
                raise ValueError(f"bounds: log_domain needs low > 0, got low={lo}")
    opt = _OPTIMIZERS[optimizer](lr)

    def box(x):
        x = jax.tree.map(lambda a, lo, hi: jnp.clip(a, lo, hi), x, low, high)
        return x if project is None else project(x)

    vg = jax.value_and_grad(objective)

    def value_and_grad_y(x):
        """Objective at the feasible ``x`` and its gradient in the optimised variable
        (``x`` itself, or ``y = log x``: ``d f / d y = x d f / d x``)."""
        f, g = vg(x)
        return f, (jax.tree.map(jnp.multiply, g, x) if log_domain else g)

    def to_y(x):
        return jax.tree.map(jnp.log, x) if log_domain else x

    def to_x(y):
        return box(jax.tree.map(jnp.exp, y) if log_domain else y)

    x0 = box(jax.tree.map(lambda a: jnp.asarray(a, jnp.result_type(a, float)), init))
    f0, g0 = value_and_grad_y(x0)
    if jnp.ndim(f0) != 0:
        raise ValueError(f"objective must return a scalar, got shape {jnp.shape(f0)}")
    best0 = (x0, jnp.where(jnp.isnan(f0), -jnp.inf, f0))

    def step(carry, _):
        x, g, opt_state, (x_best, f_best) = carry
        y = to_y(x)
        updates, opt_state = opt.update(jax.tree.map(jnp.negative, g), opt_state, y)
        x = to_x(optax.apply_updates(y, updates))
        f, g = value_and_grad_y(x)
        better = f > f_best
        x_best = jax.tree.map(lambda a, b: jnp.where(better, a, b), x, x_best)
        f_best = jnp.where(better, f, f_best)
        return (x, g, opt_state, (x_best, f_best)), f

    carry = (x0, g0, opt.init(to_y(x0)), best0)
    (_, _, _, (x_best, f_best)), history = jax.lax.scan(step, carry, None, length=steps)
    return x_best, f_best, history


def project_budget(rho, D, rho_max):
    """Euclidean projection of downlink powers onto the per-AP budgets: ``-> rho[L, K]``.

    For every AP ``l`` independently, the point of
    ``{x : x_k >= 0, x_k = 0 for k not in S_l, sum_k x_k <= rho_max_l}`` (``S_l`` the UEs that
    AP ``l`` serves, ``D[l, :]``) closest to ``rho[l, :]``: ``x = max(rho - theta_l, 0)`` on
    ``S_l`` with ``theta_l = 0`` when the clipped powers fit the budget, else the threshold that
    makes them sum to ``rho_max_l`` (the capped simplex; sort-based, as in Duchi et al.,
    "Efficient projections onto the l1-ball for learning in high dimensions", 2008).
    ``rho[..., L, K]`` real, ``D[L, K]`` bool (or ``[..., L, K]``), ``rho_max`` a scalar or
    ``[L]`` (>= 0). Vectorised over APs (one sort per row); jittable and vmappable.
    """
    if jnp.ndim(rho) < 2:
        raise ValueError(f"rho must have shape [..., L, K], got {jnp.shape(rho)}")
    L, K = jnp.shape(rho)[-2:]
    if jnp.shape(D)[-2:] != (L, K):
        raise ValueError(f"D must have shape [..., L={L}, K={K}], got {jnp.shape(D)}")
    V.shape("rho_max", rho_max, (L,), allow_scalar=True)
    V.finite("rho_max", rho_max, nonneg=True)
    rho = jnp.asarray(rho)
    D = jnp.asarray(D, bool)
    z = jnp.asarray(rho_max, rho.dtype)
    z = z if jnp.ndim(z) == 0 else z[:, None]  # [L, 1]
    y = jnp.where(D, rho, 0.0)
    clipped = jnp.maximum(y, 0.0)
    fits = jnp.sum(clipped, axis=-1, keepdims=True) <= z
    u = -jnp.sort(-jnp.where(D, y, -jnp.inf), axis=-1)  # descending; unserved last (-inf)
    finite = jnp.isfinite(u)
    css = jnp.cumsum(jnp.where(finite, u, 0.0), axis=-1)  # [..., L, K]
    j = jnp.arange(1, K + 1, dtype=rho.dtype)
    active = finite & (u * j > css - z)  # u_j - (css_j - z) / j > 0
    r = jnp.maximum(jnp.sum(active, axis=-1, keepdims=True), 1)  # support size
    css_r = jnp.take_along_axis(css, r - 1, axis=-1)
    theta = (css_r - z) / r.astype(rho.dtype)
    x = jnp.where(D, jnp.maximum(y - theta, 0.0), 0.0)
    return jnp.where(fits, clipped, x)


def antenna_powers(B, rho, antenna_weights=None, D=None):
    """Mean transmit power of every antenna of every AP under weighted MR: ``-> [L, N]`` (mW).

    With the precoders of :func:`cfmimo_jax.se.downlink_se_mr_closed_form`,
    ``w_lk = sqrt(rho_lk) Q_l^(1/2) hhat_lk / sqrt(tr(Q_l B_lk))`` (``Q_l = diag(q_l)``;
    ``q = 1`` without ``antenna_weights``), antenna ``n`` of AP ``l`` radiates
    ``P_ln = sum_k rho_lk q_ln [B_lk]_nn / tr(Q_l B_lk)`` on average (terms with
    ``tr(Q_l B_lk) = 0`` or ``not D[l, k]`` are 0), and ``sum_n P_ln = sum_k rho_lk``: the
    per-antenna and per-AP powers of [MOBILE-AP] constraints (22e) and (22d) in expectation.
    ``B[L, K, N, N]``, ``rho[L, K]``, ``antenna_weights[L, N] >= 0``, ``D[L, K]`` (default all).
    """
    if jnp.ndim(B) != 4:
        raise ValueError(f"B must have shape [L, K, N, N], got {jnp.shape(B)}")
    L, K, N, _ = jnp.shape(B)
    V.shape("rho", rho, (L, K))
    V.finite("rho", rho, nonneg=True)
    diag = jnp.real(jnp.diagonal(jnp.asarray(B), axis1=-2, axis2=-1))  # [L, K, N]
    if antenna_weights is None:
        q = jnp.ones((L, N), diag.dtype)
    else:
        V.shape("antenna_weights", antenna_weights, (L, N))
        V.finite("antenna_weights", antenna_weights, nonneg=True)
        q = jnp.asarray(antenna_weights, diag.dtype)
    shaped = q[:, None, :] * diag  # [L, K, N]
    total = jnp.sum(shaped, axis=-1, keepdims=True)
    ok = total > 0
    if D is not None:
        V.serving("D", D, L, K)
        ok = ok & jnp.asarray(D, bool)[..., None]
    share = jnp.where(ok, shaped / jnp.where(ok, total, 1.0), 0.0)
    return jnp.einsum("lk,lkn->ln", jnp.asarray(rho, diag.dtype), share)
