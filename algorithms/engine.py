"""The chunked training loop every trainer shares (on-policy and off-policy alike).

``update_chunk(step, state, n)`` runs ``n`` updates ``step(state, None) -> (state, metrics)``
inside one ``lax.scan`` (metrics stacked ``[n]``); ``train_all(state, update, n_chunks)`` runs
``n_chunks`` such chunks in a second ``lax.scan`` and flattens the metrics to
``[n_chunks * n]``, so a whole training run is one jittable function of the initial state and
equals calling ``update`` chunk by chunk from Python (the command line's path).
"""

from __future__ import annotations

import jax


def update_chunk(step, state, n: int):
    """``n`` updates ``step(state, None) -> (state, metrics)``: ``-> (state, metrics[n])``."""
    return jax.lax.scan(step, state, None, length=n)


def train_all(state, update, n_chunks: int):
    """``n_chunks`` calls of ``update(state) -> (state, metrics[chunk])`` in one ``lax.scan``:
    ``-> (state, metrics[n_chunks * chunk])``."""
    state, metrics = jax.lax.scan(lambda s, _: update(s), state, None, length=n_chunks)
    return state, jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), metrics)
