"""Multi-Agent Transformer (MAT) with cost encoders: the MAT-Lagr baseline of APS-GNN.

MAT (Wen et al., "Multi-Agent Reinforcement Learning is a Sequence Modeling Problem", NeurIPS
2022) treats the agents as a sequence: an encoder of self-attention blocks turns all agents'
observations into representations ``x_{1:A}`` and per-agent values, and a decoder generates the
actions autoregressively, agent ``i`` attending to the actions of agents ``1..i-1`` (causal
self-attention) and to every representation (cross-attention)::

    pi(a | o) = prod_i pi_i(a_i | x_{1:A}, a_{1:i-1})              (MAT eq. (4)-(5))

APS-GNN ("Graph-Neural Multi-Agent Coordination for Distributed Access-Point Selection in
Cell-Free Massive MIMO", section VI-B) adds a second encoder of the same shape for the cost
values of the Lagrangian (MAT-Lagr); here one encoder per value head (``n_value_heads``: 1 =
reward, 2 = reward + cost), the first one feeding the decoder.

Blocks (post-norm, as MAT; ``d = hidden``, ``GELU`` activations; unlike MAT's code there is
no LayerNorm of the raw observation: ours are already normalised, and a per-agent LayerNorm
over a short history of one quantity would erase its level, e.g. the channel strength)::

    encoder:  x = LN(GELU(W_e o_i))
              x = LN(x + MHA(x, x));  x = LN(x + MLP(x))            (n_blocks times)
              V_i = MLP(x_i)
    decoder:  y_0 = LN(GELU(W_a onehot(start))),  y_i = LN(GELU(W_a onehot(a_{i-1})))
              u = LN(y + MHA_causal(q=y, k=y, v=y))
              y = LN(x + MHA_causal(q=x, k=u, v=u)); y = LN(y + MLP(y))   (n_blocks times)
              logits_i = MLP(y_i)

(MAT's decoder block: the second attention's queries are the agents' own encoder
representations ``x_i``, its keys and values the causal action features, so agent ``i`` sees
its own observation directly and the actions of agents ``< i`` through attention.)

``__call__(obs, actions)`` evaluates all ``A`` conditionals in one pass with a causal mask
(teacher forcing, for PPO's ratios and imitation); ``sample(obs, key)`` generates the actions
with a ``lax.scan`` over agents and key/value caches of both causal attentions (O(A d) work
per agent), which is the per-decision cost that APS-GNN measures (its Fig. 7). Both give the
same conditionals for the same actions (``tests/test_transformer.py``). The attention
primitive (``attend``, ``MultiHeadAttention``) comes from ``algorithms.layers``.
"""

from __future__ import annotations

from collections.abc import Sequence

import distrax
import jax
import jax.numpy as jnp
from flax import nnx

from .layers import MLP, MultiHeadAttention, attend  # attend, MultiHeadAttention re-exported

__all__ = ["attend", "MultiHeadAttention", "MultiAgentTransformer"]


class _EncoderBlock(nnx.Module):
    def __init__(self, d, n_heads, *, rngs):
        self.attn = MultiHeadAttention(d, n_heads, rngs=rngs)
        self.ln1 = nnx.LayerNorm(d, rngs=rngs)
        self.mlp = MLP(d, (d,), d, activation=nnx.gelu, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d, rngs=rngs)

    def __call__(self, x, mask):
        x = self.ln1(x + self.attn(x, x, mask))
        return self.ln2(x + self.mlp(x))


class _DecoderBlock(nnx.Module):
    def __init__(self, d, n_heads, *, rngs):
        self.self_attn = MultiHeadAttention(d, n_heads, rngs=rngs)
        self.ln1 = nnx.LayerNorm(d, rngs=rngs)
        self.cross_attn = MultiHeadAttention(d, n_heads, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d, rngs=rngs)
        self.mlp = MLP(d, (d,), d, activation=nnx.gelu, rngs=rngs)
        self.ln3 = nnx.LayerNorm(d, rngs=rngs)

    def mid(self, y, self_out):
        """``x = LN(y + W_o self_out)`` after the causal self-attention output ``self_out``."""
        return self.ln1(y + self.self_attn.o(self_out))

    def finish(self, rep, cross_out):
        """``z = LN(rep + W_o cross_out)``, ``LN(z + MLP(z))`` after the attention of the
        agents' representations over the causal action features."""
        z = self.ln2(rep + self.cross_attn.o(cross_out))
        return self.ln3(z + self.mlp(z))


class _ObsEncoder(nnx.Module):
    def __init__(self, obs_features, d, n_blocks, n_heads, *, rngs):
        self.embed = nnx.Linear(obs_features, d, rngs=rngs)
        self.ln_emb = nnx.LayerNorm(d, rngs=rngs)
        self.blocks = nnx.List([_EncoderBlock(d, n_heads, rngs=rngs) for _ in range(n_blocks)])
        self.value = MLP(d, (d,), 1, activation=nnx.gelu, rngs=rngs)

    def __call__(self, obs, mask, ids):
        x = self.ln_emb(nnx.gelu(self.embed(obs)) + ids)
        for blk in self.blocks:  # a loop over layers, not over data
            x = blk(x, mask)
        return x, self.value(x)


class MultiAgentTransformer(nnx.Module):
    """MAT actor-critic over ``A`` agents (see the module docstring for the equations).

    ``obs[..., A, T, F]`` or ``obs[..., A, F']`` (flattened to ``obs_features = T F`` per agent).
    ``__call__(obs, actions[..., A]) -> (logits[..., A, n_actions], values[..., A,
    n_value_heads])`` (teacher forcing: ``logits_i`` conditions on ``actions[..., :i]``);
    ``values(obs) -> [..., A, n_value_heads]``; ``sample(obs, key, greedy=False) ->
    (actions[..., A] int32, logp[..., A], values)``. ``node_mask[A]`` (optional) removes agents
    from the encoders' attention keys; other graph arguments are ignored (the transformer
    attends over all agents).

    Agent identity: the observations alone do not say which agents share an AP or a UE, so
    with ``n_groups = (n_1, ..., n_G)`` every call takes ``group_ids[A, G]`` (agent ``i`` is in
    group ``group_ids[i, g]`` of grouping ``g``, e.g. its AP and its UE) and learned embeddings
    ``sum_g E_g[group_ids[i, g]]`` are added to agent ``i``'s observation embedding (encoders)
    and to the decoder token that decides agent ``i`` (MAT's position information, factorised;
    the trainer derives the groups from the agent graph's edge types).
    """

    def __init__(
        self,
        obs_features: int,
        n_actions: int,
        *,
        hidden: int = 64,
        n_blocks: int = 1,
        n_heads: int = 1,
        n_value_heads: int = 1,
        n_groups: Sequence[int] = (),
        rngs: nnx.Rngs,
    ):
        if any(int(n) < 1 for n in n_groups):
            raise ValueError(f"n_groups must hold positive group counts, got {n_groups}")
        if min(obs_features, n_actions, hidden, n_blocks, n_heads, n_value_heads) < 1:
            raise ValueError(
                "obs_features, n_actions, hidden, n_blocks, n_heads and n_value_heads must be >= 1"
            )
        d = int(hidden)
        self.obs_features = int(obs_features)
        self.n_actions = int(n_actions)
        self.hidden = d
        self.n_heads = int(n_heads)
        self.n_value_heads = int(n_value_heads)
        self.encoders = nnx.List(
            [
                _ObsEncoder(self.obs_features, d, n_blocks, n_heads, rngs=rngs)
                for _ in range(self.n_value_heads)
            ]
        )
        self.action_embed = nnx.Linear(self.n_actions + 1, d, use_bias=False, rngs=rngs)
        self.ln_act = nnx.LayerNorm(d, rngs=rngs)
        self.blocks = nnx.List([_DecoderBlock(d, n_heads, rngs=rngs) for _ in range(n_blocks)])
        self.head = MLP(d, (d,), self.n_actions, activation=nnx.gelu, out_scale=0.01, rngs=rngs)
        self.n_groups = tuple(int(n) for n in n_groups)
        self.enc_ids = nnx.List([nnx.Embed(n, d, rngs=rngs) for n in self.n_groups])
        self.dec_ids = nnx.List([nnx.Embed(n, d, rngs=rngs) for n in self.n_groups])

    # ---- pieces -----------------------------------------------------------------------------

    def _flat(self, obs):
        obs = jnp.asarray(obs)
        if not jnp.issubdtype(obs.dtype, jnp.floating):
            obs = obs.astype(jnp.float32)
        if obs.ndim >= 3 and obs.shape[-2] * obs.shape[-1] == self.obs_features:
            obs = obs.reshape(obs.shape[:-2] + (self.obs_features,))
        if obs.ndim < 2 or obs.shape[-1] != self.obs_features:
            raise ValueError(
                f"MultiAgentTransformer expects obs[..., A, {self.obs_features}] (or "
                f"[..., A, T, F] with T F = {self.obs_features}), got shape {obs.shape}"
            )
        return obs

    def _mask(self, n_agents, node_mask):
        if node_mask is None:
            return None
        m = jnp.asarray(node_mask, bool)
        if m.shape != (n_agents,):
            raise ValueError(f"node_mask must have shape ({n_agents},), got {m.shape}")
        return m[None, :]  # [1, A]: keys only

    def _ids(self, tables, group_ids, n_agents):
        """``sum_g E_g[group_ids[:, g]]``: ``[A, d]`` (zero without groups)."""
        if not self.n_groups:
            if group_ids is not None:
                raise ValueError("group_ids given to a transformer built without n_groups")
            return jnp.zeros((n_agents, self.hidden), jnp.float32)
        if group_ids is None:
            raise ValueError(f"group_ids[{n_agents}, {len(self.n_groups)}] are required")
        group_ids = jnp.asarray(group_ids, jnp.int32)
        if group_ids.shape != (n_agents, len(self.n_groups)):
            raise ValueError(
                f"group_ids must have shape ({n_agents}, {len(self.n_groups)}), got "
                f"{group_ids.shape}"
            )
        return sum(t(group_ids[:, g]) for g, t in enumerate(tables))

    def encode(self, obs, node_mask=None, group_ids=None):
        """``-> (rep[..., A, d], values[..., A, n_value_heads])``."""
        obs = self._flat(obs)
        mask = self._mask(obs.shape[-2], node_mask)
        ids = self._ids(self.enc_ids, group_ids, obs.shape[-2]).astype(obs.dtype)
        outs = [enc(obs, mask, ids) for enc in self.encoders]  # one encoder per value head
        return outs[0][0], jnp.concatenate([v for _, v in outs], axis=-1)

    def _tokens(self, onehot, ids):
        return self.ln_act(nnx.gelu(self.action_embed(onehot)) + ids)

    # ---- teacher forcing --------------------------------------------------------------------

    def __call__(
        self,
        obs,
        actions,
        senders=None,
        receivers=None,
        edge_type=None,
        edge_mask=None,
        node_mask=None,
        group_ids=None,
    ):
        rep, values = self.encode(obs, node_mask, group_ids)
        n_agents = rep.shape[-2]
        actions = jnp.asarray(actions)
        if actions.shape != rep.shape[:-1]:
            raise ValueError(f"actions must have shape {rep.shape[:-1]}, got {actions.shape}")
        prev = jnp.concatenate(
            [
                jnp.full(actions.shape[:-1] + (1,), self.n_actions, jnp.int32),
                actions[..., :-1].astype(jnp.int32),
            ],
            axis=-1,
        )
        dec_ids = self._ids(self.dec_ids, group_ids, n_agents).astype(rep.dtype)
        y = self._tokens(jax.nn.one_hot(prev, self.n_actions + 1, dtype=rep.dtype), dec_ids)
        causal = jnp.tril(jnp.ones((n_agents, n_agents), bool))
        for blk in self.blocks:  # layers
            a, c = blk.self_attn, blk.cross_attn
            u = blk.mid(y, attend(a.q(y), a.k(y), a.v(y), causal, a.n_heads))
            y = blk.finish(rep, attend(c.q(rep), c.k(u), c.v(u), causal, c.n_heads))
        return self.head(y), values

    def values(self, obs, node_mask=None, group_ids=None):
        return self.encode(obs, node_mask, group_ids)[1]

    # ---- autoregressive generation ------------------------------------------------------------

    def sample(self, obs, key, greedy: bool = False, node_mask=None, group_ids=None):
        """Generate the joint action agent by agent (``lax.scan`` over agents, key/value cache).

        ``-> (actions[..., A] int32, logp[..., A], values[..., A, n_value_heads])``; ``logp``
        are the conditionals ``log pi_i(a_i | x, a_{<i})`` (equal to ``__call__``'s for these
        actions). ``greedy=True``: ``a_i = argmax`` (``key`` unused).
        """
        rep, values = self.encode(obs, node_mask, group_ids)
        lead, n_agents, d = rep.shape[:-2], rep.shape[-2], rep.shape[-1]
        blocks = list(self.blocks)
        zeros = jnp.zeros((2 * len(blocks),) + lead + (n_agents, d), rep.dtype)
        start = jnp.full(lead, self.n_actions, jnp.int32)
        pos = jnp.arange(n_agents)
        cross_q = [blk.cross_attn.q(rep) for blk in blocks]  # once per decision
        dec_ids = self._ids(self.dec_ids, group_ids, n_agents).astype(rep.dtype)

        def step(carry, xs):
            prev, cache_k, cache_v = carry
            i, k_i = xs
            y = self._tokens(jax.nn.one_hot(prev, self.n_actions + 1, dtype=rep.dtype), dec_ids[i])
            y = y[..., None, :]  # [..., 1, d]
            new_k, new_v = [], []
            seen = (pos <= i)[None, :]
            rep_i = jax.lax.dynamic_slice_in_dim(rep, i, 1, axis=-2)  # [..., 1, d]
            for b, blk in enumerate(blocks):  # layers; caches 2b (self) and 2b+1 (cross)
                a, c = blk.self_attn, blk.cross_attn
                ck = jax.lax.dynamic_update_slice_in_dim(cache_k[2 * b], a.k(y), i, axis=-2)
                cv = jax.lax.dynamic_update_slice_in_dim(cache_v[2 * b], a.v(y), i, axis=-2)
                u = blk.mid(y, attend(a.q(y), ck, cv, seen, a.n_heads))
                uk = jax.lax.dynamic_update_slice_in_dim(cache_k[2 * b + 1], c.k(u), i, axis=-2)
                uv = jax.lax.dynamic_update_slice_in_dim(cache_v[2 * b + 1], c.v(u), i, axis=-2)
                q_i = jax.lax.dynamic_slice_in_dim(cross_q[b], i, 1, axis=-2)
                y = blk.finish(rep_i, attend(q_i, uk, uv, seen, c.n_heads))
                new_k += [ck, uk]
                new_v += [cv, uv]
            logits = self.head(y[..., 0, :])
            if greedy:
                act = jnp.argmax(logits, -1).astype(jnp.int32)
            else:
                act = jax.random.categorical(k_i, logits).astype(jnp.int32)
            logp = distrax.Categorical(logits=logits).log_prob(act)
            return (act, jnp.stack(new_k), jnp.stack(new_v)), (act, logp)

        if key is None:
            if not greedy:
                raise ValueError("sample needs a PRNG key unless greedy=True")
            key = jax.random.PRNGKey(0)
        keys = jax.random.split(key, n_agents)
        _, (acts, logps) = jax.lax.scan(step, (start, zeros, zeros), (pos, keys))
        return jnp.moveaxis(acts, 0, -1), jnp.moveaxis(logps, 0, -1), values
