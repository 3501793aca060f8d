"""A real-valued ``R`` is promoted to the matching complex dtype by every public kernel.

Channels and pilot noise are drawn in the dtype of ``R``; a real ``R`` (i.i.d. Rayleigh
``gain * I`` built in NumPy float64 or float32) used to draw real Gaussians, and the
Monte-Carlo SEs came out 5-30 % below their own closed forms. Here every public function that
takes ``R`` (or ``B``, ``C``, or channels it adds noise to) gives, with the same key, exactly the
numbers of the same ``R`` cast to complex (float64 -> complex128, float32 -> complex64), and the
Monte-Carlo MR SEs with a real ``R`` agree with the closed forms within Monte-Carlo error. The
``"mr"`` alias keys of the SE dicts are checked here too.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import reference as ref
from conftest import N_REALIZATIONS, get_scenario

from cfmimo_jax import estimation, processing, se

N_MC = 4000  # realizations for closed form vs Monte Carlo
N_SIGMA = 4.5  # allowed deviation in jackknife standard errors
# (real dtype of R, the complex dtype it must be promoted to)
DTYPES = [(np.float64, np.complex128), (np.float32, np.complex64)]
DTYPE_IDS = ["float64", "float32"]


@pytest.fixture(scope="module")
def sc():
    """Uncorrelated fading ``R = gain * I`` (K > tau_p, pilot reuse), with ``R`` real."""
    sc = get_scenario("uncorr_reuse")
    assert np.all(np.imag(sc.R) == 0)
    return sc


def _pair(R, real, cplx):
    """``(R as a real array, the same R as a complex array)``."""
    Rr = np.real(R).astype(real)
    return Rr, Rr.astype(cplx)


def _same(a, b):
    """Same pytree structure, dtypes and bit-identical leaves."""
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_as_complex_dtypes():
    for real, cplx in DTYPES:
        z = estimation.as_complex(np.ones((2, 2), real))
        assert z.dtype == cplx
        assert estimation.as_complex(np.ones(2, cplx)).dtype == cplx
    x = estimation.as_complex(np.arange(3.0))
    assert x.dtype == np.complex128 and np.all(np.asarray(x) == np.arange(3.0))


@pytest.mark.parametrize(("real", "cplx"), DTYPES, ids=DTYPE_IDS)
def test_estimation_kernels_real_equals_complex(sc, real, cplx):
    Rr, Rc = _pair(sc.R, real, cplx)
    p = sc.p.astype(real)
    args = (sc.pilot, p, sc.tau_p)
    _same(estimation.pilot_covariance(Rr, *args), estimation.pilot_covariance(Rc, *args))
    _same(estimation.estimation_statistics(Rr, *args), estimation.estimation_statistics(Rc, *args))
    _same(estimation.mmse_matrices(Rr, *args), estimation.mmse_matrices(Rc, *args))

    key = jax.random.PRNGKey(3)
    H = estimation.sample_channels(key, Rr, 6)
    assert H.dtype == cplx
    _same(H, estimation.sample_channels(key, Rc, 6))

    k_n = jax.random.PRNGKey(4)
    Hr = np.real(np.asarray(H))  # a real channel: the pilot noise must still be complex
    Y = estimation.pilot_signal(k_n, Hr, *args)
    assert Y.dtype == cplx
    _same(Y, estimation.pilot_signal(k_n, Hr.astype(cplx), *args))
    _same(
        estimation.mmse_from_pilot_signal(Y, Rr, *args),
        estimation.mmse_from_pilot_signal(Y, Rc, *args),
    )
    _same(
        estimation.mmse_estimates(k_n, H, Rr, *args), estimation.mmse_estimates(k_n, H, Rc, *args)
    )


def test_closed_forms_and_combiners_real_equals_complex(sc):
    # float64 only: float32 goes through the same promotion (tested above and with the SEs)
    real, cplx = np.float64, np.complex128
    Rr, Rc = _pair(sc.R, real, cplx)
    Br, Bc = _pair(sc.B, real, cplx)
    Cr, Cc = _pair(sc.C, real, cplx)
    p = sc.p.astype(real)
    rho = sc.rho.astype(real)
    _same(
        se.mr_statistics(Rr, Br, sc.pilot, p, sc.tau_p),
        se.mr_statistics(Rc, Bc, sc.pilot, p, sc.tau_p),
    )
    for lsfd in (False, True):
        a = se.uplink_se_mr_closed_form(Rr, Br, sc.pilot, sc.D, p, sc.tau_p, sc.tau_c, lsfd)
        b = se.uplink_se_mr_closed_form(Rc, Bc, sc.pilot, sc.D, p, sc.tau_p, sc.tau_c, lsfd)
        _same(a, b)
    for kw in ({"p": p}, {}):
        a = se.downlink_se_mr_closed_form(Rr, Br, sc.pilot, sc.D, rho, sc.tau_p, sc.tau_c, **kw)
        b = se.downlink_se_mr_closed_form(Rc, Bc, sc.pilot, sc.D, rho, sc.tau_p, sc.tau_c, **kw)
        _same(a, b)

    Hhat = np.real(np.asarray(estimation.sample_channels(jax.random.PRNGKey(5), Bc, 4)))
    # one centralized and one distributed scheme (P-MMSE: the serving-table scatter path)
    _same(
        processing.centralized_combiners(Hhat, Cr, sc.D, p, "p_mmse"),
        processing.centralized_combiners(Hhat.astype(cplx), Cc, sc.D, p, "p_mmse"),
    )
    _same(
        processing.distributed_combiners(Hhat, Cr, sc.D, p, "lp_mmse"),
        processing.distributed_combiners(Hhat.astype(cplx), Cc, sc.D, p, "lp_mmse"),
    )


@pytest.mark.parametrize(("real", "cplx"), DTYPES, ids=DTYPE_IDS)
def test_uplink_and_downlink_se_real_equals_complex(sc, real, cplx):
    Rr, Rc = _pair(sc.R, real, cplx)
    p, rho = sc.p.astype(real), sc.rho.astype(real)
    key = jax.random.PRNGKey(7)
    ul = [
        se.uplink_se(key, R, sc.pilot, sc.D, p, sc.tau_p, sc.tau_c, N_REALIZATIONS)
        for R in (Rr, Rc)
    ]
    _same(*ul)
    assert ul[0]["mmse"].dtype == np.finfo(cplx).dtype
    dl = [
        se.downlink_se(key, R, sc.pilot, sc.D, p, rho, sc.tau_p, sc.tau_c, N_REALIZATIONS)
        for R in (Rr, Rc)
    ]
    _same(*dl)


# ----------------------------------------------------------------------------------------------
# all_se with a real R: same numbers as complex, aliases, closed form vs Monte Carlo
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_all_se(sc):
    """``all_se`` (genie keys included) with ``R`` real float64 and the same ``R`` complex."""
    Rr, Rc = _pair(sc.R, np.float64, np.complex128)
    key = jax.random.PRNGKey(31)
    args = (sc.pilot, sc.D, sc.p, sc.rho, sc.tau_p, sc.tau_c, N_MC)
    real = se.all_se(key, Rr, *args, genie=True)
    cplx = se.all_se(key, Rc, *args, genie=True)
    k_h, k_n = jax.random.split(key)
    H = estimation.sample_channels(k_h, Rr, N_MC)
    Hhat = estimation.mmse_estimates(k_n, H, Rr, sc.pilot, sc.p, sc.tau_p)
    B, _ = estimation.estimation_statistics(Rr, sc.pilot, sc.p, sc.tau_p)
    return dict(R=Rr, B=np.asarray(B), real=real, cplx=cplx, H=np.asarray(H), Hhat=np.asarray(Hhat))


def test_all_se_real_equals_complex(real_all_se):
    _same(real_all_se["real"], real_all_se["cplx"])


def test_scheme_keys_and_aliases(real_all_se):
    """Keys are the schemes, their genie versions and the ``"mr"`` aliases; an alias holds the
    array of its scheme (uplink: centralized MR, downlink: distributed MR)."""
    out = real_all_se["real"]
    for direction, schemes, aliases in (
        ("uplink", se.UPLINK_SCHEMES, se.UPLINK_ALIASES),
        ("downlink", se.DOWNLINK_SCHEMES, se.DOWNLINK_ALIASES),
    ):
        d = out[direction]
        names = set(schemes) | set(aliases)
        assert set(d) == names | {k + "_genie" for k in names}, direction
        for alias, scheme in aliases.items():
            for suffix in ("", "_genie"):
                np.testing.assert_array_equal(d[alias + suffix], d[scheme + suffix])
    assert se.UPLINK_ALIASES == {"mr": "mr_central"}
    assert se.DOWNLINK_ALIASES == {"mr": "mr_dist"}
    # the uplink alias is centralized MR, not distributed MR
    assert not np.allclose(out["uplink"]["mr"], out["uplink"]["mr_dist"])


@pytest.mark.parametrize("lsfd", [False, True])
def test_real_r_uplink_mr_monte_carlo_vs_closed_form(sc, real_all_se, lsfd):
    d = real_all_se
    mc = np.asarray(d["real"]["uplink"]["mr_dist_lsfd" if lsfd else "mr_dist"])
    V = d["Hhat"] * sc.D[None, :, :, None]  # distributed MR
    est, err = ref.distributed_uplink_se_jackknife(d["H"], V, sc.D, sc.p, sc.tau_p, sc.tau_c, lsfd)
    np.testing.assert_allclose(mc, est, rtol=1e-7, atol=1e-10)
    cf = np.asarray(
        se.uplink_se_mr_closed_form(d["R"], d["B"], sc.pilot, sc.D, sc.p, sc.tau_p, sc.tau_c, lsfd)
    )
    assert np.all(np.abs(mc - cf) < N_SIGMA * err), (mc, cf, err)


def test_real_r_downlink_mr_monte_carlo_vs_closed_form(sc, real_all_se):
    d = real_all_se
    mc = np.asarray(d["real"]["downlink"]["mr_dist"])
    V = d["Hhat"] * sc.D[None, :, :, None]
    est, err = ref.distributed_downlink_se_jackknife(d["H"], V, sc.D, sc.rho, sc.tau_p, sc.tau_c)
    np.testing.assert_allclose(mc, est, rtol=1e-7, atol=1e-10)
    cf = np.asarray(
        se.downlink_se_mr_closed_form(
            d["R"], d["B"], sc.pilot, sc.D, sc.rho, sc.tau_p, sc.tau_c, p=sc.p
        )
    )
    assert np.all(np.abs(mc - cf) < N_SIGMA * err), (mc, cf, err)
