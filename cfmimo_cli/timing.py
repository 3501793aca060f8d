"""Wall-clock timing of a jitted function (latency figures of ``reproduce`` and ``bench/``)."""

from __future__ import annotations

import statistics
from time import perf_counter


def time_jitted(f, arg, repeats: int) -> tuple[float, float]:
    """``(median_s, compile_s)`` of ``jax.jit(f)(arg)``: compiled ahead of time (``compile_s``),
    one warm-up call, then the median over ``repeats`` calls, each timed to
    ``block_until_ready``."""
    import jax

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    t0 = perf_counter()
    c = jax.jit(f).lower(arg).compile()
    compile_s = perf_counter() - t0
    jax.block_until_ready(c(arg))
    ts = []
    for _ in range(repeats):
        t0 = perf_counter()
        jax.block_until_ready(c(arg))
        ts.append(perf_counter() - t0)
    return statistics.median(ts), compile_s
