"""cfmimo-jax: a JAX-accelerated, differentiable cell-free massive MIMO simulator.

Kernels are plain functions over arrays (one network setup each; batch with ``jax.vmap``):
:mod:`~cfmimo_jax.setup`, :mod:`~cfmimo_jax.estimation`, :mod:`~cfmimo_jax.processing`,
:mod:`~cfmimo_jax.se`, :mod:`~cfmimo_jax.power`. Conventions: ``docs/kernels.md``.
"""

__version__ = "0.1.0"
