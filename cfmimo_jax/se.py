"""Uplink and downlink spectral efficiency (book chapters 5 and 6).

Monte-Carlo bounds for centralized and distributed processing, MR closed forms, genie-aided
versions. Realizations are processed in chunks with ``lax.scan`` so memory stays bounded;
realization ``j`` always uses the same random draws, so results do not depend on the chunk size.
A real-valued ``R`` (or ``B``) is promoted to the matching complex dtype
(:func:`cfmimo_jax.estimation.as_complex`). Conventions and exact definitions:
``docs/kernels.md``.

Scheme keys of the returned dicts (the one list of them: :data:`UPLINK_SCHEMES`,
:data:`DOWNLINK_SCHEMES`): ``mr_central`` is centralized MR (uplink only), ``mr_dist``
distributed MR. The older key ``"mr"`` is kept as an alias holding the same array
(:data:`UPLINK_ALIASES`: centralized MR in the uplink dict, :data:`DOWNLINK_ALIASES`:
distributed MR in the downlink dict); prefer the unambiguous names.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as V
from .estimation import (
    _estimation_statistics,
    _pilot_signal,
    _psi_inv_r,
    _sample_channels,
    _sqrt_factor,
    as_complex,
    mmse_matrices,
    pair_matvec,
    powers,
    real_dtype,
)
from .linalg import chol_solve, cholesky, hermitian_part, solve_lower
from .processing import (
    CENTRALIZED,
    DISTRIBUTED,
    central_scaled_all,
    check_cap,
    distributed_all,
    gram_cross,
    serving_caps,
)

#: Keys of :func:`uplink_se` (and ``all_se(...)["uplink"]``), in the book's order: centralized
#: (Thm 5.1), distributed with ``a = 1`` and with optimal LSFD (Thm 5.4, eq. (5.30)).
UPLINK_SCHEMES = (
    "mmse",
    "p_mmse",
    "p_rzf",
    "mr_central",
    "l_mmse",
    "lp_mmse",
    "mr_dist",
    "l_mmse_lsfd",
    "lp_mmse_lsfd",
    "mr_dist_lsfd",
)
#: Keys of :func:`downlink_se` (and ``all_se(...)["downlink"]``): centralized, then distributed.
DOWNLINK_SCHEMES = ("mmse", "p_mmse", "p_rzf", "l_mmse", "lp_mmse", "mr_dist")
#: Alias keys kept for backward compatibility, ``alias -> scheme`` (same array; ``genie=True``
#: also gives ``"mr_genie"``). ``"mr"`` is centralized MR in the uplink dict and distributed
#: MR in the downlink dict.
UPLINK_ALIASES = {"mr": "mr_central"}
DOWNLINK_ALIASES = {"mr": "mr_dist"}
_DL_CENTRAL = ("mmse", "p_mmse", "p_rzf")
# names of the combiners in cfmimo_jax.processing -> keys of the SE dicts
_UL_CENTRAL_KEY = {"mr": "mr_central"}
_DIST_KEY = {"mr": "mr_dist"}


def prelog(tau_c: int, tau_p: int) -> float:
    """Fraction of each coherence block used for data, ``(tau_c - tau_p) / tau_c``."""
    return (tau_c - tau_p) / tau_c


def _abs2(x):
    return jnp.real(x) ** 2 + jnp.imag(x) ** 2


def _diag(x):
    """``x[..., K, K] -> [..., K]``."""
    return jnp.diagonal(x, axis1=-2, axis2=-1)


def _safe_sqrt_ratio(num, den, mask):
    ok = mask & (num > 0) & (den > 0)
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, num, 1.0) / jnp.where(ok, den, 1.0)), 0.0)


def _log2_1p(sinr):
    return jnp.log2(1.0 + sinr)


# --------------------------------------------------------------------------------------------
# Statistics -> SINR (shared by Monte Carlo and closed forms)


def _uplink_distributed_sinr(m, s, F, D, p, lsfd: bool):
    """Uplink SINR of book Thm 5.4 from ``m[l,k,i] = E[g_ki]_l``, ``s = Var``, ``F[l,k]``.

    ``a = 1`` on ``M_k`` or the optimal LSFD of eq. (5.30). Returns ``(sinr[K], a[L, K])``.
    """
    L, K, _ = m.shape
    Df = D.astype(F.dtype)
    if lsfd:
        cd = m.dtype
        Q = jnp.einsum("lki,nki,i->kln", m, jnp.conj(m), p.astype(cd))  # [K, L, L]
        mkk = jnp.einsum("lkk->kl", m)  # [K, L]
        Q = Q - p.astype(cd)[:, None, None] * mkk[:, :, None] * jnp.conj(mkk)[:, None, :]
        diag = jnp.einsum("lki,i->kl", s, p) + F.T  # [K, L]
        Q = Q + jax.vmap(jnp.diag)(diag.astype(cd))
        Dk = Df.T.astype(cd)  # [K, L]
        Q = Q * Dk[:, :, None] * Dk[:, None, :] + jax.vmap(jnp.diag)(1.0 - Dk)
        a = chol_solve(Q, (Dk * mkk)[..., None])[..., 0].T  # [L, K]
    else:
        a = Df.astype(m.dtype)
    proj = jnp.einsum("lk,lki->ki", jnp.conj(a), m)  # a^H m_ki
    a2 = _abs2(a)
    num = p * _abs2(_diag(proj))
    interf = jnp.sum(p[None, :] * (_abs2(proj) + jnp.einsum("lk,lki->ki", a2, s)), axis=1)
    noise = jnp.sum(a2 * F, axis=0)
    return num / (interf - num + noise), a


def _downlink_distributed_sinr(m, s, F, D, rho):
    """Hardening bound (book Thm 6.1) for distributed precoding from per-AP statistics.

    ``w_lk = sqrt(rho_lk / F_lk) v_lk``; ``E[h_k^H w_i] = sum_l c_li conj(m[l,i,k])`` and
    ``E|h_k^H w_i|^2 = |.|^2 + sum_l c_li^2 s[l,i,k]`` (independence across APs).
    Returns ``(sinr[K], c[L, K])``.
    """
    c = _safe_sqrt_ratio(rho, F, D)
    mean = jnp.einsum("li,lik->ki", c.astype(m.dtype), jnp.conj(m))  # [k, i]
    second = _abs2(mean) + jnp.einsum("li,lik->ki", c**2, s)
    sig = _abs2(_diag(mean))
    return sig / (jnp.sum(second, axis=1) - sig + 1.0), c


def _downlink_central_sinr(q1, q2, nv, rho_k):
    """Hardening bound, centralized precoding, from ``E[h_k^H v_i]``, ``E|.|^2``, ``E||v_i||^2``."""
    c = _safe_sqrt_ratio(rho_k, nv, jnp.ones_like(nv, dtype=bool))
    mean = q1 * c[None, :].astype(q1.dtype)
    second = q2 * (c**2)[None, :]
    sig = _abs2(_diag(mean))
    return sig / (jnp.sum(second, axis=1) - sig + 1.0), c


# --------------------------------------------------------------------------------------------
# Monte-Carlo core


def default_chunk(L: int, K: int, N: int, n: int) -> int:
    """Realizations per chunk: the largest power of two with ``chunk L K^2 N <= 2^21``, at most 64.

    Small chunks keep the per-chunk arrays in cache (measured on a 2-core CPU for the canonical
    L=100, K=40, N=4: chunk 2 is 15 % faster than 6); the matmuls stay large through the ``K``
    and ``L`` axes.
    """
    per = L * K * K * max(N, 1)
    target = max(1, min(n, 64, (1 << 21) // per))
    return 1 << (target.bit_length() - 1)


def _central_needed(uplink, downlink):
    c = set()
    if uplink:
        c |= set(CENTRALIZED)
    if downlink:
        c |= set(_DL_CENTRAL)
    return tuple(s for s in CENTRALIZED if s in c)


def _chunk_stats(H, Hh, w, C, D, p, z_full, uplink, downlink, genie, norms, max_serving=None):
    """Weighted sums over one chunk of realizations ``H, Hh[c, L, K, N]``, weights ``w[c]``.

    With ``norms`` (pass 2) computes genie-aided log2(1 + SINR) sums instead.
    """
    rdt = real_dtype(H)
    sp = jnp.sqrt(p).astype(H.dtype)
    Hs = Hh * sp[None, None, :, None]
    out = {}
    wsum = lambda x: jnp.einsum("n,n...->...", w, x)
    cen = central_scaled_all(Hh, C, D, p, _central_needed(uplink, downlink), max_serving)
    dist = distributed_all(Hh, C, D, p, DISTRIBUTED)
    # all centralized products from one stacked matmul over the L N antennas:
    # prod[s, n, k, i] = v_sk^H x_i with x = [Hs | H] (estimates for the uplink SINR, true
    # channels for the downlink hardening bound and the genie SINRs)
    names = list(cen)
    need_est = norms is None and uplink
    need_true = downlink or (need_est and genie)
    vh_est = vh_true = None
    if names and (need_est or need_true):
        Vc = jnp.conj(jnp.stack([cen[s] for s in names]))  # [S, c, L, K, N]
        K = H.shape[2]
        X = jnp.concatenate(([Hs] if need_est else []) + ([H] if need_true else []), axis=2)
        prod = jnp.einsum("snlka,nlia->snki", Vc, X)  # [S, c, K, (2)K]
        vh_est = prod[..., :K] if need_est else None  # v_k^H hs_i
        vh_true = prod[..., -K:] if need_true else None  # v_k^H h_i
    for s_idx, name in enumerate(names):
        v = cen[name]
        pre = f"c_{name}_"
        nv = jnp.sum(_abs2(v), axis=(1, 3))  # [c, K]
        if vh_true is not None:
            hv = jnp.conj(jnp.swapaxes(vh_true[s_idx], -1, -2))  # h_k^H v'_i, [c, K, K]
        if norms is None:
            if uplink:
                r = vh_est[s_idx]
                sig = _abs2(_diag(r))
                tot = jnp.sum(_abs2(r), axis=-1)
                zv = jnp.sum(z_full[None, :, None] * v[..., None, :], axis=-1)  # Z_l v_lk
                noise = jnp.sum(jnp.real(jnp.conj(v) * zv), axis=(1, 3))
                out[pre + "ul"] = wsum(_log2_1p(sig / (tot - sig + noise)))
                if genie:
                    rg = vh_true[s_idx] * sp[None, None, :]  # v_k^H (sqrt(p_i) h_i)
                    sg = _abs2(_diag(rg))
                    tg = jnp.sum(_abs2(rg), axis=-1)
                    out[pre + "ul_genie"] = wsum(_log2_1p(sg / (tg - sg + nv)))
            if downlink and name in _DL_CENTRAL:
                out[pre + "q1"] = wsum(hv)
                out[pre + "q2"] = wsum(_abs2(hv))
                out[pre + "nv"] = wsum(nv)
        elif downlink and name in _DL_CENTRAL:
            x = hv * norms[pre + "c"][None, None, :]
            sg = _abs2(_diag(x))
            out[pre + "dl_genie"] = wsum(_log2_1p(sg / (jnp.sum(_abs2(x), -1) - sg + 1.0)))
    for name, v in dist.items():
        pre = f"d_{name}_"
        g = gram_cross(v, H)  # v_lk^H h_li, [c, L, K, K]
        nvl = jnp.sum(_abs2(v), axis=-1)  # [c, L, K]
        if norms is None:
            out[pre + "g1"] = wsum(g)
            out[pre + "g2"] = wsum(_abs2(g))
            out[pre + "nv"] = wsum(nvl)
            continue
        if uplink:
            for tag in ("a1", "lsfd"):
                a = norms[pre + tag].astype(g.dtype)  # [L, K]
                proj = jnp.einsum("lk,nlki->nki", jnp.conj(a), g)
                num = p * _abs2(_diag(proj))
                den = jnp.sum(p * _abs2(proj), -1) - num + jnp.einsum("lk,nlk->nk", _abs2(a), nvl)
                out[pre + tag + "_genie"] = wsum(_log2_1p(num / den))
        if downlink:
            c = norms[pre + "c"].astype(g.dtype)
            x = jnp.einsum("li,nlik->nki", c, jnp.conj(g))  # h_k^H w_i
            sg = _abs2(_diag(x))
            out[pre + "dl_genie"] = wsum(_log2_1p(sg / (jnp.sum(_abs2(x), -1) - sg + 1.0)))
    return jax.tree.map(lambda a: a.astype(rdt) if not jnp.iscomplexobj(a) else a, out)


def _monte_carlo(
    key,
    R,
    C,
    D,
    p,
    pilot,
    tau_p,
    n,
    chunk,
    uplink,
    downlink,
    genie,
    norms,
    max_serving=None,
    devices=None,
):
    L, K, N, _ = R.shape
    k_h, k_n = jax.random.split(key)
    shards = len(devices) if devices else 1
    n_chunks = -(-n // (chunk * shards)) * shards  # a multiple of the device count
    total = n_chunks * chunk
    keys_h = jax.random.split(k_h, n)
    keys_n = jax.random.split(k_n, n)
    pad = total - n
    if pad:  # padding realizations carry weight 0
        fill = jnp.arange(pad) % n
        keys_h = jnp.concatenate([keys_h, keys_h[fill]])
        keys_n = jnp.concatenate([keys_n, keys_n[fill]])
    weights = (jnp.arange(total) < n).astype(real_dtype(R))
    shape = lambda x: x.reshape((n_chunks, chunk) + x.shape[1:])
    factor = _sqrt_factor(R)
    A = mmse_matrices(R, pilot, p, tau_p)
    z_full = jnp.sum(p.astype(C.dtype)[None, :, None, None] * C, axis=1) + jnp.eye(N, dtype=C.dtype)
    consts = (factor, A, C, D, p, pilot, z_full, norms)

    def stats(xs, consts):
        kh, kn, w = xs
        factor, A, C, D, p, pilot, z_full, norms = consts
        H = _sample_channels(kh, factor)
        Y = _pilot_signal(kn, H, pilot, p, tau_p)
        Hh = pair_matvec(A, Y[:, :, pilot, :])  # A_lk y_{l, t_k}
        return _chunk_stats(H, Hh, w, C, D, p, z_full, uplink, downlink, genie, norms, max_serving)

    def run(xs, consts):
        spec = jax.eval_shape(stats, jax.tree.map(lambda a: a[0], xs), consts)
        acc0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), spec)
        body = lambda acc, x: (jax.tree.map(jnp.add, acc, stats(x, consts)), None)
        return jax.lax.scan(body, acc0, xs)[0]

    xs = (shape(keys_h), shape(keys_n), shape(weights))
    if shards == 1:
        acc = run(xs, consts)
    else:  # each device scans its share of the chunks; the sums are added across devices
        mesh = jax.sharding.Mesh(np.asarray(devices), ("mc",))
        P = jax.sharding.PartitionSpec
        sharded = lambda xs, consts: jax.tree.map(lambda a: jax.lax.psum(a, "mc"), run(xs, consts))
        acc = jax.shard_map(
            sharded, mesh=mesh, in_specs=(P("mc"), P()), out_specs=P(), check_vma=False
        )(xs, consts)
    return jax.tree.map(lambda a: a / n, acc)


def _finalize(stats, D, p, rho, uplink, downlink):
    """Turn Monte-Carlo means into SINRs; also the normalisations/LSFD weights for pass 2."""
    ul, dl, norms = {}, {}, {}
    for name in _central_needed(uplink, downlink):
        pre = f"c_{name}_"
        if uplink:
            ul[_UL_CENTRAL_KEY.get(name, name)] = stats[pre + "ul"]
        if downlink and name in _DL_CENTRAL:
            rho_k = jnp.sum(rho, axis=0)
            sinr, c = _downlink_central_sinr(
                stats[pre + "q1"], stats[pre + "q2"], stats[pre + "nv"], rho_k
            )
            dl[name] = _log2_1p(sinr)
            norms[pre + "c"] = c.astype(stats[pre + "q1"].dtype)
    for name in DISTRIBUTED:
        pre = f"d_{name}_"
        m = stats[pre + "g1"]
        s = jnp.maximum(stats[pre + "g2"] - _abs2(m), 0.0)
        F = stats[pre + "nv"]
        key = _DIST_KEY.get(name, name)
        if uplink:
            for tag, lsfd in (("a1", False), ("lsfd", True)):
                sinr, a = _uplink_distributed_sinr(m, s, F, D, p, lsfd)
                ul[key + ("_lsfd" if lsfd else "")] = _log2_1p(sinr)
                norms[pre + tag] = a
        if downlink:
            sinr, c = _downlink_distributed_sinr(m, s, F, D, rho)
            dl[key] = _log2_1p(sinr)
            norms[pre + "c"] = c
    return ul, dl, norms


def _genie_keys(stats2, uplink, downlink):
    ul, dl = {}, {}
    for name in CENTRALIZED:
        pre = f"c_{name}_"
        if pre + "dl_genie" in stats2:
            dl[name + "_genie"] = stats2[pre + "dl_genie"]
    for name in DISTRIBUTED:
        pre = f"d_{name}_"
        key = _DIST_KEY.get(name, name)
        if uplink:
            ul[key + "_genie"] = stats2[pre + "a1_genie"]
            ul[key + "_lsfd_genie"] = stats2[pre + "lsfd_genie"]
        if downlink:
            dl[key + "_genie"] = stats2[pre + "dl_genie"]
    return ul, dl


def _with_aliases(d, aliases):
    """``d`` plus each alias key (and its ``_genie`` key) holding the array of its scheme."""
    out = dict(d)
    for alias, scheme in aliases.items():
        for suffix in ("", "_genie"):
            if scheme + suffix in d:
                out[alias + suffix] = d[scheme + suffix]
    return out


@functools.partial(
    jax.jit,
    static_argnames=(
        "tau_p",
        "tau_c",
        "n",
        "chunk",
        "uplink",
        "downlink",
        "genie",
        "max_serving",
        "devices",
    ),
)
def _se(
    key,
    R,
    pilot,
    D,
    p,
    rho,
    *,
    tau_p,
    tau_c,
    n,
    chunk,
    uplink,
    downlink,
    genie,
    max_serving=None,
    devices=None,
):
    K = R.shape[1]
    p = powers(p, K, real_dtype(R))
    D = jnp.asarray(D, bool)
    _, C = _estimation_statistics(R, pilot, p, tau_p)
    if rho is not None:
        rho = jnp.asarray(rho, real_dtype(R)) * D
    mc = functools.partial(
        _monte_carlo, key, R, C, D, p, pilot, tau_p, n, chunk, uplink, downlink, genie
    )
    stats = mc(None, max_serving, devices)
    ul, dl, norms = _finalize(stats, D, p, rho, uplink, downlink)
    if genie:
        for name in CENTRALIZED:
            if uplink and f"c_{name}_ul_genie" in stats:
                ul[_UL_CENTRAL_KEY.get(name, name) + "_genie"] = stats[f"c_{name}_ul_genie"]
        stats2 = mc(norms, max_serving, devices)
        ul2, dl2 = _genie_keys(stats2, uplink, downlink)
        ul.update(ul2)
        dl.update(dl2)
    factor = prelog(tau_c, tau_p)
    scale = lambda d: {k: factor * v for k, v in d.items()}
    return _with_aliases(scale(ul), UPLINK_ALIASES), _with_aliases(scale(dl), DOWNLINK_ALIASES)


def _devices(devices):
    """``devices`` argument -> a tuple of distinct devices, or ``None`` for one device."""
    if devices is None:
        return None
    available = jax.devices()
    if isinstance(devices, int) and not isinstance(devices, bool):
        V.positive_int("devices", devices)
        if devices > len(available):
            raise ValueError(
                f"devices={devices} but only {len(available)} {available[0].platform} device(s) "
                "are available (on a CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N "
                "before importing jax)"
            )
        out = tuple(available[:devices])
    else:
        try:
            out = tuple(devices)
        except TypeError:
            raise ValueError(
                f"devices must be an int or a sequence of devices, got {devices!r}"
            ) from None
        if not out or not all(isinstance(d, jax.Device) for d in out):
            raise ValueError(f"devices must be an int or a sequence of devices, got {devices!r}")
        if len(set(out)) != len(out):
            raise ValueError("devices must not repeat a device")
    return out if len(out) > 1 else None


def _check_se_inputs(R, pilot, D, p, rho, tau_p, tau_c, n_realizations, chunk, max_serving):
    if jnp.ndim(R) != 4:
        raise ValueError(f"R must have shape [L, K, N, N], got {jnp.shape(R)}")
    L, K, N, _ = R.shape
    V.sizes(tau_p, tau_c)
    V.positive_int("n_realizations", n_realizations)
    V.correlation("R", R)
    V.pilots("pilot", pilot, K, tau_p)
    V.serving("D", D, L, K)
    Dc = V.concrete(D)
    if Dc is not None and not np.all(np.any(Dc, axis=0)):
        raise ValueError("D must give every UE at least one serving AP")
    V.shape("p", p, (K,), allow_scalar=True)
    V.finite("p", p, nonneg=True)
    if rho is not None:
        V.shape("rho", rho, (L, K))
        V.finite("rho", rho, nonneg=True)
    M = check_cap(D, max_serving) if max_serving is not None else serving_caps(D)
    if chunk is None:
        return default_chunk(L, K, N, n_realizations), M
    return V.positive_int("chunk", chunk), M


def uplink_se(
    key,
    R,
    pilot,
    D,
    p,
    tau_p: int,
    tau_c: int,
    n_realizations: int,
    genie=False,
    *,
    chunk=None,
    max_serving=None,
    devices=None,
):
    """Uplink SE of every UE for all combining schemes, Monte Carlo (book Thms 5.1 and 5.4).

    Args:
      key: PRNG key; draws ``k_h, k_n = split(key)``, ``H = sample_channels(k_h, R, n)``,
        ``Hhat = mmse_estimates(k_n, H, R, pilot, p, tau_p)``.
      R: ``[L, K, N, N]`` (a real ``R`` is promoted to the matching complex dtype); pilot:
        ``[K]``; D: ``[L, K]`` bool (every UE served); p: ``[K]`` or scalar (mW, over
        noise-normalised gains).
      tau_p, tau_c, n_realizations: static ints, ``tau_p < tau_c``.
      genie: also return ``"<key>_genie"`` (instantaneous-CSI SINR averaged over realizations).
      chunk: realizations per ``lax.scan`` step (default :func:`default_chunk`); does not change
        the result.
      max_serving: static cap ``>= max_k |M_k|`` on the serving APs of a UE, or a tuple of caps
        for groups of UEs sorted by ``|M_k|`` (:func:`cfmimo_jax.processing.serving_caps`); the
        P-MMSE Grams are built over tables of that many APs per UE instead of all ``L``.
        Default: ``serving_caps(D)`` (four groups, caps rounded up to a multiple of 4) when
        ``D`` is concrete, ``L`` when ``D`` is traced (e.g. ``all_se`` itself inside
        ``jax.jit``; pass it there for speed). Checked against a concrete ``D``; inside ``jit``
        a too-small cap silently drops serving APs. Does not change the result.
      devices: ``None`` (one device), a number of devices (the first of ``jax.devices()``) or a
        sequence of devices: the realizations' chunks are split over them with
        ``jax.shard_map`` and the Monte-Carlo sums added with ``psum``. Realization ``j`` keeps
        its draws, so the result is that of one device up to float summation order. On a CPU
        this uses every core (``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``
        before importing jax; see ``docs/kernels.md``).

    Returns ``dict[str, [K]]`` (bit/s/Hz) with the keys :data:`UPLINK_SCHEMES`:
    ``mmse, p_mmse, p_rzf, mr_central`` (centralized, Thm 5.1:
    ``(1 - tau_p/tau_c) E[log2(1 + SINR_k)]``), ``l_mmse, lp_mmse, mr_dist`` (distributed,
    Thm 5.4 with ``a = 1``) and ``l_mmse_lsfd, lp_mmse_lsfd, mr_dist_lsfd`` (optimal LSFD,
    eq. (5.30)); plus the alias ``"mr"`` (= ``"mr_central"``, centralized MR; kept for backward
    compatibility).
    """
    chunk, M = _check_se_inputs(
        R, pilot, D, p, None, tau_p, tau_c, n_realizations, chunk, max_serving
    )
    ul, _ = _se(
        key,
        as_complex(R),
        pilot,
        D,
        p,
        None,
        tau_p=tau_p,
        tau_c=tau_c,
        n=n_realizations,
        chunk=chunk,
        uplink=True,
        downlink=False,
        genie=bool(genie),
        max_serving=M,
        devices=_devices(devices),
    )
    return ul


def downlink_se(
    key,
    R,
    pilot,
    D,
    p,
    rho,
    tau_p: int,
    tau_c: int,
    n_realizations: int,
    genie=False,
    *,
    chunk=None,
    max_serving=None,
    devices=None,
):
    """Downlink SE of every UE, hardening bound (book Thm 6.1), Monte Carlo.

    Precoders are the uplink combiners (computed with uplink powers ``p``) normalised to the
    transmit powers: distributed ``w_lk = sqrt(rho_lk) v_lk / sqrt(E||v_lk||^2)`` (keys
    ``l_mmse, lp_mmse, mr_dist``), centralized ``w_k = sqrt(rho_k) v_k / sqrt(E||v_k||^2)`` with
    ``rho_k = sum_l rho[l, k]`` (keys ``mmse, p_mmse, p_rzf``). ``rho[L, K]`` in mW (entries of
    APs not serving the UE are ignored). Other arguments as in :func:`uplink_se`.
    Returns ``dict[str, [K]]`` with the keys :data:`DOWNLINK_SCHEMES` plus the alias ``"mr"``
    (= ``"mr_dist"``, distributed MR; kept for backward compatibility); ``genie=True`` adds
    ``"<key>_genie"``.
    """
    chunk, M = _check_se_inputs(
        R, pilot, D, p, rho, tau_p, tau_c, n_realizations, chunk, max_serving
    )
    _, dl = _se(
        key,
        as_complex(R),
        pilot,
        D,
        p,
        rho,
        tau_p=tau_p,
        tau_c=tau_c,
        n=n_realizations,
        chunk=chunk,
        uplink=False,
        downlink=True,
        genie=bool(genie),
        max_serving=M,
        devices=_devices(devices),
    )
    return dl


def all_se(
    key,
    R,
    pilot,
    D,
    p,
    rho,
    tau_p: int,
    tau_c: int,
    n_realizations: int,
    genie=False,
    *,
    chunk=None,
    max_serving=None,
    devices=None,
):
    """Uplink and downlink SEs from one Monte-Carlo pass: ``{"uplink": {...}, "downlink": {...}}``.

    Same draws (hence same numbers) as :func:`uplink_se` and :func:`downlink_se` with this key,
    and the same keys (including the ``"mr"`` aliases).
    """
    chunk, M = _check_se_inputs(
        R, pilot, D, p, rho, tau_p, tau_c, n_realizations, chunk, max_serving
    )
    ul, dl = _se(
        key,
        as_complex(R),
        pilot,
        D,
        p,
        rho,
        tau_p=tau_p,
        tau_c=tau_c,
        n=n_realizations,
        chunk=chunk,
        uplink=True,
        downlink=True,
        genie=bool(genie),
        max_serving=M,
        devices=_devices(devices),
    )
    return {"uplink": ul, "downlink": dl}


# --------------------------------------------------------------------------------------------
# Closed forms


def mr_statistics(R, B, pilot, p, tau_p, antenna_weights=None):
    """Closed-form statistics of distributed MR (book Cor. 5.6 / 6.3).

    ``m[l,k,i] = E[hhat_lk^H h_li] = sqrt(p_k p_i) tau_p tr(R_lk Psi_{l,t_k}^{-1} R_li)`` if
    ``pilot_i = pilot_k`` else 0 (with equal powers this is the book's
    ``tr(B_lk R_lk^{-1} R_li)``); ``s[l,k,i] = tr(B_lk R_li)``; ``F[l,k] = tr(B_lk)``.
    A real ``R`` or ``B`` is promoted to complex.

    ``antenna_weights`` (``q[L, N] >= 0``): the statistics of the weighted vectors
    ``v_lk = Q_l^(1/2) hhat_lk``, ``Q_l = diag(q_l)`` (see :func:`downlink_se_mr_closed_form`):
    ``m[l,k,i] = sqrt(p_k p_i) tau_p tr(Q_l^(1/2) R_lk Psi_{l,t_k}^{-1} R_li)`` (same pilot),
    ``s[l,k,i] = tr(Q_l^(1/2) B_lk Q_l^(1/2) R_li)``, ``F[l,k] = tr(Q_l B_lk)``.
    """
    R, B = as_complex(R), as_complex(B)
    K = R.shape[1]
    p = powers(p, K, real_dtype(R))
    X = _psi_inv_r(R, pilot, p, tau_p)  # Psi^{-1} R_lk
    same = (pilot[:, None] == pilot[None, :]).astype(R.dtype)
    sp = jnp.sqrt(p).astype(R.dtype)
    scale = tau_p * sp[:, None] * sp[None, :] * same  # [K, K]
    if antenna_weights is not None:
        return _weighted_mr_statistics(R, B, X, scale, antenna_weights)
    m = scale[None] * jnp.einsum("liab,lkab->lki", R, jnp.conj(X))
    s = jnp.real(jnp.einsum("lkab,liba->lki", B, R))
    F = jnp.real(jnp.trace(B, axis1=-2, axis2=-1))
    return m, s, F


def _sqrt_weights(q, dtype):
    """``sqrt(q)`` with value and gradient 0 at ``q = 0`` (the one-sided derivative there is
    infinite; a zero keeps gradients finite)."""
    q = jnp.asarray(q, dtype)
    pos = q > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, q, 1.0)), 0.0)


def _weighted_mr_statistics(R, B, Y, scale, q):
    """Statistics of ``v_lk = Q_l^(1/2) hhat_lk`` from ``Y[l, k]`` with ``Y^H R_li`` the
    ``R_lk Psi^{-1} R_li`` of the cross term (up to ``scale[k, i]``; ``Y = Psi^{-1} R`` or,
    in the book's form, ``R^{-1} B`` with ``scale = same pilot``).

    ``m[l,k,i] = scale_ki sum_a sqrt(q_la) [Y_lk^H R_li]_aa``,
    ``s[l,k,i] = tr(Q^(1/2) B_lk Q^(1/2) R_li)``, ``F[l,k] = sum_a q_la [B_lk]_aa``.
    """
    rd = real_dtype(R)
    q = jnp.asarray(q, rd)
    qs = _sqrt_weights(q, rd)  # [L, N]
    qc = qs.astype(R.dtype)
    m = scale[None] * jnp.einsum("la,lkba,liba->lki", qc, jnp.conj(Y), R)
    BQ = qc[:, None, :, None] * B * qc[:, None, None, :]
    s = jnp.real(jnp.einsum("lkab,liba->lki", BQ, R))
    F = jnp.einsum("la,lkaa->lk", q, jnp.real(B))
    return m, s, F


def uplink_se_mr_closed_form(R, B, pilot, D, p, tau_p: int, tau_c: int, lsfd: bool = False):
    """Distributed MR uplink SE in closed form (book Cor. 5.6): ``[K]`` bit/s/Hz.

    SINR of Thm 5.4 with ``E[g_ki]_l = sqrt(p_k p_i) tau_p tr(R_lk Psi^{-1} R_li)`` (same pilot;
    ``= tr(B_lk R_lk^{-1} R_li)`` for equal powers),
    ``E[g_ki g_ki^H] = diag_l(tr(B_lk R_li)) + E[g_ki] E[g_ki]^H``, ``E||v_lk||^2 = tr(B_lk)``,
    with ``a = 1`` on ``M_k`` or (``lsfd=True``) the optimal LSFD weights. Differentiable in
    ``R``, ``B``, ``p``. ``B`` from :func:`cfmimo_jax.estimation.estimation_statistics`; a real
    ``R`` or ``B`` is promoted to complex. Equals the ``"mr_dist"`` (``lsfd``:
    ``"mr_dist_lsfd"``) key of :func:`uplink_se` within Monte-Carlo error.
    """
    _check_closed(R, B, pilot, D, p, None, tau_p, tau_c)
    return _uplink_mr_cf(as_complex(R), as_complex(B), pilot, D, p, tau_p, tau_c, bool(lsfd))


@functools.partial(jax.jit, static_argnames=("tau_p", "tau_c", "lsfd"))
def _uplink_mr_cf(R, B, pilot, D, p, tau_p, tau_c, lsfd):
    K = R.shape[1]
    p = powers(p, K, real_dtype(R))
    m, s, F = mr_statistics(R, B, pilot, p, tau_p)
    sinr, _ = _uplink_distributed_sinr(m, s, F, jnp.asarray(D, bool), p, lsfd)
    return prelog(tau_c, tau_p) * _log2_1p(sinr)


def downlink_se_mr_closed_form(
    R, B, pilot, D, rho, tau_p: int, tau_c: int, *, p=None, antenna_weights=None
):
    """Distributed MR downlink SE in closed form: ``[K]``, the ``"mr_dist"`` key of
    :func:`downlink_se` without Monte Carlo (book Cor. 6.3; [MOBILE-AP] Theorem 1,
    eqs. (16)-(20)).

    With ``b_lk = tr(B_lk)``: ``signal_k = sum_{l in M_k} sqrt(rho_lk b_lk)``,
    ``interf_k = sum_l sum_{i in S_l} rho_li tr(B_li R_lk) / b_li``,
    ``cont_ki = sum_{l in M_i} sqrt(rho_li) tr(B_li R_li^{-1} R_lk) / sqrt(b_li)`` (same pilot),
    ``SINR_k = signal_k^2 / (interf_k + sum_i |cont_ki|^2 - signal_k^2 + 1)``.
    ``rho[L, K]`` mW. Differentiable in ``R``, ``B``, ``rho`` (and ``p``). A real ``R`` or ``B``
    is promoted to complex.

    ``p`` (uplink pilot powers, ``[K]`` or scalar): the exact pilot-contamination term for
    unequal powers is ``sqrt(p_i p_k) tau_p tr(R_li Psi_{l,t_i}^{-1} R_lk)``, which reduces to the
    book's ``tr(B_li R_li^{-1} R_lk)`` when all powers are equal. Pass ``p`` (recommended): no
    inverse of ``R`` is formed and unequal powers are exact. Without it, the book's form is
    used with ``R_li^{-1} B_li`` from a Cholesky solve (needs non-singular ``R``; exact only for
    equal uplink powers).

    ``antenna_weights`` (``q[L, N] >= 0``, per-AP per-antenna power weights, the antenna power
    action of [MOBILE-AP]; ``None``: the book's result above, unchanged): the precoder of UE
    ``i`` at AP ``l`` is ``w_li = sqrt(rho_li) Q_l^(1/2) hhat_li / sqrt(tr(Q_l B_li))``,
    ``Q_l = diag(q_l)``, so ``E||w_li||^2 = rho_li`` and the power of antenna ``n`` is
    ``rho_li q_ln [B_li]_nn / tr(Q_l B_li)`` (scaling ``q_l`` by a constant changes nothing).
    Derivation (hardening bound of book Thm 6.1, [MOBILE-AP] eqs. (17)-(20) with this ``w``):
    write ``y = y_{l,t_i} ~ CN(0, tau_p Psi_{l,t_i})`` and ``hhat_li = A_li y``,
    ``A_li = sqrt(p_i) R_li Psi^{-1}``, so ``A_li tau_p Psi A_li^H = B_li``.

    - If ``pilot_k != pilot_i``, ``h_lk`` is independent of ``y``: ``E[h_lk^H Q^(1/2) hhat_li]
      = 0`` and ``E|h_lk^H Q^(1/2) hhat_li|^2 = tr(Q^(1/2) B_li Q^(1/2) R_lk)``.
    - If ``pilot_k = pilot_i``, ``h_lk = hhat_lk + htilde_lk`` (the MMSE estimate of UE ``k``
      from the same ``y``, ``hhat_lk = A_lk y``, and an independent error ``~ CN(0, C_lk)``).
      With ``M = A_lk^H Q^(1/2) A_li`` and ``S = tau_p Psi``: the mean is
      ``E[y^H M y] = tr(M S) = sqrt(p_i p_k) tau_p tr(Q^(1/2) R_li Psi^{-1} R_lk)``, and by the
      fourth moment of a complex Gaussian, ``E|y^H M y|^2 = |tr(M S)|^2 + tr(M S M^H S)`` with
      ``tr(M S M^H S) = tr(Q^(1/2) B_li Q^(1/2) B_lk)``; the error adds
      ``tr(Q^(1/2) B_li Q^(1/2) C_lk)``, so the variance is again
      ``tr(Q^(1/2) B_li Q^(1/2) R_lk)`` (``B_lk + C_lk = R_lk``).
    - APs are independent, so the variances add over ``l`` and the means add coherently.

    Hence, with ``b^Q_li = tr(Q_l B_li)``:

        signal_k  = sum_{l in M_k} sqrt(rho_lk / b^Q_lk) tr(Q_l^(1/2) B_lk)
        interf_k  = sum_l sum_{i in S_l} rho_li tr(Q_l^(1/2) B_li Q_l^(1/2) R_lk) / b^Q_li
        cont_ki   = sum_{l in M_i} sqrt(rho_li / b^Q_li) sqrt(p_i p_k) tau_p
                    tr(Q_l^(1/2) R_li Psi_{l,t_i}^{-1} R_lk)           (pilot_i = pilot_k)
        SINR_k    = signal_k^2 / (interf_k + sum_i |cont_ki|^2 - signal_k^2 + 1)

    (``cont_kk = signal_k``; without ``p``, ``p_i tau_p R_li Psi^{-1}`` is ``B_li R_li^{-1}``
    as above). For ``q = 1`` every term is the book's. The signal is
    ``sqrt(rho_lk) tr(Q^(1/2) B) / sqrt(tr(Q B))``, not ``sqrt(rho_lk tr(Q B))``: by
    Cauchy-Schwarz it is at most ``sqrt(rho_lk tr(B_lk))``, the weights trade coherent gain for
    the per-antenna power shape. Differentiable in ``rho`` and in ``q > 0`` (at ``q_ln = 0``
    the one-sided derivative is infinite; the gradient returned there is 0), and in ``R``,
    ``B`` (so in the AP positions through the path loss). Inside ``jit``, ``q >= 0`` is
    assumed; an AP with ``tr(Q_l B_li) = 0`` sends nothing to UE ``i``.
    """
    _check_closed(R, B, pilot, D, p, rho, tau_p, tau_c)
    if antenna_weights is not None:
        L, _, N, _ = jnp.shape(R)
        V.shape("antenna_weights", antenna_weights, (L, N))
        V.finite("antenna_weights", antenna_weights, nonneg=True)
    return _downlink_mr_cf(
        as_complex(R), as_complex(B), pilot, D, rho, p, antenna_weights, tau_p, tau_c
    )


@functools.partial(jax.jit, static_argnames=("tau_p", "tau_c"))
def _downlink_mr_cf(R, B, pilot, D, rho, p, q, tau_p, tau_c):
    D = jnp.asarray(D, bool)
    if p is not None:
        m, s, F = mr_statistics(R, B, pilot, p, tau_p, antenna_weights=q)
    else:
        X = chol_solve(R, B)  # R^{-1} B, so (R^{-1} B)^H = B R^{-1}
        same = (pilot[:, None] == pilot[None, :]).astype(R.dtype)
        if q is not None:
            m, s, F = _weighted_mr_statistics(R, B, X, same, q)
        else:
            # m[l,k,i] = tr(B_lk R_lk^{-1} R_li) = sum_ab (R^{-1} B)_lk[b,a]^* R_li[b,a]
            m = jnp.einsum("lkba,liba->lki", jnp.conj(X), R) * same[None]
            s = jnp.real(jnp.einsum("lkab,liba->lki", B, R))
            F = jnp.real(jnp.trace(B, axis1=-2, axis2=-1))
    sinr, _ = _downlink_distributed_sinr(m, s, F, D, jnp.asarray(rho, F.dtype) * D)
    return prelog(tau_c, tau_p) * _log2_1p(sinr)


def _check_closed(R, B, pilot, D, p, rho, tau_p, tau_c):
    if jnp.ndim(R) != 4:
        raise ValueError(f"R must have shape [L, K, N, N], got {jnp.shape(R)}")
    L, K, N, _ = R.shape
    V.sizes(tau_p, tau_c)
    V.correlation("R", R)
    V.shape("B", B, (L, K, N, N))
    V.correlation("B", B)
    V.pilots("pilot", pilot, K, tau_p)
    V.serving("D", D, L, K)
    if p is not None:
        V.shape("p", p, (K,), allow_scalar=True)
        V.finite("p", p, nonneg=True)
    if rho is not None:
        V.shape("rho", rho, (L, K))
        V.finite("rho", rho, nonneg=True)


# --------------------------------------------------------------------------------------------
# Multi-antenna UEs: the log-det SE of cell-free XL-MIMO ([XL-FUZZY] eqs. (7)-(8))

#: Combiners of :func:`uplink_se_log_det`.
LOG_DET_COMBINERS = ("mr", "l_mmse")
#: Estimators of the cross-BS expectations in :func:`uplink_se_log_det`.
LOG_DET_ESTIMATORS = ("independent", "sample")
#: L-MMSE solve paths of :func:`uplink_se_log_det`.
LOG_DET_SOLVES = ("auto", "gram", "direct")


def uplink_se_log_det(
    G,
    p,
    combiner: str = "mr",
    tau_p=None,
    tau_c=None,
    chunk=None,
    *,
    estimator: str = "independent",
    solve: str = "auto",
):
    """Uplink SE of multi-antenna UEs with per-BS combining and CPU averaging: ``[K]``.

    [XL-FUZZY] Corollary 1, eq. (8): ``SE_k = log2 det(I_Ns + E_k^H Psi_k^{-1} E_k)`` with

        E_k   = sqrt(p_k) sum_m E{V_mk^H G_mk},
        Psi_k = sum_l p_l sum_m sum_m' E{V_mk^H G_ml G_m'l^H V_m'k} - E_k E_k^H
                + sum_m E{V_mk^H V_mk},

    the use-and-then-forget bound of the CPU estimate ``xhat_k = (1/M) sum_m V_mk^H y_m`` of
    eq. (7), every BS taking part. Readings:

    - The CPU averages the local estimates ``V_mk^H y_m`` of all ``M`` BSs with equal weights
      (LSFD weights ``a = 1``); the ``1/M`` scales ``E_k`` by ``1/M`` and ``Psi_k`` by
      ``1/M^2``, so it cancels in eq. (8).
    - The interference term is the covariance of ``sum_m V_mk^H G_ml x_l``,
      ``E{V_mk^H G_ml G_m'l^H V_m'k}``; eq. (8) prints ``E{V_mk^H G_ml V_m'l^H G_m'k}``, which
      swaps two indices (that product has no meaning as a covariance; for ``N_s = 1`` it
      would not reduce to the single-antenna SINR). ``p_l`` is the per-antenna power, so
      ``E[x_l x_l^H] = p_l I``; the noise is normalised to ``I`` (``G`` over noise).
    - Combining, per BS and realization ([XL-FUZZY] section II-B, perfect CSI): MR
      ``V_mk = G_mk``; L-MMSE ``V_mk = (sum_l p_l G_ml G_ml^H + I_Nr)^{-1} G_mk``. The paper's
      leading ``p_k`` of L-MMSE scales ``E_k`` by ``p_k`` and ``Psi_k`` by ``p_k^2`` and so
      cancels; it is left out, so ``p_k = 0`` gives ``SE_k = 0`` instead of ``0 / 0``.
    - The expectations are means over the ``n`` realizations of ``G``. ``estimator``:
      ``"independent"`` (default) uses that the channels (and so the combiners) of different
      BSs are independent: for ``m != m'``,
      ``E{V_mk^H G_ml G_m'l^H V_m'k} = E{V_mk^H G_ml} E{V_m'k^H G_m'l}^H``, the product of two
      sample means (the estimator of the book's Thm 5.4 in :func:`uplink_se`); it has much
      less variance for few realizations and requires ``G`` independent over BSs (true for
      :func:`cfmimo_jax.nearfield.sample_channels`). ``"sample"`` takes the sample mean of the
      whole product ``(sum_m V_mk^H G_ml)(sum_m V_mk^H G_ml)^H``. Both converge to eq. (8).
      For ``N_s = 1`` the SE is ``log2(1 + p_k |E[v_k^H g_k]|^2 / (sum_i p_i E|v_k^H g_i|^2
      - p_k |E[v_k^H g_k]|^2 + E||v_k||^2))`` (``v``, ``g`` stacked over BSs).

    Args:
      G: ``[n, M, K, N_r, N_s]`` channel realizations, normalised by the noise (a real ``G`` is
        promoted to complex).
      p: ``[K]`` or scalar, per-antenna transmit powers ``p_{k,N_s}`` (mW), ``>= 0``.
      combiner: ``"mr"`` or ``"l_mmse"``.
      tau_p, tau_c: if given (both), the SE is scaled by ``(tau_c - tau_p) / tau_c``; else
        prelog 1 (the paper's eq. (8)).
      chunk: realizations per ``lax.scan`` step (default: a power of two up to 64 that keeps
        the per-chunk arrays near 2^20 elements); the realizations are given, so it only
        changes the summation order.
      estimator: ``"independent"`` or ``"sample"`` (above).
      solve: L-MMSE path, ``"gram"`` (a ``K N_s x K N_s`` system: with ``F^H F = W_m =
        G_m^H G_m``, ``V_m^H G_m = F^H (I + F P F^H)^{-1} F``), ``"direct"`` (the
        ``N_r x N_r`` Cholesky solve of ``Phi_m = I + G_m P G_m^H``) or ``"auto"`` (``gram``
        when ``K N_s < N_r``). The same result (the Gram path's factor of ``W_m`` carries a
        relative jitter of ``1e3 eps``: ``2e-13`` in float64).

    ``Psi_k`` is singular when the UE array has fewer spatial degrees of freedom than patches
    (e.g. ``2 x 2`` patches at ``lambda / 3``, whose wavenumbers ``l_x = +-1`` give the same
    response); ``E_k`` then lies in its range and the SE is that of the range, computed with a
    jitter ``1e3 eps tr(Psi_k) / N_s`` on the diagonal (relative ``2e-13`` in float64).

    Jittable (wrap it in ``jax.jit`` with the string and size arguments static) and
    differentiable in ``p`` (also at ``p_k = 0``: ``p`` enters linearly, no square roots) and
    in ``G``. Inputs are checked when concrete; inside ``jit``, ``p >= 0`` and finite ``G``
    are assumed.
    """
    if jnp.ndim(G) != 5:
        raise ValueError(f"G must have shape [n, M, K, N_r, N_s], got {jnp.shape(G)}")
    n, M, K, Nr, Ns = jnp.shape(G)
    if min(n, M, K, Nr, Ns) < 1:
        raise ValueError(f"G must have non-empty axes [n, M, K, N_r, N_s], got {jnp.shape(G)}")
    V.finite("G", G)
    V.shape("p", p, (K,), allow_scalar=True)
    V.finite("p", p, nonneg=True)
    if combiner not in LOG_DET_COMBINERS:
        raise ValueError(f"combiner must be one of {LOG_DET_COMBINERS}, got {combiner!r}")
    if estimator not in LOG_DET_ESTIMATORS:
        raise ValueError(f"estimator must be one of {LOG_DET_ESTIMATORS}, got {estimator!r}")
    if solve not in LOG_DET_SOLVES:
        raise ValueError(f"solve must be one of {LOG_DET_SOLVES}, got {solve!r}")
    if (tau_p is None) != (tau_c is None):
        raise ValueError("tau_p and tau_c must be given together (or neither: prelog 1)")
    factor = 1.0
    if tau_p is not None:
        V.sizes(tau_p, tau_c)
        factor = prelog(tau_c, tau_p)
    if chunk is None:
        chunk = log_det_chunk(M, K, Nr, Ns, n)
    else:
        chunk = min(V.positive_int("chunk", chunk), n)
    if combiner == "mr":
        solve = "gram"  # MR needs only the Gram matrices
    elif solve == "auto":
        solve = "gram" if K * Ns < Nr else "direct"
    se = _log_det_se(
        as_complex(G), p, combiner=combiner, chunk=chunk, estimator=estimator, solve=solve
    )
    return se if factor == 1.0 else factor * se


def log_det_chunk(M: int, K: int, Nr: int, Ns: int, n: int) -> int:
    """Default realizations per chunk of :func:`uplink_se_log_det`: the largest power of two
    ``<= 64`` with ``chunk M max(N_r K N_s, (K N_s)^2, N_r^2) <= 2^20``, at most ``n``."""
    size = M * max(Nr * K * Ns, (K * Ns) ** 2, Nr * Nr)
    c = 64
    while c > 1 and c * size > 2**20:
        c //= 2
    return max(1, min(c, n))


def _log_det_blocks(g, p, combiner, solve):
    """Per-BS products of one chunk ``g[c, M, K, N_r, N_s]``.

    Returns ``A[c, M, K N_s, K N_s]`` with block ``(k, l)`` = ``V_mk^H G_ml`` and
    ``VV[c, M, K, N_s, N_s]`` = ``V_mk^H V_mk`` (combiners without the factor ``p_k``).
    """
    c, M, K, Nr, Ns = g.shape
    d = K * Ns
    Gf = jnp.swapaxes(g, 2, 3).reshape(c, M, Nr, d)  # column (k, a) = antenna a of UE k
    pr = jnp.repeat(p, Ns)  # [K N_s]
    blocks = lambda X: X.reshape(c, M, d, K, Ns)
    if solve == "direct":
        Phi = jnp.einsum("cmrx,x,cmsx->cmrs", Gf, pr.astype(Gf.dtype), jnp.conj(Gf))
        Phi = hermitian_part(Phi) + jnp.eye(Nr, dtype=Gf.dtype)
        Vm = chol_solve(Phi, Gf)  # [c, M, N_r, K N_s]
        A = jnp.einsum("cmrx,cmry->cmxy", jnp.conj(Vm), Gf)
        Vb = Vm.reshape(c, M, Nr, K, Ns)
        VV = jnp.einsum("cmrka,cmrkb->cmkab", jnp.conj(Vb), Vb)
        return A, VV
    W = hermitian_part(jnp.einsum("cmrx,cmry->cmxy", jnp.conj(Gf), Gf))  # G_m^H G_m
    if combiner == "mr":
        W6 = W.reshape(c, M, K, Ns, K, Ns)
        return W, jnp.einsum("cmkakb->cmkab", W6)
    # For any F with F^H F = W, push-through gives G^H Phi^{-1} G = W (I + P W)^{-1}
    # = F^H (I + F P F^H)^{-1} F and G^H Phi^{-2} G = Z^H Z with Z = (I + F P F^H)^{-1} F:
    # a K N_s system, linear in p (no square roots), with no cancellation (W - W P (...) W
    # loses all digits in float32 when p beta N_r is large). F from a Cholesky factor of W,
    # jittered by 1e3 eps on the diagonal (relative) so a rank-deficient W (or a zero
    # column) still factors.
    rd = real_dtype(W)
    eye = jnp.eye(d, dtype=W.dtype)
    diag = jnp.real(jnp.diagonal(W, axis1=-2, axis2=-1))
    jitter = 1e3 * jnp.finfo(rd).eps * diag + jnp.sqrt(jnp.finfo(rd).tiny)
    F = jnp.conj(jnp.swapaxes(cholesky(W + jitter[..., None].astype(W.dtype) * eye), -1, -2))
    Fh = jnp.conj(jnp.swapaxes(F, -1, -2))
    Z = chol_solve(hermitian_part((F * pr.astype(W.dtype)) @ Fh) + eye, F)  # Phi^{-1} G in U
    A = hermitian_part(Fh @ Z)
    VV = jnp.einsum("cmxka,cmxkb->cmkab", jnp.conj(blocks(Z)), blocks(Z))
    return A, VV


@functools.partial(jax.jit, static_argnames=("combiner", "chunk", "estimator", "solve"))
def _log_det_se(G, p, *, combiner, chunk, estimator, solve):
    n, M, K, Nr, Ns = G.shape
    rd = real_dtype(G)
    p = powers(p, K, rd)
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    if pad:  # zero channels give zero products: the padded realizations add nothing
        G = jnp.pad(G, ((0, pad),) + ((0, 0),) * 4)
    Gc = G.reshape((n_chunks, chunk) + G.shape[1:])
    cd = G.dtype

    def step(acc, g):
        A, VV = _log_det_blocks(g, p, combiner, solve)
        A6 = A.reshape(chunk, M, K, Ns, K, Ns)  # [c, m, k, a, l, b] = (V_mk^H G_ml)[a, b]
        out = {"A": jnp.sum(A6, axis=0), "VV": jnp.sum(VV, axis=(0, 1))}
        if estimator == "independent":
            out["AA"] = jnp.einsum("cmkalb,cmkdlb->mklad", A6, jnp.conj(A6))
        else:
            S = jnp.sum(A6, axis=1)  # sum over BSs, [c, k, a, l, b]
            out["SS"] = jnp.einsum("ckalb,ckdlb->klad", S, jnp.conj(S))
        return jax.tree_util.tree_map(jnp.add, acc, out), None

    init = {"A": jnp.zeros((M, K, Ns, K, Ns), cd), "VV": jnp.zeros((K, Ns, Ns), cd)}
    if estimator == "independent":
        init["AA"] = jnp.zeros((M, K, K, Ns, Ns), cd)
    else:
        init["SS"] = jnp.zeros((K, K, Ns, Ns), cd)
    sums, _ = jax.lax.scan(step, init, Gc)
    mu = sums["A"] / n  # E{V_mk^H G_ml}, [m, k, a, l, b]
    smu = jnp.sum(mu, axis=0)  # sum_m E{V_mk^H G_ml}, [k, a, l, b]
    ebar = jnp.einsum("kakb->kab", smu)  # E_k / sqrt(p_k)
    outer = lambda X: jnp.einsum("...kalb,...kdlb->...klad", X, jnp.conj(X))
    if estimator == "independent":
        # sum_m sum_m' E{A_m A_m'^H} = smu smu^H + sum_m (E{A_m A_m^H} - mu_m mu_m^H); the
        # l = k part of smu smu^H is E_k E_k^H / p_k, which eq. (8) subtracts: left out.
        var = jnp.sum(sums["AA"] / n - outer(mu), axis=0)  # [k, l, a, d]
        off = (1.0 - jnp.eye(K, dtype=rd)).astype(cd)[:, :, None, None]
        T = off * outer(smu) + var
        Psi = jnp.einsum("l,klad->kad", p.astype(cd), T)
    else:
        T = sums["SS"] / n
        Psi = jnp.einsum("l,klad->kad", p.astype(cd), T)
        Psi = Psi - p.astype(cd)[:, None, None] * ebar @ jnp.conj(jnp.swapaxes(ebar, -1, -2))
    Psi = hermitian_part(Psi + sums["VV"] / n)
    # Psi_k is singular when the UE array has fewer spatial degrees of freedom than patches
    # (E_k lies in its range): a jitter of 1e3 eps tr(Psi_k) / N_s keeps the Cholesky finite.
    scale = jnp.real(jnp.trace(Psi, axis1=-2, axis2=-1)) / Ns
    jitter = 1e3 * jnp.finfo(rd).eps * scale + jnp.sqrt(jnp.finfo(rd).tiny)  # > 0 if G_k = 0
    Psi = Psi + jitter.astype(cd)[:, None, None] * jnp.eye(Ns, dtype=cd)
    X = solve_lower(cholesky(Psi), ebar)  # Lc^{-1} E_k / sqrt(p_k)
    eye = jnp.eye(Ns, dtype=cd)
    Mk = eye + p.astype(cd)[:, None, None] * (jnp.conj(jnp.swapaxes(X, -1, -2)) @ X)
    Lm = cholesky(hermitian_part(Mk))
    logdet = 2.0 * jnp.sum(jnp.log(jnp.real(jnp.diagonal(Lm, axis1=-2, axis2=-1))), axis=-1)
    return logdet / jnp.log(2.0).astype(rd)
