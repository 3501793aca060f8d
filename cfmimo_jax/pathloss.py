"""Path loss, correlated shadow fading and noise power (book section 5.3 setup, eq. (5.42))."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as V
from .fastmath import sincos
from .linalg import cholesky


def noise_power_dbm(bandwidth_hz: float = 20e6, noise_figure_db: float = 7.0) -> float:
    """Noise power in dBm: ``-174 + 10 log10(B) + NF`` (book eq. (5.43) setting)."""
    if not bandwidth_hz > 0:
        raise ValueError(f"bandwidth_hz must be positive, got {bandwidth_hz}")
    return float(-174.0 + 10.0 * np.log10(bandwidth_hz) + noise_figure_db)


def pathloss_db(distance_m):
    """Channel gain in dB without shadowing: ``-30.5 - 36.7 log10(d / 1 m)`` (book eq. (5.42)).

    ``distance_m[...]`` (3-D distance in metres) -> same shape.
    """
    return -30.5 - 36.7 * jnp.log10(distance_m)


def shadowing_covariance(ue_pos, std_db: float = 4.0, decorrelation_m: float = 9.0):
    """Covariance between the shadowing of UEs seen from one AP, ``[K, K]``.

    ``E[F_lk F_li] = std^2 2^(-delta_ki / decorrelation)`` with ``delta`` the Euclidean UE
    distance (book eq. (5.44)). ``ue_pos[K, 2]``.
    """
    diff = ue_pos[:, None, :] - ue_pos[None, :, :]
    delta = jnp.sqrt(jnp.sum(diff**2, axis=-1) + 1e-30)
    delta = jnp.where(jnp.eye(ue_pos.shape[0], dtype=bool), 0.0, delta)
    return std_db**2 * 2.0 ** (-delta / decorrelation_m)


def correlated_shadowing(
    key, n_aps: int, ue_pos, std_db: float = 4.0, decorrelation_m: float = 9.0
):
    """Shadow fading ``F[L, K]`` in dB: independent over APs, correlated over UEs (eq. (5.44)).

    Draws ``F[l, :] = chol(Sigma) z_l`` with ``z_l ~ N(0, I_K)``; a relative jitter of 1e-6 on
    the diagonal keeps the Cholesky factor finite when two UEs coincide.
    """
    sigma = shadowing_covariance(ue_pos, std_db, decorrelation_m)
    K = ue_pos.shape[0]
    chol = cholesky(sigma + 1e-6 * std_db**2 * jnp.eye(K, dtype=sigma.dtype))
    z = jax.random.normal(key, (n_aps, K), dtype=sigma.dtype)
    return z @ chol.T


def uma_los_pathloss_db(d2d_m, ap_height_m=20.0, ue_height_m=1.5, carrier_ghz=2.0):
    """3GPP TR 38.901 (Table 7.4.1-1) urban-macro LoS path loss in dB (a loss, positive).

    With ``d3D = sqrt(d2D^2 + (h_BS - h_UT)^2)``, the breakpoint
    ``d'_BP = 4 (h_BS - 1) (h_UT - 1) f_c / c`` (``f_c`` in Hz), and ``f_c`` in GHz below:
    ``PL1 = 28 + 22 log10(d3D) + 20 log10(f_c)`` for ``d2D <= d'_BP``,
    ``PL2 = 28 + 40 log10(d3D) + 20 log10(f_c) - 9 log10(d'_BP^2 + (h_BS - h_UT)^2)`` beyond.
    ``d2D`` is clamped to at least 10 m (the model's validity range). ``d2d_m[...]`` -> same.
    The effective heights ``h - 1 m`` are floored at 0.1 m so a UE at 1 m keeps a breakpoint.
    """
    dh = ap_height_m - ue_height_m
    d2 = jnp.maximum(d2d_m, 10.0)
    d3 = jnp.sqrt(d2**2 + dh**2)
    hb = jnp.maximum(ap_height_m - 1.0, 0.1)
    hu = jnp.maximum(ue_height_m - 1.0, 0.1)
    d_bp = 4.0 * hb * hu * carrier_ghz * 1e9 / 299_792_458.0
    fc = 20.0 * jnp.log10(carrier_ghz)
    pl1 = 28.0 + 22.0 * jnp.log10(d3) + fc
    pl2 = 28.0 + 40.0 * jnp.log10(d3) + fc - 9.0 * jnp.log10(d_bp**2 + dh**2)
    return jnp.where(d2 <= d_bp, pl1, pl2)


def shadowing_field(key, n_aps: int, n_terms: int = 64, correlation_m: float = 37.0, dtype=None):
    """Spatially correlated shadowing fields, one per AP, as a property of position.

    Random Fourier features (Rahimi and Recht 2007) in their weight-space form:
    ``F_l(x) = sum_s [a_ls cos(w_s . x) + b_ls sin(w_s . x)] / sqrt(S)`` with frequencies
    ``w_s ~ N(0, I / correlation_m^2)`` shared by the APs and weights ``a_ls, b_ls ~ N(0, 1)``
    independent per AP. Given the frequencies each ``F_l`` is exactly a zero-mean Gaussian
    field, independent across APs, with correlation ``(1/S) sum_s cos(w_s . (x - x'))``, whose
    mean over frequency draws is ``exp(-|x - x'|^2 / (2 correlation_m^2))`` (unit variance at
    ``x = x'`` exactly). Multiply by the shadowing std (``evaluate_shadowing``). A UE moving
    through the field sees smoothly varying shadowing. Sharing the frequencies makes one
    evaluation cost ``K S`` sines and cosines and an ``[L, 2S] x [2S, K]`` product instead of
    ``L K S`` cosines.

    Returns ``(w[S, 2], a[L, S], b[L, S])``.
    """
    dtype = dtype or jnp.result_type(float)
    kw, ka, kb = jax.random.split(key, 3)
    w = jax.random.normal(kw, (n_terms, 2), dtype=dtype) / correlation_m
    a = jax.random.normal(ka, (n_aps, n_terms), dtype=dtype)
    b = jax.random.normal(kb, (n_aps, n_terms), dtype=dtype)
    return w, a, b


def evaluate_shadowing(field, ue_pos, std_db):
    """Shadowing in dB ``F[..., L, K]`` of the fields ``(w[S, 2], a[L, S], b[L, S])`` at
    ``ue_pos[..., K, 2]`` (leading axes: e.g. several time slots, evaluated as one product):
    ``F_lk = std_db sum_s [a_ls cos(w_s . x_k) + b_ls sin(w_s . x_k)] / sqrt(S)``
    (see ``shadowing_field``).
    """
    w, a, b = field
    arg = ue_pos[..., 0:1] * w[:, 0] + ue_pos[..., 1:2] * w[:, 1]  # [..., K, S]
    sin, cos = sincos(arg)  # float32: cfmimo_jax.fastmath's vectorised pair
    # Two [..., K, S] x [S, L] products (no concatenated [..., K, 2S] features to materialise),
    # UE axis major, then transposed: on XLA's CPU backend about 1.4-1.7x faster than one
    # "ls,...ks->...lk" product of the concatenated features.
    F = jnp.einsum("...ks,ls->...kl", cos, a) + jnp.einsum("...ks,ls->...kl", sin, b)
    return (std_db / jnp.sqrt(w.shape[0])) * jnp.swapaxes(F, -1, -2)


# --------------------------------------------------------------------------------------------
# COST 231 Walfisch-Ikegami ([COST-231] chapter 4), the path loss of [MOBILE-AP] section V

#: Validity range of the COST 231 Walfisch-Ikegami model ([COST-231] chapter 4):
#: carrier 0.8-2 GHz, AP (base) height 4-50 m, UE (mobile) height 1-3 m, distance 20 m-5 km.
COST231_CARRIER_GHZ = (0.8, 2.0)
COST231_AP_HEIGHT_M = (4.0, 50.0)
COST231_UE_HEIGHT_M = (1.0, 3.0)
COST231_DISTANCE_M = (20.0, 5000.0)


def _cost231_check(distance_m, carrier_ghz, **positive):
    """Host-side checks of the COST 231 inputs (skipped for tracers)."""
    V.finite("distance_m", distance_m, positive=True)
    c = V.concrete(carrier_ghz)
    if c is not None:
        V.finite("carrier_ghz", c)
        lo, hi = COST231_CARRIER_GHZ
        if np.any(c < lo) or np.any(c > hi):
            raise ValueError(
                f"carrier_ghz must lie in the COST 231 range [{lo}, {hi}] GHz, got {c}"
            )
    for name, value in positive.items():
        if name == "street_orientation_deg":
            a = V.concrete(value)
            if a is not None:
                V.finite(name, a)
                if np.any(a < 0) or np.any(a > 90):
                    raise ValueError(f"{name} must lie in [0, 90] degrees, got {a}")
        else:
            V.finite(name, value, positive=True)


def cost231_wi_los_db(distance_m, carrier_ghz=1.9):
    """COST 231 Walfisch-Ikegami line-of-sight (street canyon) path loss in dB (a loss, > 0).

    [COST-231] chapter 4: ``L_LOS = 42.6 + 26 log10(d / 1 km) + 20 log10(f / 1 MHz)``.

    Validity ([COST-231]): ``f`` in 0.8-2 GHz (``carrier_ghz`` outside raises
    ``ValueError`` when concrete), ``d`` in 20 m-5 km. ``d`` below 20 m is clamped to 20 m (the
    loss is held at its 20 m value, zero gradient there); above 5 km the formula is
    extrapolated. ``distance_m[...]`` (metres; the model's ``d``, see
    :func:`cost231_wi_nlos_db`) -> same shape. Jittable and differentiable in ``distance_m``.
    """
    _cost231_check(distance_m, carrier_ghz)
    d_km = jnp.maximum(jnp.asarray(distance_m), COST231_DISTANCE_M[0]) / 1000.0
    f_mhz = 1000.0 * jnp.asarray(carrier_ghz, d_km.dtype)
    return 42.6 + 26.0 * jnp.log10(d_km) + 20.0 * jnp.log10(f_mhz)


def cost231_wi_nlos_db(
    distance_m,
    carrier_ghz=1.9,
    ap_height_m=30.0,
    ue_height_m=1.5,
    roof_height_m=12.0,
    street_width_m=25.0,
    building_separation_m=50.0,
    street_orientation_deg=30.0,
    metropolitan: bool = True,
):
    """COST 231 Walfisch-Ikegami non-line-of-sight path loss in dB (a loss, > 0).

    [COST-231] chapter 4, ``d`` in km, ``f`` in MHz, heights and lengths in m:

        L_NLOS = L_0 + max(L_rts + L_msd, 0)
        L_0    = 32.4 + 20 log10 d + 20 log10 f                          (free space)
        L_rts  = -16.9 - 10 log10 w + 10 log10 f + 20 log10(h_roof - h_UE) + L_ori
        L_ori  = -10 + 0.354 phi            for   0 <= phi < 35 deg
                 2.5 + 0.075 (phi - 35)     for  35 <= phi < 55 deg
                 4.0 - 0.114 (phi - 55)     for  55 <= phi <= 90 deg
        L_msd  = L_bsh + k_a + k_d log10 d + k_f log10 f - 9 log10 b
        L_bsh  = -18 log10(1 + dh)  if dh > 0, else 0;     dh = h_AP - h_roof
        k_a    = 54 if dh > 0;  54 - 0.8 dh if dh <= 0 and d >= 0.5 km;
                 54 - 0.8 dh (d / 0.5 km) if dh <= 0 and d < 0.5 km
        k_d    = 18 if dh > 0, else 18 - 15 dh / h_roof
        k_f    = -4 + 0.7 (f / 925 - 1)  (medium-sized city, suburban centre)
                 -4 + 1.5 (f / 925 - 1)  (metropolitan centre, ``metropolitan=True``)

    ``w`` street width, ``b`` building separation (centre to centre), ``phi`` the angle
    between the street and the direct path (``street_orientation_deg``). ``d`` is the
    AP-UE distance; [MOBILE-AP] eq. (21) evaluates the path loss at the horizontal AP-UE
    distance, which is what the scenario passes (a 3-D distance may be passed instead: for a
    28.5 m height difference it is 1.7x the horizontal one at 20 m, 1.01x at 200 m).

    Defaults where [MOBILE-AP] is silent (it names only the model): ``f = 1.9 GHz`` (the
    carrier of the cell-free setting of [NGO-CF], whose path loss is the COST 231 Hata model;
    inside this model's range), a UAV altitude of 30 m (inside the model's 4-50 m AP heights,
    above the roofs), UE at 1.5 m, and the building parameters of the 3GPP SCM urban
    micro-cell ([3GPP-25.996], its path loss: roofs 12 m, building separation 50 m, street
    width 25 m, orientation 30 deg, metropolitan centre), with which this formula reduces to
    the SCM's published ``-55.9 + 38 log10(d / 1 m) + (24.5 + 1.5 f / 925) log10 f`` for an AP
    at 12.5 m.

    Validity ([COST-231]): ``f`` 0.8-2 GHz, ``h_AP`` 4-50 m, ``h_UE`` 1-3 m, ``d`` 20 m-5 km.
    Behaviour outside: ``carrier_ghz`` outside 0.8-2 GHz, non-positive heights, widths or
    separations, ``h_UE >= h_roof`` and ``phi`` outside [0, 90] raise ``ValueError`` when
    concrete; ``d`` below 20 m is clamped to 20 m (loss held, zero gradient); heights inside
    those checks but outside 4-50 m / 1-3 m, and ``d`` above 5 km, are extrapolated by the same
    formula. Inside ``jit`` the valid ranges are assumed.

    Every argument broadcasts (e.g. ``distance_m[L, K]`` with ``ap_height_m[L, 1]``);
    ``metropolitan`` is a Python bool. The branches are selected with ``jnp.where`` on safe
    arguments, so the loss is jittable and differentiable in the distance and the heights
    (piecewise; the ``max(., 0)`` and the branch edges are kinks).
    """
    _cost231_check(
        distance_m,
        carrier_ghz,
        ap_height_m=ap_height_m,
        ue_height_m=ue_height_m,
        roof_height_m=roof_height_m,
        street_width_m=street_width_m,
        building_separation_m=building_separation_m,
        street_orientation_deg=street_orientation_deg,
    )
    hu, hr = V.concrete(ue_height_m), V.concrete(roof_height_m)
    if hu is not None and hr is not None and np.any(hu >= hr):
        raise ValueError(
            f"ue_height_m ({hu}) must be below roof_height_m ({hr}) for the NLoS model"
        )
    return _cost231_nlos(
        jnp.asarray(distance_m),
        carrier_ghz,
        ap_height_m,
        ue_height_m,
        roof_height_m,
        street_width_m,
        building_separation_m,
        street_orientation_deg,
        bool(metropolitan),
    )


@functools.partial(jax.jit, static_argnames=("metropolitan",))
def _cost231_nlos(
    distance_m,
    carrier_ghz,
    ap_height_m,
    ue_height_m,
    roof_height_m,
    street_width_m,
    building_separation_m,
    street_orientation_deg,
    metropolitan,
):
    d_km = jnp.maximum(distance_m, COST231_DISTANCE_M[0]) / 1000.0
    dt = d_km.dtype
    f = 1000.0 * jnp.asarray(carrier_ghz, dt)
    h_ap = jnp.asarray(ap_height_m, dt)
    h_ue = jnp.asarray(ue_height_m, dt)
    h_roof = jnp.asarray(roof_height_m, dt)
    w = jnp.asarray(street_width_m, dt)
    b = jnp.asarray(building_separation_m, dt)
    phi = jnp.asarray(street_orientation_deg, dt)
    log_d, log_f = jnp.log10(d_km), jnp.log10(f)

    l0 = 32.4 + 20.0 * log_d + 20.0 * log_f
    l_ori = jnp.where(
        phi < 35.0,
        -10.0 + 0.354 * phi,
        jnp.where(phi < 55.0, 2.5 + 0.075 * (phi - 35.0), 4.0 - 0.114 * (phi - 55.0)),
    )
    dh_ue = jnp.maximum(h_roof - h_ue, 1e-3)  # > 0 by the check above
    l_rts = -16.9 - 10.0 * jnp.log10(w) + 10.0 * log_f + 20.0 * jnp.log10(dh_ue) + l_ori
    dh = h_ap - h_roof
    above = dh > 0
    l_bsh = jnp.where(above, -18.0 * jnp.log10(1.0 + jnp.maximum(dh, 0.0)), 0.0)
    k_a = jnp.where(
        above, 54.0, jnp.where(d_km >= 0.5, 54.0 - 0.8 * dh, 54.0 - 0.8 * dh * d_km / 0.5)
    )
    k_d = jnp.where(above, 18.0, 18.0 - 15.0 * dh / h_roof)
    k_f = -4.0 + (1.5 if metropolitan else 0.7) * (f / 925.0 - 1.0)
    l_msd = l_bsh + k_a + k_d * log_d + k_f * log_f - 9.0 * jnp.log10(b)
    return l0 + jnp.maximum(l_rts + l_msd, 0.0)


def cost231_wi_pathloss_db(distance_m, los, carrier_ghz=1.9, **nlos_options):
    """COST 231 Walfisch-Ikegami path loss in dB with a LoS state or LoS probability.

    ``PL = P L_LOS + (1 - P) L_NLOS`` with ``P = los`` (:func:`cost231_wi_los_db`,
    :func:`cost231_wi_nlos_db`; ``nlos_options`` are the latter's keyword arguments).
    ``los`` broadcasts against ``distance_m``: a boolean array selects the LoS or NLoS form per
    link; a probability in ``[0, 1]`` (e.g. :func:`los_probability_air_to_ground`) gives the
    mean path loss in dB over the LoS state, the form of [A2G-LOS],
    deterministic and smooth in the AP position. Jittable; differentiable in the distance and
    (for a probability) in ``los``.
    """
    p = V.concrete(los)
    if p is not None and (np.any(p < 0) or np.any(p > 1) or not np.all(np.isfinite(p))):
        raise ValueError("los must be boolean or a probability in [0, 1]")
    pl_los = cost231_wi_los_db(distance_m, carrier_ghz)
    pl_nlos = cost231_wi_nlos_db(distance_m, carrier_ghz, **nlos_options)
    w = jnp.asarray(los).astype(pl_los.dtype)
    return w * pl_los + (1.0 - w) * pl_nlos


#: Environment parameters ``(a, b)`` of the air-to-ground LoS probability ([A2G-LOS], its fit
#: to the ITU-R built-up statistics of four environments).
A2G_LOS_PARAMETERS = {
    "suburban": (4.88, 0.43),
    "urban": (9.61, 0.16),
    "dense_urban": (12.08, 0.11),
    "highrise_urban": (27.23, 0.08),
}


def los_probability_air_to_ground(elevation, a=9.61, b=0.16):
    """Probability of line of sight between an aerial AP and a ground UE ([A2G-LOS]).

    ``P_LOS = 1 / (1 + a exp(-b (theta - a)))`` with ``theta`` the elevation angle in degrees
    (``elevation`` in radians, e.g. ``atan2(h_AP - h_UE, d_2D)``); ``(a, b)`` per environment
    (:data:`A2G_LOS_PARAMETERS`; default urban). [MOBILE-AP] does not say which form of the
    COST 231 model applies to which link: this is the LoS rule the scenario uses (with the mean
    loss of :func:`cost231_wi_pathloss_db`). ``elevation[...]`` -> same shape; jittable,
    differentiable.
    """
    theta = jnp.degrees(jnp.asarray(elevation))
    return 1.0 / (1.0 + a * jnp.exp(-b * (theta - a)))
