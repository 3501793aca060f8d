"""cfmimo_jax.fastmath against NumPy float64: accuracy, symmetry, gradients, dtypes, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfmimo_jax.fastmath import db_to_amplitude, sincos

F32 = np.float32
_sincos = jax.jit(sincos)


def _grid():
    rng = np.random.default_rng(0)
    half_pi = np.pi / 2
    n = np.arange(-5215, 5216)  # every quadrant boundary n pi / 2 with |n pi / 2| <= 8192
    near = (n[:, None] * half_pi + np.array([-1e-3, -1e-6, 0.0, 1e-6, 1e-3])).ravel()
    pts = np.concatenate(
        [
            np.linspace(-8192, 8192, 400_001),
            np.linspace(-7, 7, 100_001),
            near,
            n * half_pi / 2,  # octant midpoints, where |r| = pi / 4
            rng.uniform(-60, 60, 100_000),
            [0.0, -0.0, 1e-30, -1e-30, 1e-8],
        ]
    )
    return pts.astype(F32)


def test_float32_accuracy_against_float64():
    x = _grid()
    with jax.enable_x64(False):
        s, c = _sincos(jnp.asarray(x))
        assert s.dtype == jnp.float32 and c.dtype == jnp.float32 and s.shape == x.shape
    xd = x.astype(np.float64)  # the float32 argument, exactly
    err_s = np.abs(np.asarray(s, np.float64) - np.sin(xd))
    err_c = np.abs(np.asarray(c, np.float64) - np.cos(xd))
    assert err_s.max() < 2e-7, (err_s.max(), x[err_s.argmax()])
    assert err_c.max() < 2e-7, (err_c.max(), x[err_c.argmax()])
    pyth = np.asarray(s, np.float64) ** 2 + np.asarray(c, np.float64) ** 2
    assert np.abs(pyth - 1.0).max() < 5e-7
    # exact at zero
    assert np.all(np.asarray(s)[x == 0] == 0.0) and np.all(np.asarray(c)[x == 0] == 1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-8192, 8192, width=32), min_size=1, max_size=32))
def test_odd_and_even_exactly(xs):
    x = np.asarray(xs, F32)
    with jax.enable_x64(False):
        s, c = _sincos(jnp.asarray(x))
        s_neg, c_neg = _sincos(jnp.asarray(-x))
    np.testing.assert_array_equal(np.asarray(s_neg), -np.asarray(s))
    np.testing.assert_array_equal(np.asarray(c_neg), np.asarray(c))


def test_gradients_are_cos_and_minus_sin():
    x = np.concatenate([np.linspace(-50, 50, 2001), [0.0, np.pi / 4, np.pi / 2]]).astype(F32)
    with jax.enable_x64(False):
        ds = jax.jit(jax.vmap(jax.grad(lambda v: sincos(v)[0])))(jnp.asarray(x))
        dc = jax.jit(jax.vmap(jax.grad(lambda v: sincos(v)[1])))(jnp.asarray(x))
    xd = x.astype(np.float64)
    np.testing.assert_allclose(np.asarray(ds, np.float64), np.cos(xd), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(dc, np.float64), -np.sin(xd), rtol=0, atol=1e-6)


def test_float64_is_jnp_and_shapes_kept():
    x = np.random.default_rng(1).normal(size=(3, 4, 5)) * 100
    s, c = sincos(jnp.asarray(x))  # x64 is on in this suite
    assert s.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(s), np.asarray(jnp.sin(x)))
    np.testing.assert_array_equal(np.asarray(c), np.asarray(jnp.cos(x)))
    with jax.enable_x64(False):
        s0, c0 = sincos(F32(0.5))
        assert s0.shape == () and abs(float(s0) - np.sin(0.5)) < 1e-7
        # vmap over a leading axis equals the whole-array call
        xv = jnp.asarray(x.astype(F32))
        sv, cv = jax.vmap(sincos)(xv)
        sw, cw = sincos(xv)
        np.testing.assert_array_equal(np.asarray(sv), np.asarray(sw))
        np.testing.assert_array_equal(np.asarray(cv), np.asarray(cw))


@pytest.mark.parametrize("bad", [np.arange(3), np.ones(2, np.complex64), np.array([True])])
def test_non_real_float_input_raises(bad):
    with pytest.raises(TypeError, match="real floating-point"):
        sincos(bad)


def test_db_to_amplitude():
    x = np.linspace(-250, 250, 100_001)
    with jax.enable_x64(False):
        a32 = np.asarray(jax.jit(db_to_amplitude)(jnp.asarray(x.astype(F32))), np.float64)
    ref = 10.0 ** (x.astype(F32).astype(np.float64) / 20.0)
    np.testing.assert_allclose(a32, ref, rtol=2e-6, atol=0)
    a64 = np.asarray(db_to_amplitude(jnp.asarray(x)))
    np.testing.assert_allclose(a64, 10.0 ** (x / 20.0), rtol=1e-13, atol=0)
