"""Hyper permutation network: permutation-invariant input and permutation-equivariant output
modules over the entities of an observation.

[MOBILE-AP] (Liu et al., "Mobile Cell-Free Massive MIMO with Multi-Agent Reinforcement
Learning: A Scalable Framework") section III-C/D, eqs. (34)-(41) and Algorithm 1, after Hao et
al. (ICLR 2023), "Boosting Multiagent Reinforcement Learning via Permutation Invariant and
Permutation Equivariant Networks" (HPN). An agent's observation ``o`` is split into ``K`` entity
rows ``e_k[f_r]`` (one per UE: ``O^r = [o^1, ..., o^K]^T``, eq. (35)) and the agent's own
features ``x_own[f_o]``. For a permutation ``g`` of the entities:

* input module ``A_p`` (eq. (40)): ``p = sum_k M_in(e_k)^T e_k + W_own x_own``, the embedding
  matrix of each entity generated from the entity itself by a hypernetwork ``M_in``: the sum
  does not depend on the order of the rows, ``A_p(g O^r) = A_p(O^r)`` (permutation invariant,
  Remark 4). ``n_heads`` hypernetworks (one output block each, Table II: 8 heads) generate
  ``[f_r, d / n_heads]`` matrices whose outputs are concatenated and merged by a linear layer;
* output module ``D_p`` (eq. (41)): ``y_k = mean_h M_out^h(e_k)^T [z; 1]`` with ``z`` a
  projection of the backbone's output ``b``: the output weights of entity ``k`` are generated
  from ``e_k``, so ``D_p(g O^r, b) = g D_p(O^r, b)`` (permutation equivariant, eq. (32)).

Any permutation-invariant backbone between them (a GRU, a GNN over the agents) keeps the
invariance of the PI head ``C_p`` and the equivariance of ``D_p`` (Theorem 2, Corollary 2,
Theorem 3). ``entity_mask`` (``[..., K]``, optional) drops padded entities from the sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import MLP


class HyperEntityEmbedding(nnx.Module):
    """``A_p`` of eq. (40): ``e[..., K, f_r]``, ``own[..., f_o]`` -> ``p[..., d]`` (ReLU).

    Per head ``h``: ``W_k^h = M_in^h(e_k)`` (``[f_r, d / n_heads]``, a ``hyper_hidden``-wide
    ReLU MLP of ``e_k``), ``p^h = sum_k valid_k (W_k^h)^T e_k``; then
    ``p = relu(W_merge [p^1; ...; p^H] + W_own x_own + b)``. Invariant to permutations of the
    ``K`` rows (with their mask).
    """

    def __init__(
        self,
        entity_features: int,
        own_features: int,
        d: int,
        n_heads: int,
        hyper_hidden: int,
        *,
        rngs: nnx.Rngs,
    ):
        if d % n_heads:
            raise ValueError(f"embed_dim={d} must be a multiple of hpn_heads={n_heads}")
        self.f_r = int(entity_features)
        self.f_o = int(own_features)
        self.d = int(d)
        self.n_heads = int(n_heads)
        self.dh = self.d // self.n_heads
        # the generated matrices start at the scale of a LeCun-initialised [f_r, dh] layer
        self.hyper = MLP(
            self.f_r,
            [hyper_hidden],
            self.n_heads * self.f_r * self.dh,
            out_scale=1.0 / self.f_r**0.5,
            rngs=rngs,
        )
        self.merge = nnx.Linear(self.d, self.d, rngs=rngs)
        self.own = nnx.Linear(self.f_o, self.d, rngs=rngs) if self.f_o else None

    def __call__(self, e, own=None, entity_mask=None):
        lead = e.shape[:-1]  # [..., K]
        w = self.hyper(e).reshape(lead + (self.n_heads, self.f_r, self.dh))
        if entity_mask is not None:
            e = jnp.where(entity_mask[..., None], e, 0.0)
        p = jnp.einsum("...kf,...khfd->...hd", e, w)  # the sum over entities (PI)
        p = self.merge(p.reshape(p.shape[:-2] + (self.d,)))
        if self.own is not None:
            p = p + self.own(own)
        return jax.nn.relu(p)


class HyperEquivariantHead(nnx.Module):
    """``D_p`` of eq. (41): ``e[..., K, f_r]``, ``b[..., d_b]`` -> ``y[..., K]``.

    ``z = W_z b`` (``[d_z]``); per head ``h`` the hypernetwork ``M_out^h(e_k)`` generates the
    output weights ``w_k^h[d_z]`` and bias ``c_k^h`` of entity ``k``;
    ``y_k = mean_h (w_k^h . z + c_k^h)``. Equivariant: permuting the rows of ``e`` permutes
    ``y`` the same way.
    """

    def __init__(
        self,
        entity_features: int,
        in_features: int,
        d_z: int,
        n_heads: int,
        hyper_hidden: int,
        *,
        out_scale: float = 0.1,
        rngs: nnx.Rngs,
    ):
        self.n_heads = int(n_heads)
        self.d_z = int(d_z)
        self.z = nnx.Linear(int(in_features), self.d_z, rngs=rngs)
        self.hyper = MLP(
            int(entity_features),
            [hyper_hidden],
            self.n_heads * (self.d_z + 1),
            out_scale=out_scale / self.d_z**0.5,
            rngs=rngs,
        )

    def __call__(self, e, b):
        z = self.z(b)  # [..., d_z]
        w = self.hyper(e).reshape(e.shape[:-1] + (self.n_heads, self.d_z + 1))
        y = jnp.einsum("...khd,...d->...kh", w[..., : self.d_z], z) + w[..., self.d_z]
        return jnp.mean(y, axis=-1)


def split_entities(obs, layout):
    """The entity rows and own features of flat observations: ``obs[..., F]`` ->
    ``(e[..., K, f_r], own[..., f_o])`` by the index arrays ``layout["entity"]`` (``[K, f_r]``)
    and ``layout["own"]`` (``[f_o]``) an environment declares as ``obs_layout``."""
    e = obs[..., jnp.asarray(layout["entity"])]
    own = obs[..., jnp.asarray(layout["own"])]
    return e, own
