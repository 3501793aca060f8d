"""Spectral efficiency (Monte Carlo, genie, closed forms) and power allocation vs the NumPy
reference, and closed form vs Monte Carlo within the estimated Monte-Carlo error."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import reference as ref
from conftest import N_REALIZATIONS, RHO_MAX

from cfmimo_jax.se import DOWNLINK_ALIASES, DOWNLINK_SCHEMES, UPLINK_ALIASES, UPLINK_SCHEMES

RTOL = 1e-7
ATOL = 1e-10

# docs/kernels.md writes the MR closed forms with ``p_k tau_p`` (uplink ``m_ki``) and
# ``p_i tau_p`` (downlink ``cont_ki``) where the Monte-Carlo expectation is
# ``sqrt(p_i p_k) tau_p``; both agree for equal powers.  The JAX-vs-reference comparisons
# follow the documented convention (set to True if the documentation switches to sqrt(p_i p_k)).
EXACT_POWERS = True

N_MC = 4000  # realizations for closed form vs Monte Carlo
N_SIGMA = 4.5  # allowed deviation in jackknife standard errors


def _draws(key, sc, n, p):
    """The realizations the Monte-Carlo SE functions use for ``key`` (docs/kernels.md)."""
    from cfmimo_jax.estimation import mmse_estimates, sample_channels

    k_h, k_n = jax.random.split(key)
    H = sample_channels(k_h, sc.R, n)
    Hhat = mmse_estimates(k_n, H, sc.R, sc.pilot, p, sc.tau_p)
    return np.asarray(H), np.asarray(Hhat)


# tests/reference.py names centralized uplink MR and distributed downlink MR "mr" (the kernels'
# backward-compatible alias); the kernels' scheme keys are "mr_central" and "mr_dist".
_REF_NAMES = {"uplink": {"mr": "mr_central"}, "downlink": {"mr": "mr_dist"}}


def _split_genie(key):
    return (key[: -len("_genie")], "_genie") if key.endswith("_genie") else (key, "")


def _kernel_keys(expected, direction):
    """A reference SE dict with the kernels' scheme keys."""
    names = _REF_NAMES[direction]
    out = {}
    for key, value in expected.items():
        base, genie = _split_genie(key)
        out[names.get(base, base) + genie] = value
    return out


def _without_aliases(out, aliases):
    """Check that every alias key holds the array of its scheme; the dict without them."""
    alias_keys = set()
    for key in out:
        base, genie = _split_genie(key)
        if base in aliases:
            np.testing.assert_array_equal(out[key], out[aliases[base] + genie], err_msg=key)
            alias_keys.add(key)
    return {k: v for k, v in out.items() if k not in alias_keys}


def _with_genie(keys):
    return set(keys) | {k + "_genie" for k in keys}


def _assert_dicts_close(out, expected):
    assert set(out) == set(expected)
    for key in expected:
        got = np.asarray(out[key])
        assert got.shape == expected[key].shape, key
        np.testing.assert_allclose(got, expected[key], rtol=RTOL, atol=ATOL, err_msg=key)


# ----------------------------------------------------------------------------------------------
# Reference self-checks (no JAX)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ref_mc_draws(corr_reuse):
    """NumPy draws for the reference self-checks: equal and unequal uplink powers."""
    sc = corr_reuse
    rng = np.random.default_rng(21)
    H = ref.sample_channels(rng, sc.R, 6000)
    out = {}
    for name, p in (("equal", ref._powers(100.0, sc.K)), ("unequal", sc.p)):
        Y = ref.pilot_signal(rng, H, sc.pilot, p, sc.tau_p)
        Hhat = ref.mmse_from_pilot_signal(Y, sc.R, sc.pilot, p, sc.tau_p)
        out[name] = (p, Hhat)
    return H, out


@pytest.mark.parametrize("powers", ["equal", "unequal"])
def test_reference_mr_closed_forms_vs_reference_monte_carlo(corr_reuse, ref_mc_draws, powers):
    """The reference closed forms (with ``sqrt(p_i p_k)``) equal the reference Monte Carlo
    within a few jackknife standard errors; for equal powers also the documented form."""
    sc = corr_reuse
    H, draws = ref_mc_draws
    p, Hhat = draws[powers]
    B, _ = ref.estimation_statistics(sc.R, sc.pilot, p, sc.tau_p)
    V = ref.distributed_combiners(Hhat, sc.C, sc.D, p, "mr")
    forms = [True, False] if powers == "equal" else [True]
    for lsfd in (False, True):
        est, err = ref.distributed_uplink_se_jackknife(H, V, sc.D, p, sc.tau_p, sc.tau_c, lsfd)
        assert np.all(err > 0)
        for exact in forms:
            cf = ref.uplink_se_mr_closed_form(
                sc.R, B, sc.pilot, sc.D, p, sc.tau_p, sc.tau_c, lsfd, exact_powers=exact
            )
            assert np.all(np.abs(est - cf) < N_SIGMA * err), (lsfd, exact, est, cf, err)
    est, err = ref.distributed_downlink_se_jackknife(H, V, sc.D, sc.rho, sc.tau_p, sc.tau_c)
    for exact in forms:
        cf = ref.downlink_se_mr_closed_form(
            sc.R, B, sc.pilot, sc.D, sc.rho, sc.tau_p, sc.tau_c, p=p, exact_powers=exact
        )
        assert np.all(np.abs(est - cf) < N_SIGMA * err), (exact, est, cf, err)
    # The jackknife estimate is the plain Monte-Carlo estimate.
    W = ref.distributed_precoders(V, sc.D, sc.rho)
    np.testing.assert_allclose(est, ref.distributed_downlink_se(H, W, sc.tau_p, sc.tau_c))


def test_reference_downlink_closed_form_without_p(scenario):
    """``p_i tau_p R Psi^{-1}`` recovered as ``B R^{-1}`` gives the same closed form."""
    sc = scenario
    a = ref.downlink_se_mr_closed_form(
        sc.R, sc.B, sc.pilot, sc.D, sc.rho, sc.tau_p, sc.tau_c, p=sc.p
    )
    b = ref.downlink_se_mr_closed_form(sc.R, sc.B, sc.pilot, sc.D, sc.rho, sc.tau_p, sc.tau_c)
    np.testing.assert_allclose(a, b, rtol=1e-8)


def test_reference_lsfd_is_optimal(scenario):
    sc = scenario
    args = (sc.R, sc.B, sc.pilot, sc.D, sc.p, sc.tau_p, sc.tau_c)
    plain = ref.uplink_se_mr_closed_form(*args, lsfd=False)
    lsfd = ref.uplink_se_mr_closed_form(*args, lsfd=True)
    assert np.all(lsfd >= plain - 1e-12)
    single = sc.D.sum(axis=0) == 1
    np.testing.assert_allclose(lsfd[single], plain[single], rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# JAX vs reference
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exponent", [0.5, 1.0, 0.0])
def test_fractional_downlink(scenario, exponent):
    from cfmimo_jax.power import fractional_downlink

    sc = scenario
    rho = np.asarray(fractional_downlink(sc.gain, sc.D, RHO_MAX, exponent=exponent))
    expected = ref.fractional_downlink(sc.gain, sc.D, RHO_MAX, exponent)
    np.testing.assert_allclose(rho, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rho.sum(axis=1)[sc.D.any(axis=1)], RHO_MAX, rtol=1e-10)


@pytest.mark.parametrize("lsfd", [False, True])
def test_uplink_mr_closed_form(scenario, lsfd):
    from cfmimo_jax.se import uplink_se_mr_closed_form

    sc = scenario
    se = uplink_se_mr_closed_form(sc.R, sc.B, sc.pilot, sc.D, sc.p, sc.tau_p, sc.tau_c, lsfd=lsfd)
    expected = ref.uplink_se_mr_closed_form(
        sc.R, sc.B, sc.pilot, sc.D, sc.p, sc.tau_p, sc.tau_c, lsfd, exact_powers=EXACT_POWERS
    )
    np.testing.assert_allclose(np.asarray(se), expected, rtol=RTOL, atol=ATOL)


def test_downlink_mr_closed_form(scenario):
    from cfmimo_jax.se import downlink_se_mr_closed_form

    sc = scenario
    se = downlink_se_mr_closed_form(sc.R, sc.B, sc.pilot, sc.D, sc.rho, sc.tau_p, sc.tau_c, p=sc.p)
    expected = ref.downlink_se_mr_closed_form(
        sc.R, sc.B, sc.pilot, sc.D, sc.rho, sc.tau_p, sc.tau_c, p=sc.p, exact_powers=EXACT_POWERS
    )
    np.testing.assert_allclose(np.asarray(se), expected, rtol=RTOL, atol=ATOL)


def test_downlink_mr_closed_form_book_form_without_p(scenario):
    """Without ``p`` the book's tr(B R^{-1} R) form is used (exact for equal powers)."""
    from cfmimo_jax.se import downlink_se_mr_closed_form

    sc = scenario
    if np.min(np.linalg.eigvalsh(sc.R)) <= 1e-9 * np.max(np.abs(sc.R)):
        pytest.skip("book form needs non-singular R")
    se = downlink_se_mr_closed_form(sc.R, sc.B, sc.pilot, sc.D, sc.rho, sc.tau_p, sc.tau_c)
    expected = ref.downlink_se_mr_closed_form(
        sc.R, sc.B, sc.pilot, sc.D, sc.rho, sc.tau_p, sc.tau_c, p=sc.p, exact_powers=False
    )
    np.testing.assert_allclose(np.asarray(se), expected, rtol=1e-6, atol=1e-9)


def test_uplink_se_monte_carlo_and_genie(scenario):
    from cfmimo_jax.se import uplink_se

    sc = scenario
    key = jax.random.PRNGKey(17)
    out = uplink_se(key, sc.R, sc.pilot, sc.D, sc.p, sc.tau_p, sc.tau_c, N_REALIZATIONS, genie=True)
    H, Hhat = _draws(key, sc, N_REALIZATIONS, sc.p)
    expected = ref.uplink_se(
        H, Hhat, sc.R, sc.B, sc.C, sc.pilot, sc.D, sc.p, sc.tau_p, sc.tau_c, genie=True
    )
    expected = _kernel_keys(expected, "uplink")
    assert set(expected) == _with_genie(UPLINK_SCHEMES)
    assert set(out) == _with_genie(UPLINK_SCHEMES) | _with_genie(UPLINK_ALIASES)
    _assert_dicts_close(_without_aliases(out, UPLINK_ALIASES), expected)


def test_downlink_se_monte_carlo_and_genie(scenario):
    from cfmimo_jax.se import downlink_se

    sc = scenario
    key = jax.random.PRNGKey(19)
    out = downlink_se(
        key, sc.R, sc.pilot, sc.D, sc.p, sc.rho, sc.tau_p, sc.tau_c, N_REALIZATIONS, genie=True
    )
    H, Hhat = _draws(key, sc, N_REALIZATIONS, sc.p)
    expected = ref.downlink_se(
        H, Hhat, sc.R, sc.B, sc.C, sc.pilot, sc.D, sc.p, sc.rho, sc.tau_p, sc.tau_c, genie=True
    )
    expected = _kernel_keys(expected, "downlink")
    assert set(expected) == _with_genie(DOWNLINK_SCHEMES)
    assert set(out) == _with_genie(DOWNLINK_SCHEMES) | _with_genie(DOWNLINK_ALIASES)
    _assert_dicts_close(_without_aliases(out, DOWNLINK_ALIASES), expected)


# ----------------------------------------------------------------------------------------------
# Closed form vs Monte Carlo (JAX), Monte-Carlo error by the jackknife on the same draws
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mc_vs_cf(corr_reuse):
    """JAX Monte-Carlo SE with many realizations and unequal powers, with its draws."""
    from cfmimo_jax.se import downlink_se, uplink_se

    sc = corr_reuse
    p = np.asarray(sc.p)
    key_ul, key_dl = jax.random.PRNGKey(23), jax.random.PRNGKey(29)
    B, C = ref.estimation_statistics(sc.R, sc.pilot, p, sc.tau_p)
    ul = uplink_se(key_ul, sc.R, sc.pilot, sc.D, p, sc.tau_p, sc.tau_c, N_MC)
    dl = downlink_se(key_dl, sc.R, sc.pilot, sc.D, p, sc.rho, sc.tau_p, sc.tau_c, N_MC)
    return dict(
        p=p,
        B=B,
        C=C,
        ul={k: np.asarray(v) for k, v in ul.items()},
        dl={k: np.asarray(v) for k, v in dl.items()},
        ul_draws=_draws(key_ul, sc, N_MC, p),
        dl_draws=_draws(key_dl, sc, N_MC, p),
    )


@pytest.mark.parametrize("lsfd", [False, True])
def test_uplink_mr_closed_form_vs_monte_carlo(corr_reuse, mc_vs_cf, lsfd):
    from cfmimo_jax.se import uplink_se_mr_closed_form

    sc = corr_reuse
    d = mc_vs_cf
    assert set(d["ul"]) == set(UPLINK_SCHEMES) | set(UPLINK_ALIASES)
    mc = d["ul"]["mr_dist_lsfd" if lsfd else "mr_dist"]
    H, Hhat = d["ul_draws"]
    V = Hhat * sc.D[None, :, :, None]  # distributed MR
    est, err = ref.distributed_uplink_se_jackknife(H, V, sc.D, d["p"], sc.tau_p, sc.tau_c, lsfd)
    np.testing.assert_allclose(mc, est, rtol=RTOL, atol=ATOL)
    cf = np.asarray(
        uplink_se_mr_closed_form(sc.R, d["B"], sc.pilot, sc.D, d["p"], sc.tau_p, sc.tau_c, lsfd)
    )
    assert np.all(np.abs(mc - cf) < N_SIGMA * err), (mc, cf, err)


def test_downlink_mr_closed_form_vs_monte_carlo(corr_reuse, mc_vs_cf):
    from cfmimo_jax.se import downlink_se_mr_closed_form

    sc = corr_reuse
    d = mc_vs_cf
    assert set(d["dl"]) == set(DOWNLINK_SCHEMES) | set(DOWNLINK_ALIASES)
    mc = d["dl"]["mr_dist"]
    H, Hhat = d["dl_draws"]
    V = Hhat * sc.D[None, :, :, None]
    est, err = ref.distributed_downlink_se_jackknife(H, V, sc.D, sc.rho, sc.tau_p, sc.tau_c)
    np.testing.assert_allclose(mc, est, rtol=RTOL, atol=ATOL)
    cf = np.asarray(
        downlink_se_mr_closed_form(
            sc.R, d["B"], sc.pilot, sc.D, sc.rho, sc.tau_p, sc.tau_c, p=d["p"]
        )
    )
    assert np.all(np.abs(mc - cf) < N_SIGMA * err), (mc, cf, err)
