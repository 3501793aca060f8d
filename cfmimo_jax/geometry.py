"""Drops and wrap-around geometry (book section 5.3: square area with wrap-around)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as V


def uniform_drop(key, n: int, side: float = 1000.0, dtype=None):
    """``n`` points uniform in the square ``[0, side]^2``: ``[n, 2]``."""
    dtype = dtype or jnp.result_type(float)
    return side * jax.random.uniform(key, (n, 2), dtype=dtype)


def wraparound_displacement(ap_pos, ue_pos, side: float = 1000.0):
    """Shortest horizontal displacement from each AP to each UE on the torus, ``[L, K, 2]``.

    Of the nine copies ``AP + s``, ``s in {-side, 0, side}^2``, the one nearest the UE is used
    (book section 5.3). ``ap_pos[L, 2]``, ``ue_pos[K, 2]``.
    """
    shifts = jnp.array([-side, 0.0, side], dtype=ap_pos.dtype)
    sx, sy = jnp.meshgrid(shifts, shifts, indexing="ij")
    s = jnp.stack([sx.ravel(), sy.ravel()], axis=-1)  # [9, 2]
    disp = ue_pos[None, :, None, :] - (ap_pos[:, None, None, :] + s[None, None, :, :])
    d2 = jnp.sum(disp**2, axis=-1)  # [L, K, 9]
    best = jnp.argmin(d2, axis=-1)
    return jnp.take_along_axis(disp, best[..., None, None], axis=2)[:, :, 0, :]


def ap_ue_geometry(ap_pos, ue_pos, side: float = 1000.0, height: float = 10.0):
    """3-D distance, azimuth and elevation from each AP to each UE, each ``[L, K]``.

    ``distance = sqrt(horizontal^2 + height^2)``, ``azimuth = atan2(dy, dx)``,
    ``elevation = asin(height / distance)``.
    """
    disp = wraparound_displacement(ap_pos, ue_pos, side)
    distance = jnp.sqrt(jnp.sum(disp**2, axis=-1) + height**2)
    azimuth = jnp.arctan2(disp[..., 1], disp[..., 0])
    elevation = jnp.arcsin(height / distance)
    return distance, azimuth, elevation


def uniform_disc(key, n: int, radius: float, dtype=None):
    """``n`` points uniform in the disc of radius ``radius`` centred at the origin: ``[n, 2]``.

    Radius ``radius sqrt(u)``, angle uniform (area-uniform).
    """
    dtype = dtype or jnp.result_type(float)
    ku, ka = jax.random.split(key)
    r = radius * jnp.sqrt(jax.random.uniform(ku, (n,), dtype=dtype))
    a = 2.0 * jnp.pi * jax.random.uniform(ka, (n,), dtype=dtype)
    return jnp.stack([r * jnp.cos(a), r * jnp.sin(a)], axis=-1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Waypoints:
    """Random-waypoint mobility state of ``K`` UEs (an immutable pytree).

    pos[K, 2], dest[K, 2] (m); speed[K] (m/s); pause[K]: seconds of pause left.
    """

    pos: jax.Array
    dest: jax.Array
    speed: jax.Array
    pause: jax.Array


def draw_speed(key, shape, mean, low, high, dtype=None):
    """Speeds ``~ Exp(mean)`` clipped to ``[low, high]`` (same unit as the arguments)."""
    dtype = dtype or jnp.result_type(float)
    return jnp.clip(mean * jax.random.exponential(key, shape, dtype=dtype), low, high)


def waypoint_init(key, n: int, radius: float, speed_mean, speed_low, speed_high, dtype=None):
    """UEs uniform in the disc, each heading to a uniform waypoint at an Exp speed (m/s)."""
    kp, kd, ks = jax.random.split(key, 3)
    pos = uniform_disc(kp, n, radius, dtype)
    dest = uniform_disc(kd, n, radius, dtype)
    speed = draw_speed(ks, (n,), speed_mean, speed_low, speed_high, pos.dtype)
    return Waypoints(pos, dest, speed, jnp.zeros((n,), pos.dtype))


def waypoint_step(
    key, state: Waypoints, dt, radius, speed_mean, speed_low, speed_high, pause_prob, pause_mean
):
    """One slot of ``dt`` seconds of the random-waypoint model (Johnson and Maltz 1996).

    A pausing UE stays put until its pause ends. A moving UE advances ``speed * dt`` towards its
    waypoint; on arrival it stops there, draws a new uniform waypoint in the disc and a new
    ``Exp(speed_mean)`` speed clipped to ``[speed_low, speed_high]``, and with probability
    ``pause_prob`` pauses for an ``Exp(pause_mean)`` time. All UEs at once (no loops).
    """
    n = state.pos.shape[0]
    kd, ks, kp, kt = jax.random.split(key, 4)
    paused = state.pause > 0
    delta = state.dest - state.pos
    dist = jnp.sqrt(jnp.sum(delta**2, axis=-1))
    step = state.speed * dt
    arrive = (~paused) & (step >= dist)
    unit = delta / jnp.maximum(dist, 1e-9)[:, None]
    moved = state.pos + jnp.minimum(step, dist)[:, None] * unit
    pos = jnp.where(paused[:, None], state.pos, moved)
    new_dest = uniform_disc(kd, n, radius, state.pos.dtype)
    new_speed = draw_speed(ks, (n,), speed_mean, speed_low, speed_high, state.pos.dtype)
    pause_len = jnp.where(
        jax.random.uniform(kp, (n,), dtype=state.pos.dtype) < pause_prob,
        pause_mean * jax.random.exponential(kt, (n,), dtype=state.pos.dtype),
        0.0,
    )
    dest = jnp.where(arrive[:, None], new_dest, state.dest)
    speed = jnp.where(arrive, new_speed, state.speed)
    pause = jnp.where(arrive, pause_len, jnp.maximum(state.pause - dt, 0.0))
    return Waypoints(pos, dest, speed, pause)


# --------------------------------------------------------------------------------------------
# UAV access points ([MOBILE-AP]): fixed altitude, bounded-speed moves, constraints (22b)-(22c)


@jax.jit
def uav_ue_geometry(ap_pos, ue_pos, side: float = 1000.0, ap_height=30.0, ue_height=1.5):
    """Horizontal and 3-D distance, azimuth and elevation from each UAV AP to each UE.

    APs fly at the fixed altitude ``ap_height`` (m), UEs stand at ``ue_height``; horizontal
    displacements wrap around the square of side ``side`` (:func:`wraparound_displacement`).
    ``d2d = |disp|`` (the distance of [MOBILE-AP] eq. (21) and of its constraint (22b)),
    ``d3d = sqrt(d2d^2 + (ap_height - ue_height)^2)``, ``azimuth = atan2(dy, dx)``,
    ``elevation = asin((ap_height - ue_height) / d3d)``. ``ap_pos[L, 2]``, ``ue_pos[K, 2]``;
    returns four ``[L, K]`` arrays. Differentiable in the positions (``d2d`` has a zero
    gradient where an AP is exactly above a UE).
    """
    disp = wraparound_displacement(ap_pos, ue_pos, side)
    s = jnp.sum(disp**2, axis=-1)
    pos = s > 0
    d2d = jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)
    dh = jnp.asarray(ap_height, d2d.dtype) - jnp.asarray(ue_height, d2d.dtype)
    d3d = jnp.sqrt(s + dh**2)
    azimuth = jnp.arctan2(disp[..., 1], disp[..., 0])
    elevation = jnp.arcsin(dh / d3d)
    return d2d, d3d, azimuth, elevation


@jax.jit
def uav_displacement(action, max_step):
    """Bounded-speed move: ``action[..., 2]`` in ``[-1, 1]^2`` -> displacement ``[..., 2]`` (m).

    ``a = clip(action, -1, 1)``, ``displacement = max_step a / max(1, |a|)``: linear inside
    the unit disc, radially capped outside it, so ``|displacement| <= max_step`` (= the speed
    cap ``v_max`` times the slot length) in every direction (a plain per-axis scaling would
    allow ``sqrt(2) max_step`` diagonally). Jittable and differentiable (kinks at the caps).
    """
    a = jnp.clip(jnp.asarray(action), -1.0, 1.0)
    n2 = jnp.sum(a**2, axis=-1, keepdims=True)
    over = n2 > 1.0
    scale = jnp.where(over, jax.lax.rsqrt(jnp.where(over, n2, 1.0)), 1.0)
    return max_step * a * scale


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProjectedPositions:
    """Result of :func:`project_uav_positions` (an immutable pytree), each ``[L]`` but ``pos``.

    pos[L, 2]: the feasible positions (m). area_violation: ``|x - clip(x)|``, how far the
    proposed position ``x`` lay outside the area (22c). distance_violation:
    ``sum_k max(d_min - d_k, 0)`` at ``clip(x)``, how deep it lay inside the forbidden discs
    (22b). residual: ``sum_k max(d_min - d_k, 0)`` at ``pos`` (0 unless no feasible point was
    found, see :func:`project_uav_positions`). Distances wrap around.
    """

    pos: jax.Array
    area_violation: jax.Array
    distance_violation: jax.Array
    residual: jax.Array


def _circle_pair_points(u, r):
    """Intersections of the circles of radius ``r`` around ``u[L, K, 2]``: ``[L, K*K*2, 2]``
    and a validity mask (pairs ``i < j`` whose circles meet)."""
    L, K, _ = u.shape
    a = u[:, :, None, :]
    b = u[:, None, :, :]
    v = b - a  # [L, K, K, 2]
    d2 = jnp.sum(v**2, axis=-1)
    iu = jnp.triu(jnp.ones((K, K), bool), 1)
    ok = iu[None] & (d2 > 0) & (d2 <= 4.0 * r**2)
    d2s = jnp.where(ok, d2, 1.0)
    h = jnp.sqrt(jnp.maximum(r**2 - d2s / 4.0, 0.0))
    e = v * jax.lax.rsqrt(d2s)[..., None]
    perp = jnp.stack([-e[..., 1], e[..., 0]], axis=-1)
    m = 0.5 * (a + b)
    pts = jnp.stack([m + h[..., None] * perp, m - h[..., None] * perp], axis=3)  # [L,K,K,2,2]
    okk = jnp.broadcast_to(ok[..., None], ok.shape + (2,))
    return pts.reshape(L, K * K * 2, 2), okk.reshape(L, K * K * 2)


def _circle_edge_points(u, r, lo, hi):
    """Intersections of the circles around ``u[L, K, 2]`` with the four lines ``x = lo, hi``,
    ``y = lo, hi``: ``[L, K*8, 2]`` and a validity mask (the line meets the circle)."""
    L, K, _ = u.shape
    pts, oks = [], []
    for axis in (0, 1):
        other = 1 - axis
        for edge in (lo[axis], hi[axis]):
            off = edge - u[..., axis]
            rad = r**2 - off**2
            ok = rad >= 0
            h = jnp.sqrt(jnp.where(ok, rad, 0.0))
            for sign in (1.0, -1.0):
                p = jnp.zeros_like(u)
                p = p.at[..., axis].set(jnp.broadcast_to(edge, off.shape))
                p = p.at[..., other].set(u[..., other] + sign * h)
                pts.append(p)
                oks.append(ok)
    return jnp.concatenate(pts, axis=1), jnp.concatenate(oks, axis=1)


def project_uav_positions(
    pos, ue_pos, d_min, side: float = 1000.0, lower=0.0, upper=None, tol=None
) -> ProjectedPositions:
    """Nearest point to each proposed AP position that meets [MOBILE-AP] (22b) and (22c).

    The feasible set of AP ``l`` is ``F = {y in [lower, upper]^2 : d(y, ue_k) >= d_min for all
    k}``, the area (22c) minus the open discs of radius ``d_min`` around the UEs (22b), with
    wrap-around horizontal distances (the paper's area wraps around for the distances, as in
    the book, and (22c) still bounds the coordinates, so an AP cannot fly across an edge).
    ``F`` is not convex; its nearest point to ``x`` is found exactly among the candidates where
    a nearest point can lie: ``clip(x)`` itself, the radial projection of ``x`` onto each
    circle, the feet of ``x`` on the four edges, the four corners, the circle-edge and the
    circle-circle intersections (each arc, edge segment or vertex of the boundary of ``F``
    contributes its nearest point or its end points). Of the candidates in ``F`` the nearest to
    ``x`` is taken (ties: the first in that order). A feasible ``x`` is returned unchanged.
    Circles are drawn at ``d_min + tol`` (``tol`` default ``64 eps max(side, 1 m)``: 7.6 mm
    in float32) so that rounding never puts a projected point inside a disc.

    For every UE only its image nearest to ``clip(x)`` is used (assumes the candidates lie
    within ``side / 2`` of it: ``2 K d_min < side / 2`` suffices). If no candidate is feasible
    (the discs cover the area), ``clip(x)`` pushed out of its nearest disc radially is returned
    and ``residual > 0`` reports the violation. An AP exactly above a UE is pushed towards the
    centre of the area (or along ``+x`` at the centre).

    ``pos[L, 2]`` proposed positions (e.g. ``ap_pos + uav_displacement(...)``), ``ue_pos[K,
    2]``, ``d_min`` (m, scalar), ``lower``/``upper`` scalars or ``[2]`` (default ``0`` and
    ``side``). Returns :class:`ProjectedPositions`. Jittable (about ``K^2`` candidates per AP);
    not meant for differentiation (piecewise, the selection is discrete).
    """
    pos = jnp.asarray(pos)
    if pos.ndim != 2 or pos.shape[-1] != 2:
        raise ValueError(f"pos must have shape [L, 2], got {pos.shape}")
    if jnp.ndim(ue_pos) != 2 or jnp.shape(ue_pos)[-1] != 2:
        raise ValueError(f"ue_pos must have shape [K, 2], got {jnp.shape(ue_pos)}")
    V.finite("d_min", d_min, nonneg=True)
    V.finite("side", side, positive=True)
    dt = pos.dtype
    ue_pos = jnp.asarray(ue_pos, dt)
    upper = side if upper is None else upper
    lo = jnp.broadcast_to(jnp.asarray(lower, dt), (2,))
    hi = jnp.broadcast_to(jnp.asarray(upper, dt), (2,))
    a_lo, a_hi = V.concrete(lo), V.concrete(hi)
    if a_lo is not None and a_hi is not None and np.any(a_lo > a_hi):
        raise ValueError(f"lower ({a_lo}) must not exceed upper ({a_hi})")
    if tol is None:
        tol = 64.0 * float(jnp.finfo(dt).eps) * max(float(side), 1.0)
    return _project(pos, ue_pos, jnp.asarray(d_min, dt), lo, hi, jnp.asarray(tol, dt), side)


@functools.partial(jax.jit, static_argnames=("side",))
def _project(pos, ue_pos, d_min, lo, hi, tol, side):
    dt = pos.dtype
    r = d_min + tol

    def violation(y):
        disp = wraparound_displacement(y, ue_pos, side)
        return jnp.sum(jnp.maximum(d_min - jnp.sqrt(jnp.sum(disp**2, -1)), 0.0), axis=-1)

    y = jnp.clip(pos, lo, hi)
    area_violation = jnp.sqrt(jnp.sum((pos - y) ** 2, axis=-1))
    u = y[:, None, :] + wraparound_displacement(y, ue_pos, side)  # nearest UE images [L, K, 2]
    # radial projections of x onto each circle
    w = pos[:, None, :] - u
    n2 = jnp.sum(w**2, axis=-1, keepdims=True)
    centre = 0.5 * (lo + hi)
    inward = centre - u
    inward = jnp.where(jnp.sum(inward**2, -1, keepdims=True) > 0, inward, jnp.array([1.0, 0.0], dt))
    w = jnp.where(n2 > 0, w, inward)
    radial = u + r * w * jax.lax.rsqrt(jnp.sum(w**2, axis=-1, keepdims=True))
    feet = jnp.stack(
        [
            jnp.stack([jnp.broadcast_to(lo[0], y[:, 1].shape), y[:, 1]], -1),
            jnp.stack([jnp.broadcast_to(hi[0], y[:, 1].shape), y[:, 1]], -1),
            jnp.stack([y[:, 0], jnp.broadcast_to(lo[1], y[:, 0].shape)], -1),
            jnp.stack([y[:, 0], jnp.broadcast_to(hi[1], y[:, 0].shape)], -1),
        ],
        axis=1,
    )
    corners = jnp.stack(
        [
            jnp.stack([lo[0], lo[1]]),
            jnp.stack([hi[0], lo[1]]),
            jnp.stack([lo[0], hi[1]]),
            jnp.stack([hi[0], hi[1]]),
        ]
    )
    corners = jnp.broadcast_to(corners, (pos.shape[0], 4, 2))
    edge_pts, edge_ok = _circle_edge_points(u, r, lo, hi)
    pair_pts, pair_ok = _circle_pair_points(u, r)
    cands = jnp.concatenate([y[:, None], radial, feet, corners, edge_pts, pair_pts], axis=1)
    L, K = u.shape[:2]
    always = jnp.ones((L, 1 + K + 8), bool)  # clip(x), radial projections, feet, corners
    valid = jnp.concatenate([always, edge_ok, pair_ok], axis=1)
    inside = jnp.all((cands >= lo) & (cands <= hi), axis=-1)
    dist2 = jnp.sum((cands[:, :, None, :] - u[:, None, :, :]) ** 2, axis=-1)  # [L, C, K]
    clear = jnp.all(dist2 >= d_min**2, axis=-1)
    feasible = valid & inside & clear
    cost = jnp.where(feasible, jnp.sum((cands - pos[:, None, :]) ** 2, axis=-1), jnp.inf)
    best = jnp.argmin(cost, axis=1)
    chosen = jnp.take_along_axis(cands, best[:, None, None], axis=1)[:, 0]
    # fallback (no feasible candidate): out of the nearest disc, then into the area
    d_y = jnp.sum((y[:, None, :] - u) ** 2, axis=-1)
    near = jnp.argmin(d_y, axis=1)
    fallback = jnp.clip(jnp.take_along_axis(radial, near[:, None, None], axis=1)[:, 0], lo, hi)
    out = jnp.where(jnp.any(feasible, axis=1)[:, None], chosen, fallback)
    return ProjectedPositions(
        pos=out,
        area_violation=area_violation,
        distance_violation=violation(y),
        residual=violation(out),
    )


def uav_step(
    ap_pos, action, ue_pos, max_step, d_min, side: float = 1000.0, lower=0.0, upper=None
) -> ProjectedPositions:
    """One move of the UAV APs: ``project_uav_positions(ap_pos + uav_displacement(action,
    max_step), ue_pos, d_min, side, lower, upper)``.

    ``ap_pos[L, 2]`` (m), ``action[L, 2]`` in ``[-1, 1]^2``, ``max_step = v_max dt`` (m).
    The penalty terms of a reward are the fields ``area_violation`` and
    ``distance_violation`` of the result (the constraint violation of the proposed move).
    """
    proposed = jnp.asarray(ap_pos) + uav_displacement(action, max_step)
    return project_uav_positions(proposed, ue_pos, d_min, side, lower, upper)
