"""Drops and wrap-around geometry (book section 5.3: square area with wrap-around)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


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
