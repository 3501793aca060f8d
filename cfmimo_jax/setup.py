"""Network setups: the book's canonical cell-free generator as one jittable function of a key.

Book section 5.3 (and 6.3): ``L`` APs with ``N``-antenna ULAs and ``K`` single-antenna UEs
dropped uniformly in a square with wrap-around, 3GPP-like path loss with spatially correlated
shadow fading, local-scattering correlation, Algorithm 4.1 pilots and DCC serving sets.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from . import _validate as V
from .correlation import ASD_MAX_TRACED, local_scattering, quadrature_order
from .geometry import ap_ue_geometry, uniform_drop
from .pathloss import correlated_shadowing, noise_power_dbm, pathloss_db
from .pilots import _assign_pilots, _dcc, master_aps


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class Setup:
    """One network setup (an immutable pytree; stack/vmap freely).

    Fields (``L`` APs, ``K`` UEs, ``N`` antennas):
      ap_pos[L, 2], ue_pos[K, 2]: positions in metres.
      distance[L, K]: 3-D distance (wrap-around), metres.
      azimuth[L, K], elevation[L, K]: angles from AP to UE, radians.
      shadowing_db[L, K]: shadow fading F, dB.
      gain_db[L, K]: channel gain over noise, ``pathloss_db(d) + F - noise_dbm``.
      R[L, K, N, N]: correlation matrices normalised by the noise power.
      pilot[K]: int32 pilot indices; master[K]: int32 master APs; D[L, K]: bool serving sets.
    """

    ap_pos: jax.Array
    ue_pos: jax.Array
    distance: jax.Array
    azimuth: jax.Array
    elevation: jax.Array
    shadowing_db: jax.Array
    gain_db: jax.Array
    R: jax.Array
    pilot: jax.Array
    master: jax.Array
    D: jax.Array

    @property
    def gain(self):
        """Linear gain over noise ``[L, K]``."""
        return 10.0 ** (self.gain_db / 10.0)

    @property
    def shape(self):
        """``(L, K, N)``."""
        L, K, N, _ = self.R.shape[-4:]
        return L, K, N


def generate_setup(
    key,
    L: int,
    K: int,
    N: int,
    tau_p: int,
    asd_azimuth=None,
    asd_elevation=None,
    *,
    ap_pos=None,
    ue_pos=None,
    side: float = 1000.0,
    height: float = 10.0,
    shadow_std_db: float = 4.0,
    decorrelation_m: float = 9.0,
    bandwidth_hz: float = 20e6,
    noise_figure_db: float = 7.0,
    spacing: float = 0.5,
    dtype=None,
) -> Setup:
    """Generate one setup of the book's canonical scenario (book sections 5.3 and 4.4).

    ``key`` -> :class:`Setup` with ``R[L, K, N, N]``. APs and UEs are uniform in a ``side`` x
    ``side`` square (wrap-around) unless ``ap_pos[L, 2]`` / ``ue_pos[K, 2]`` are given; then the
    setup is differentiable in them (through distance, angles, path loss, shadowing correlation
    and ``R``; pilots and DCC are piecewise constant). Gains: ``-30.5 - 36.7 log10(d) + F`` dB
    (eq. (5.42)), ``F`` with std ``shadow_std_db`` correlated over UEs as
    ``2^(-delta / decorrelation_m)`` (eq. (5.44)), minus the noise power
    ``-174 + 10 log10(bandwidth_hz) + noise_figure_db`` dBm. ``asd_azimuth``/``asd_elevation``
    in radians (``None``: uncorrelated fading, ``R = gain I``). Pilots by Algorithm 4.1, serving
    sets by DCC. Jittable (sizes static) and vmappable over keys; same key, same setup.
    """
    L = V.positive_int("L", L)
    K = V.positive_int("K", K)
    N = V.positive_int("N", N)
    tau_p = V.positive_int("tau_p", tau_p)
    for name, v in (("asd_azimuth", asd_azimuth), ("asd_elevation", asd_elevation)):
        if v is not None:
            if jnp.ndim(v) != 0:
                raise ValueError(f"{name} must be a scalar (radians), got shape {jnp.shape(v)}")
            V.finite(name, v, nonneg=True)
    for name, v in (("side", side), ("height", height), ("bandwidth_hz", bandwidth_hz)):
        if not v > 0:
            raise ValueError(f"{name} must be positive, got {v}")
    if not shadow_std_db >= 0:
        raise ValueError(f"shadow_std_db must be non-negative, got {shadow_std_db}")
    if not decorrelation_m > 0:
        raise ValueError(f"decorrelation_m must be positive, got {decorrelation_m}")
    if ap_pos is not None:
        V.shape("ap_pos", ap_pos, (L, 2))
        V.finite("ap_pos", ap_pos)
    if ue_pos is not None:
        V.shape("ue_pos", ue_pos, (K, 2))
        V.finite("ue_pos", ue_pos)

    def order(asd):
        if asd is None:
            return 1
        a = V.concrete(asd)
        if a is not None and float(a) == 0.0:
            return 1
        return quadrature_order(N, ASD_MAX_TRACED if a is None else float(a), spacing)

    return _generate(
        key,
        ap_pos,
        ue_pos,
        asd_azimuth,
        asd_elevation,
        L=L,
        K=K,
        N=N,
        tau_p=tau_p,
        side=float(side),
        height=float(height),
        shadow_std_db=float(shadow_std_db),
        decorrelation_m=float(decorrelation_m),
        noise_dbm=noise_power_dbm(bandwidth_hz, noise_figure_db),
        spacing=float(spacing),
        n_quad=(order(asd_azimuth), order(asd_elevation)),
        dtype=dtype,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "L",
        "K",
        "N",
        "tau_p",
        "side",
        "height",
        "shadow_std_db",
        "decorrelation_m",
        "noise_dbm",
        "spacing",
        "n_quad",
        "dtype",
    ),
)
def _generate(
    key,
    ap_pos,
    ue_pos,
    asd_azimuth,
    asd_elevation,
    *,
    L,
    K,
    N,
    tau_p,
    side,
    height,
    shadow_std_db,
    decorrelation_m,
    noise_dbm,
    spacing,
    n_quad,
    dtype,
):
    dtype = dtype or jnp.result_type(float)
    k_ap, k_ue, k_sf = jax.random.split(key, 3)
    ap_pos = uniform_drop(k_ap, L, side, dtype) if ap_pos is None else jnp.asarray(ap_pos, dtype)
    ue_pos = uniform_drop(k_ue, K, side, dtype) if ue_pos is None else jnp.asarray(ue_pos, dtype)
    distance, azimuth, elevation = ap_ue_geometry(ap_pos, ue_pos, side, height)
    shadowing = correlated_shadowing(k_sf, L, ue_pos, shadow_std_db, decorrelation_m)
    gain_db = pathloss_db(distance) + shadowing - noise_dbm
    gain = 10.0 ** (gain_db / 10.0)
    na, ne = n_quad
    if na == 1 and ne == 1 and asd_azimuth is None and asd_elevation is None:
        cdtype = jnp.result_type(dtype, jnp.complex64)
        R = gain[..., None, None] * jnp.eye(N, dtype=cdtype)
    else:

        def per_ap(args):
            az, el = args
            return local_scattering(
                N,
                az,
                el,
                asd_azimuth,
                asd_elevation,
                spacing,
                n_quad_azimuth=na,
                n_quad_elevation=ne,
            )

        Rn = jax.lax.map(per_ap, (azimuth, elevation))  # one AP at a time bounds memory
        R = gain[..., None, None] * Rn
    pilot = _assign_pilots(gain_db, tau_p)
    D = _dcc(gain_db, pilot, tau_p)
    return Setup(
        ap_pos=ap_pos,
        ue_pos=ue_pos,
        distance=distance,
        azimuth=azimuth,
        elevation=elevation,
        shadowing_db=shadowing,
        gain_db=gain_db,
        R=R,
        pilot=pilot,
        master=master_aps(gain_db),
        D=D,
    )
