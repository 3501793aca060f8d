"""Host-side input checks, run before any compute.

Every check is skipped for abstract values (inside ``jit``/``vmap``/``grad`` tracing), where the
kernels assume valid inputs as documented in their docstrings. Errors are ``ValueError`` naming
the offending parameter.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np


def concrete(x):
    """Return ``x`` as a NumPy array, or ``None`` if it is a tracer (abstract)."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def finite(name: str, x, *, nonneg: bool = False, positive: bool = False) -> None:
    a = concrete(x)
    if a is None:
        return
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if nonneg and np.any(np.real(a) < 0):
        raise ValueError(f"{name} must be non-negative")
    if positive and np.any(np.real(a) <= 0):
        raise ValueError(f"{name} must be positive")


def shape(name: str, x, expected: tuple, *, allow_scalar: bool = False) -> None:
    """Check ``x.shape == expected``; ``None`` entries in ``expected`` match any size."""
    s = np.shape(x)
    if allow_scalar and s == ():
        return
    ok = len(s) == len(expected) and all(
        e is None or e == d for e, d in zip(expected, s, strict=False)
    )
    if not ok:
        want = tuple("?" if e is None else e for e in expected)
        raise ValueError(f"{name} must have shape {want}, got {s}")


def correlation(name: str, R, *, rtol: float = 1e-4) -> None:
    """``R[..., N, N]``: finite, Hermitian and positive semi-definite (when concrete)."""
    if np.ndim(R) < 2 or np.shape(R)[-1] != np.shape(R)[-2]:
        raise ValueError(f"{name} must have shape [..., N, N], got {np.shape(R)}")
    a = concrete(R)
    if a is None:
        return
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    a = a.astype(np.complex128)
    scale = np.maximum(np.max(np.abs(a), axis=(-2, -1), keepdims=True), 1e-300)
    if np.any(np.abs(a - np.conj(np.swapaxes(a, -1, -2))) > rtol * scale):
        raise ValueError(f"{name} must be Hermitian")
    herm = 0.5 * (a + np.conj(np.swapaxes(a, -1, -2)))
    eig = np.linalg.eigvalsh(herm)
    if np.any(eig < -rtol * scale[..., 0]):
        raise ValueError(f"{name} must be positive semi-definite")


def pilots(name: str, pilot, K: int, tau_p: int) -> None:
    shape(name, pilot, (K,))
    a = concrete(pilot)
    if a is None:
        return
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array")
    if np.any(a < 0) or np.any(a >= tau_p):
        raise ValueError(f"{name} entries must lie in [0, tau_p={tau_p})")


def sizes(tau_p, tau_c=None) -> None:
    """``tau_p >= 1`` and, if given, ``tau_c > tau_p`` (at least one sample left for data)."""
    positive_int("tau_p", tau_p)
    if tau_c is not None:
        positive_int("tau_c", tau_c)
        if tau_p > tau_c:
            raise ValueError(f"tau_p={tau_p} must not exceed tau_c={tau_c}")
        if tau_p == tau_c:
            raise ValueError(f"tau_p={tau_p} equals tau_c: no samples left for data")


def serving(name: str, D, L: int, K: int) -> None:
    shape(name, D, (L, K))
    a = concrete(D)
    if a is None:
        return
    if a.dtype != np.bool_ and not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{name} must be boolean (or 0/1)")


def is_number(v) -> bool:
    """Whether ``v`` is a real number given in a configuration (Python or NumPy; not a bool)."""
    import numbers

    return not isinstance(v, bool) and isinstance(v, numbers.Real)


def positive_number(name: str, v) -> float:
    """``float(v)`` for a finite positive real number, else ``ValueError`` naming ``name``."""
    import math

    if not is_number(v) or not math.isfinite(v) or not v > 0:
        raise ValueError(f"{name} must be a positive number, got {v!r}")
    return float(v)
