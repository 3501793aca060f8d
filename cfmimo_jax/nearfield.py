"""Near-field XL-MIMO channels: the Fourier plane-wave series of planar arrays.

Cell-free XL-MIMO of [XL-FUZZY]: ``M`` BSs, each a planar array of ``N_r = N_Vr x N_Hr``
patches, ``K`` UEs with ``N_s = N_Vs x N_Hs`` patches, patch spacing ``Delta`` (``lambda / 3`` in
[XL-FUZZY] section V). The small-scale fading between BS ``m`` and UE ``k`` is the Fourier
plane-wave series of [FOURIER-PW] / [HOLO-FADING] ([XL-FUZZY] eqs. (1)-(4)):

    H_mk = sqrt(N_r N_s) sum_{l in E_r} sum_{q in E_s} H_a(l, q) a_r(l) a_s(q)^T,
    H_a(l, q) ~ CN(0, sigma^2(l, q)),  sigma^2(l, q) = sigma_r^2(l) sigma_s^2(q),

independent over ``(l, q)`` and over BS-UE pairs, and ``G_mk = sqrt(beta_mk) H_mk``.

Conventions (all lengths in wavelengths):

- Patch ``n = i_V N_H + i_H`` (row by row, [XL-FUZZY] section II) sits at
  ``(x, y) = (i_H Delta, i_V Delta)``; the array's side lengths are ``L_x = N_H Delta`` and
  ``L_y = N_V Delta``. Where the array is placed only multiplies ``a(l)`` by a phase common to
  its entries, which a circularly-symmetric ``H_a`` absorbs.
- Wavenumber point ``l = (l_x, l_y)`` (integers) is the plane wave
  ``(k_x, k_y) = (2 pi l_x / L_x, 2 pi l_y / L_y)``, in normalised wavenumbers
  ``(u, v) = (k_x, k_y) / k = (l_x lambda / L_x, l_y lambda / L_y)`` (``k = 2 pi / lambda``).
  ``a(l)`` is unit-norm with entries ``exp(i 2 pi (l_x x / L_x + l_y y / L_y)) / sqrt(N)``;
  with the ``sqrt(N_r N_s)`` factor each entry of ``H`` has unit variance. ``model.a_r`` and
  ``model.a_s`` store the unit-modulus entries (``sqrt(N)`` times the unit-norm vectors).
- Isotropic scattering: the spectral density over the support disc ``u^2 + v^2 <= 1`` is
  ``1 / (k sqrt(k^2 - k_x^2 - k_y^2))`` up to normalisation, whose correlation within the array
  plane is ``sin(k d) / (k d)`` ([HOLO-FADING]). Each point owns its wavenumber cell
  ``[(l_x - 1/2) lambda / L_x, (l_x + 1/2) lambda / L_x] x [(l_y - 1/2) lambda / L_y, ...]``
  and its variance is the spectral mass of the cell (clipped to the disc); in angles this is
  the solid angle the cell subtends, ``du dv / sqrt(1 - u^2 - v^2) = sin(theta) d theta d phi``
  (see :func:`cell_solid_angle`). The variances of each side sum to 1, so
  ``E[tr(H H^H)] = N_r N_s`` and ``vec(H) ~ CN(0, R_s kron R_r)`` with
  ``R = sum_l sigma^2(l) a(l) a(l)^H`` (unit-modulus ``a``; :func:`correlation_matrices`).
- The series is a Fourier series of period ``L`` over the array, so the modelled correlation
  is periodic: it follows ``sin(k d) / (k d)`` for patch distances well below the side length
  (within 0.012 for ``d <= L / 4`` at ``L = 10 lambda``, 0.007 at ``20 lambda``) and
  returns towards 1 as ``d -> L`` (the end patches of a row look like neighbours). This is
  the model of [XL-FUZZY] eq. (3), not a bug of the quadrature; ``tests/test_nearfield.py``
  measures it. The 3 x 3 UE array at ``lambda / 3`` (``L = lambda``) is far from the limit:
  0.16 off for neighbours.

The lattice and the variances depend only on the array geometry: :func:`channel_model`
computes them once, in NumPy float64 outside ``jit``, and returns an immutable pytree
(:class:`XLChannelModel`) whose arrays have static shapes; :func:`sample_channels` is jittable.
:func:`drop_large_scale` draws the large-scale fading of [XL-FUZZY] section V.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as V
from .geometry import ap_ue_geometry, uniform_drop
from .pathloss import correlated_shadowing, noise_power_dbm, pathloss_db

#: Lattice choices of :func:`wavenumber_lattice`.
LATTICES = ("cover", "ellipse")
#: BS layouts of :func:`drop_large_scale`.
BS_LAYOUTS = ("random", "grid")

_N_QUAD = 24  # Gauss-Legendre points per smooth piece of a cell (error < 1e-12)


# --------------------------------------------------------------------------------------------
# Geometry of one planar array (NumPy, construction time)


def array_shape(name: str, value) -> tuple[int, int]:
    """``(N_V, N_H)`` from a pair of positive ints or from a square count ``N = n^2``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        n = V.positive_int(name, value)
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(
                f"{name}={n} is not a square number of patches; pass (N_V, N_H) for a "
                "rectangular array"
            )
        return side, side
    try:
        nv, nh = value
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a square patch count or a pair (N_V, N_H), got {value!r}"
        ) from None
    return V.positive_int(f"{name}[0] (N_V)", nv), V.positive_int(f"{name}[1] (N_H)", nh)


def _spacing(name: str, value) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number (wavelengths), got {value!r}") from None
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"{name} must be positive and finite (wavelengths), got {value!r}")
    return s


def planar_positions(n_vertical: int, n_horizontal: int, spacing: float) -> np.ndarray:
    """Patch positions ``[N, 2]`` = ``(x, y)`` in wavelengths, ``N = N_V N_H``, row by row.

    Patch ``n = i_V N_H + i_H`` is at ``(i_H spacing, i_V spacing)`` ([XL-FUZZY] section II).
    """
    nv = V.positive_int("n_vertical", n_vertical)
    nh = V.positive_int("n_horizontal", n_horizontal)
    s = _spacing("spacing", spacing)
    iv, ih = np.divmod(np.arange(nv * nh), nh)
    return np.stack([ih * s, iv * s], axis=-1).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Spectral variances: the solid angle of each wavenumber cell


def cell_solid_angle(ax, bx, ay, by, n_quad: int = _N_QUAD) -> np.ndarray:
    """``Omega = int int_{([ax, bx] x [ay, by]) cap disc} du dv / sqrt(1 - u^2 - v^2)``.

    The isotropic spectral density in normalised wavenumbers ``(u, v) = (k_x, k_y) / k``
    ([HOLO-FADING]); ``Omega`` is the solid angle of the directions whose wave vectors fall in
    the cell (``du dv / sqrt(1 - u^2 - v^2) = sin(theta) d theta d phi`` with
    ``u = sin(theta) cos(phi)``, ``v = sin(theta) sin(phi)``), so the cells of a partition of
    the disc sum to ``2 pi``. Arrays broadcast; returns float64 of their shape.

    Quadrature: the integrand is singular (integrably, as ``1 / sqrt(1 - rho)``) on the edge
    ``u^2 + v^2 = 1``. The inner integral is done exactly: with ``c = sqrt(1 - u^2)``,
    ``int dv / sqrt(c^2 - v^2) = arcsin(v / c)``, so (clipping ``v / c`` to ``[-1, 1]`` does the
    intersection with the disc)

        Omega = int_{ax}^{bx} [arcsin(clip(by / c)) - arcsin(clip(ay / c))] du,

    a bounded integrand, smooth except at the breakpoints ``u = +-sqrt(1 - ay^2)``,
    ``+-sqrt(1 - by^2)`` (where the cell's edges meet the circle) and ``u = +-1``, where it
    behaves like a square root. ``[ax, bx]`` is split at those breakpoints, and each piece
    ``[a, b]`` mapped by ``u = a + (b - a)(3 t^2 - 2 t^3)``, whose vanishing derivative at
    ``t = 0, 1`` turns the square-root end behaviour into a smooth one, then integrated by
    ``n_quad``-point Gauss-Legendre in ``t`` (24 points: below 1e-12 absolute, checked against
    adaptive quadrature in polar coordinates in ``tests/test_nearfield.py``).
    """
    n_quad = V.positive_int("n_quad", n_quad)
    ax, bx, ay, by = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (ax, bx, ay, by)))
    shape = ax.shape
    ax, bx, ay, by = (a.ravel() for a in (ax, bx, ay, by))
    if np.any(bx < ax) or np.any(by < ay):
        raise ValueError("cell_solid_angle needs ax <= bx and ay <= by")
    t, wt = np.polynomial.legendre.leggauss(n_quad)
    t, wt = 0.5 * (t + 1.0), 0.5 * wt
    s, ds = 3 * t**2 - 2 * t**3, 6 * t * (1 - t)

    def edge(y):  # |u| at which the horizontal line v = y meets the unit circle
        return np.sqrt(np.clip(1.0 - y**2, 0.0, None))

    ea, eb, one = edge(ay), edge(by), np.ones_like(ax)
    lo, hi = np.clip(ax, -1.0, 1.0), np.clip(bx, -1.0, 1.0)
    bp = np.stack([lo, hi, ea, -ea, eb, -eb, one, -one], axis=-1)
    bp = np.sort(np.clip(bp, lo[:, None], hi[:, None]), axis=-1)  # [cells, 8]
    a, b = bp[:, :-1, None], bp[:, 1:, None]  # 7 pieces per cell (some empty)
    u = a + (b - a) * s
    w = (b - a) * ds * wt
    c = np.sqrt(np.clip(1.0 - u**2, 0.0, None))
    cs = np.where(c > 0, c, 1.0)
    f = np.arcsin(np.clip(by[:, None, None] / cs, -1.0, 1.0)) - np.arcsin(
        np.clip(ay[:, None, None] / cs, -1.0, 1.0)
    )
    f = np.where(c > 0, f, 0.0)
    return np.sum(f * w, axis=(-2, -1)).reshape(shape)


def wavenumber_lattice(
    n_vertical: int,
    n_horizontal: int,
    spacing: float = 1.0 / 3.0,
    *,
    lattice: str = "cover",
    prune_tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Wavenumber points and their isotropic variances for one planar array (NumPy float64).

    Returns ``(index[n, 2], var[n])``: integer ``(l_x, l_y)`` and ``sigma^2(l)`` with
    ``sum var = 1``, in lexicographic ``(l_x, l_y)`` order. ``L_x = n_horizontal spacing``,
    ``L_y = n_vertical spacing`` (wavelengths). ``var`` is proportional to the solid angle
    (:func:`cell_solid_angle`) of the point's cell ``[(l_x -+ 1/2) / L_x] x [(l_y -+ 1/2) / L_y]``
    intersected with the support disc.

    ``lattice``:
      ``"cover"`` (default): every point whose cell meets the disc, so the cells tile it and
      the variances are the exact spectral masses ``Omega / (2 pi)``. That is the paper's set
      ``E`` plus the ring of points just outside the ellipse, whose cells hold the mass near
      the edge, where the density is singular (about 20 % of the total for ``L = 3 lambda``).
      ``"ellipse"``: the set ``E = {(l_x lambda / L_x)^2 + (l_y lambda / L_y)^2 <= 1}`` of
      [XL-FUZZY] eq. (3) / [FOURIER-PW] exactly, each variance the mass of its clipped cell,
      renormalised to sum 1 (the edge mass outside the cells of ``E`` is dropped, so the
      correlation converges more slowly, see ``tests/test_nearfield.py``).

    Pruning: points with ``var < prune_tol`` (as a fraction of the total power 1) are dropped
    and the rest renormalised to sum 1; the dropped power is below ``n_dropped * prune_tol``.
    ``prune_tol = 0`` keeps every point.
    """
    nv = V.positive_int("n_vertical", n_vertical)
    nh = V.positive_int("n_horizontal", n_horizontal)
    s = _spacing("spacing", spacing)
    if lattice not in LATTICES:
        raise ValueError(f"lattice must be one of {LATTICES}, got {lattice!r}")
    if not (np.isfinite(prune_tol) and 0.0 <= prune_tol < 1.0):
        raise ValueError(f"prune_tol must lie in [0, 1), got {prune_tol!r}")
    Lx, Ly = nh * s, nv * s
    mx, my = int(np.ceil(Lx + 0.5)), int(np.ceil(Ly + 0.5))
    lx, ly = np.meshgrid(np.arange(-mx, mx + 1), np.arange(-my, my + 1), indexing="ij")
    lx, ly = lx.ravel(), ly.ravel()
    ax, bx = (lx - 0.5) / Lx, (lx + 0.5) / Lx
    ay, by = (ly - 0.5) / Ly, (ly + 0.5) / Ly
    if lattice == "ellipse":
        keep = (lx / Lx) ** 2 + (ly / Ly) ** 2 <= 1.0 + 1e-12
    else:  # nearest point of the cell strictly inside the disc
        keep = np.clip(0.0, ax, bx) ** 2 + np.clip(0.0, ay, by) ** 2 < 1.0
    omega = cell_solid_angle(ax[keep], bx[keep], ay[keep], by[keep])
    index = np.stack([lx[keep], ly[keep]], axis=-1)
    var = omega / omega.sum()
    big = var >= prune_tol
    index, var = index[big], var[big]
    return index.astype(np.int32), var / var.sum()


def response_matrix(index, positions, n_vertical: int, n_horizontal: int, spacing: float):
    """Unit-modulus array responses ``A[N, n]``, ``A[p, j] = exp(i 2 pi (l_x x_p / L_x +
    l_y y_p / L_y))`` for points ``index[n, 2]`` and patch ``positions[N, 2]`` (wavelengths);
    ``a(l) = A[:, l] / sqrt(N)`` is the unit-norm vector of [XL-FUZZY] eqs. (1)-(3)."""
    Lx, Ly = n_horizontal * spacing, n_vertical * spacing
    index = np.asarray(index, np.float64)
    phase = positions[:, 0:1] * (index[:, 0] / Lx) + positions[:, 1:2] * (index[:, 1] / Ly)
    return np.exp(2j * np.pi * phase)


# --------------------------------------------------------------------------------------------
# The channel model (an immutable pytree)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class XLChannelModel:
    """Fourier plane-wave channel of one BS-array / UE-array pair ([XL-FUZZY] eq. (3)).

    Arrays (``n_r``, ``n_s`` kept wavenumber points of the BS and UE side):
      a_r[N_r, n_r], a_s[N_s, n_s]: unit-modulus responses (:func:`response_matrix`).
      var_r[n_r], var_s[n_s]: variances ``sigma_r^2``, ``sigma_s^2``, each summing to 1
        (``sigma^2(l, q) = var_r[l] var_s[q]``).
      index_r[n_r, 2], index_s[n_s, 2]: int32 wavenumber points ``(l_x, l_y)``.
    Static: bs_array = (N_Vr, N_Hr), ue_array = (N_Vs, N_Hs), spacing_r, spacing_s
    (wavelengths), lattice.
    """

    a_r: jax.Array
    a_s: jax.Array
    var_r: jax.Array
    var_s: jax.Array
    index_r: jax.Array
    index_s: jax.Array
    bs_array: tuple = dataclasses.field(metadata=dict(static=True))
    ue_array: tuple = dataclasses.field(metadata=dict(static=True))
    spacing_r: float = dataclasses.field(metadata=dict(static=True))
    spacing_s: float = dataclasses.field(metadata=dict(static=True))
    lattice: str = dataclasses.field(metadata=dict(static=True))

    @property
    def n_r(self) -> int:
        """BS patches ``N_r = N_Vr N_Hr``."""
        return self.bs_array[0] * self.bs_array[1]

    @property
    def n_s(self) -> int:
        """UE patches ``N_s = N_Vs N_Hs``."""
        return self.ue_array[0] * self.ue_array[1]


def channel_model(
    bs_array=(9, 9),
    ue_array=(3, 3),
    spacing: float = 1.0 / 3.0,
    ue_spacing: float | None = None,
    *,
    lattice: str = "cover",
    prune_tol: float = 1e-6,
) -> XLChannelModel:
    """Build the Fourier plane-wave model once (NumPy float64; call outside ``jit``).

    ``bs_array``, ``ue_array``: ``(N_V, N_H)`` patches, or a square count ``N = n^2``
    (``81 -> (9, 9)``; a non-square count is refused). ``spacing`` (BS, and UE unless
    ``ue_spacing`` is given) in wavelengths; [XL-FUZZY] section V: ``(9, 9)``, ``(3, 3)``,
    ``lambda / 3``. ``lattice``, ``prune_tol``: see :func:`wavenumber_lattice`. The arrays are
    stored in JAX's default precision (float64/complex128 under ``jax_enable_x64``).
    """
    bs = array_shape("bs_array", bs_array)
    ue = array_shape("ue_array", ue_array)
    sr = _spacing("spacing", spacing)
    ss = sr if ue_spacing is None else _spacing("ue_spacing", ue_spacing)
    sides = []
    for (nv, nh), s in ((bs, sr), (ue, ss)):
        index, var = wavenumber_lattice(nv, nh, s, lattice=lattice, prune_tol=prune_tol)
        a = response_matrix(index, planar_positions(nv, nh, s), nv, nh, s)
        sides.append((a, var, index))
    (a_r, var_r, index_r), (a_s, var_s, index_s) = sides
    cdt = jnp.result_type(complex)
    fdt = jnp.result_type(float)
    return XLChannelModel(
        a_r=jnp.asarray(a_r, cdt),
        a_s=jnp.asarray(a_s, cdt),
        var_r=jnp.asarray(var_r, fdt),
        var_s=jnp.asarray(var_s, fdt),
        index_r=jnp.asarray(index_r),
        index_s=jnp.asarray(index_s),
        bs_array=bs,
        ue_array=ue,
        spacing_r=sr,
        spacing_s=ss,
        lattice=lattice,
    )


def correlation_matrices(model: XLChannelModel):
    """Spatial correlation of the model: ``(R_r[N_r, N_r], R_s[N_s, N_s])``.

    ``R = sum_l sigma^2(l) A[:, l] A[:, l]^H`` per side (unit-modulus ``A``, unit diagonal), so
    ``E[H H^H] = N_s R_r``, ``E[H^T conj(H)] = N_r R_s`` and
    ``E[vec(H) vec(H)^H] = R_s kron R_r`` ([XL-FUZZY] eq. (3) with separable variances).
    """

    def corr(a, var):
        return (a * var.astype(a.dtype)[None, :]) @ jnp.conj(a).T

    return corr(model.a_r, model.var_r), corr(model.a_s, model.var_s)


def sample_channels(key, model: XLChannelModel, beta, n: int):
    """``n`` realizations ``G[n, M, K, N_r, N_s]``, ``G_mk = sqrt(beta_mk) H_mk``.

    ``H_mk = A_r diag(sqrt(var_r)) W_mk diag(sqrt(var_s)) A_s^T`` with ``W_mk[n_r, n_s]`` i.i.d.
    ``CN(0, 1)``, independent over realizations and BS-UE pairs: the series of [XL-FUZZY]
    eq. (3) with ``H_a(l, q) = sqrt(var_r[l] var_s[q]) W[l, q] ~ CN(0, sigma^2(l, q))``
    (eq. (4)). ``beta[M, K]``: linear large-scale fading (over noise, as
    :func:`drop_large_scale` gives it). Realization ``j`` is drawn from
    ``jax.random.split(key, n)[j]``. Jittable (``n`` static; ``model`` a pytree); output in
    the complex dtype matching ``beta``'s float dtype.
    """
    if jnp.ndim(beta) != 2:
        raise ValueError(f"beta must have shape [M, K], got {jnp.shape(beta)}")
    V.finite("beta", beta, nonneg=True)
    n = V.positive_int("n", n)
    return _sample(jax.random.split(key, n), model, beta)


@jax.jit
def _sample(keys, model, beta):
    beta = jnp.asarray(beta)
    if not jnp.issubdtype(beta.dtype, jnp.floating):
        beta = beta.astype(jnp.result_type(float))
    cdt = jnp.result_type(beta.dtype, jnp.complex64)
    br = model.a_r.astype(cdt) * jnp.sqrt(model.var_r).astype(cdt)[None, :]  # [N_r, n_r]
    bs = model.a_s.astype(cdt) * jnp.sqrt(model.var_s).astype(cdt)[None, :]  # [N_s, n_s]
    M, K = beta.shape
    shape = (M, K, br.shape[1], bs.shape[1])
    W = jax.vmap(lambda k: jax.random.normal(k, shape, dtype=cdt))(keys)  # CN(0, 1)
    H = br @ (W @ bs.T)  # [n, M, K, N_r, N_s]
    return jnp.sqrt(beta).astype(cdt)[None, :, :, None, None] * H


# --------------------------------------------------------------------------------------------
# Large-scale fading ([XL-FUZZY] section V)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LargeScaleDrop:
    """One drop of BSs and UEs (an immutable pytree; vmap over keys freely).

    bs_pos[M, 2], ue_pos[K, 2] (m); distance[M, K]: 3-D, wrap-around (m);
    shadowing_db[M, K]: ``F_mk``; beta_db[M, K]: ``-30.5 - 36.7 log10(d) + F - noise_dBm``;
    beta[M, K]: ``10^(beta_db / 10)``, the linear gain over the noise power (per mW).
    """

    bs_pos: jax.Array
    ue_pos: jax.Array
    distance: jax.Array
    shadowing_db: jax.Array
    beta_db: jax.Array
    beta: jax.Array


def grid_positions(M: int, side: float = 1000.0) -> np.ndarray:
    """``M = n^2`` points at the centres of an ``n x n`` grid of cells over ``[0, side]^2``."""
    n = math.isqrt(V.positive_int("M", M))
    if n * n != M:
        raise ValueError(f"M={M} must be a square number for bs_layout='grid'")
    c = (np.arange(n) + 0.5) * side / n
    gx, gy = np.meshgrid(c, c, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=-1)


def drop_large_scale(
    key,
    M: int = 9,
    K: int = 6,
    *,
    bs_layout: str = "random",
    side: float = 1000.0,
    height: float = 10.0,
    shadow_std_db: float = 4.0,
    decorrelation_m: float | None = 9.0,
    bandwidth_hz: float = 20e6,
    noise_figure_db: float = 7.0,
    dtype=None,
) -> LargeScaleDrop:
    """Drop ``M`` BSs and ``K`` UEs and draw ``beta[M, K]`` ([XL-FUZZY] section V).

    ``beta_mk [dB] = -30.5 - 36.7 log10(d_mk / 1 m) + F_mk`` with ``d_mk`` the 3-D distance
    (``height`` = 10 m above the UEs) in a ``side`` x ``side`` square with wrap-around,
    ``F_mk ~ N(0, shadow_std_db^2)`` (4 dB: a random shadow fading, not a fixed margin), minus
    the noise power ``-174 + 10 log10(bandwidth_hz) + noise_figure_db`` dBm (20 MHz, 7 dB, the
    book's values, which the paper leaves out), so powers are in mW.

    Choices where the paper is silent: the UEs are uniform in the square; the BSs too
    (``bs_layout="random"``: the paper's "arbitrarily distributed" BSs and the uniform drops of
    the setup it follows, its ref. [18]), or at the centres of a square grid
    (``bs_layout="grid"``, ``M`` a square number). The paper gives only the marginal law of
    ``F``; by default it is correlated over UEs as in the book (``2^(-delta / decorrelation_m)``,
    independent over BSs; :func:`cfmimo_jax.pathloss.correlated_shadowing});
    ``decorrelation_m=None`` draws it i.i.d. Jittable (sizes static), same key same drop.
    """
    M = V.positive_int("M", M)
    K = V.positive_int("K", K)
    if bs_layout not in BS_LAYOUTS:
        raise ValueError(f"bs_layout must be one of {BS_LAYOUTS}, got {bs_layout!r}")
    for name, v in (("side", side), ("height", height), ("bandwidth_hz", bandwidth_hz)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive, got {v!r}")
    if not (np.isfinite(shadow_std_db) and shadow_std_db >= 0):
        raise ValueError(f"shadow_std_db must be non-negative, got {shadow_std_db!r}")
    if decorrelation_m is not None and not (np.isfinite(decorrelation_m) and decorrelation_m > 0):
        raise ValueError(f"decorrelation_m must be positive or None, got {decorrelation_m!r}")
    grid = None if bs_layout == "random" else tuple(map(tuple, grid_positions(M, side).tolist()))
    return _drop(
        key,
        M=M,
        K=K,
        grid=grid,
        side=float(side),
        height=float(height),
        shadow_std_db=float(shadow_std_db),
        decorrelation_m=None if decorrelation_m is None else float(decorrelation_m),
        noise_dbm=noise_power_dbm(bandwidth_hz, noise_figure_db),
        dtype=dtype,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "M",
        "K",
        "grid",
        "side",
        "height",
        "shadow_std_db",
        "decorrelation_m",
        "noise_dbm",
        "dtype",
    ),
)
def _drop(key, *, M, K, grid, side, height, shadow_std_db, decorrelation_m, noise_dbm, dtype):
    dtype = dtype or jnp.result_type(float)
    k_bs, k_ue, k_sf = jax.random.split(key, 3)
    bs_pos = uniform_drop(k_bs, M, side, dtype) if grid is None else jnp.asarray(grid, dtype)
    ue_pos = uniform_drop(k_ue, K, side, dtype)
    distance, _, _ = ap_ue_geometry(bs_pos, ue_pos, side, height)
    if decorrelation_m is None:
        F = shadow_std_db * jax.random.normal(k_sf, (M, K), dtype=dtype)
    else:
        F = correlated_shadowing(k_sf, M, ue_pos, shadow_std_db, decorrelation_m)
    beta_db = pathloss_db(distance) + F - noise_dbm
    return LargeScaleDrop(
        bs_pos=bs_pos,
        ue_pos=ue_pos,
        distance=distance,
        shadowing_db=F,
        beta_db=beta_db,
        beta=10.0 ** (beta_db / 10.0),
    )
