"""How well can an MLP critic learn the mobile-AP reward's dependence on the joint action?

A diagnosis of the MADDPG-family learners on ``mobile_ap`` (docs/results/mobile_ap.md): draw
drops (``env.reset``) and uniformly random joint actions ``u[M, 2 + K + N]`` in ``[-1, 1]``
(the flat action MADDPG stores), take the slot's sum SE of ``env.transition`` and its exact
gradient in ``u`` (the scenario is differentiable), fit a critic of MADDPG's size (MLP 128-128,
Adam 1e-3, batch 256, ``--steps`` steps) by regression of the sum SE on (features, u), and
report on held-out drops the R^2 and the correlation between the critic's action gradient
``dQ/du`` and the true ``dSE/du`` (Pearson, per held-out sample over the AP x entry values of
one action leaf, then averaged). The actor of MADDPG climbs ``dQ/du``: a correlation near 0
means it has nothing to climb.

Features: ``gains`` = the scenario's ``global_state`` (positions, normalised large-scale gains,
previous SEs); ``coupling`` = positions, the signal and interference terms of book Cor. 6.3 at
full power in dB / 10 (``P tr(B_mk)`` and ``P tr(B_mi R_mk) / tr(B_mi)``, the terms of the SINR
the critic has to combine with the powers) and the previous SEs. ``+baseline``: the target is
the sum SE minus the static-fractional sum SE of the same drop (a state-only baseline, so only
the action's effect is left to fit; R^2 is then of that remainder).

    python scripts/mobile_ap_critic_fit.py --train 20000 --actions-per-drop 1
    python scripts/mobile_ap_critic_fit.py --train 100000 --actions-per-drop 20
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from algorithms.offpolicy import AgentMLP
from cfmimo_jax import envs
from cfmimo_jax.envs import spaces


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=20000, help="training samples")
    ap.add_argument("--test", type=int, default=2000, help="held-out samples (new drops)")
    ap.add_argument("--actions-per-drop", type=int, default=1, help="random actions per drop")
    ap.add_argument("--steps", type=int, default=20000, help="critic gradient steps")
    args = ap.parse_args()

    env, params = envs.make("mobile_ap", {})
    M, N = env.M, env.N
    D = spaces.flat_dim(env.action_space)  # flat order: antenna (N), move (2), power (K)
    leaves = {"antenna": slice(0, N), "move": slice(N, N + 2), "power": slice(N + 2, D)}

    def coupling(state):
        F = jnp.real(jnp.trace(state.B, axis1=-2, axis2=-1))  # tr(B_mk) [M, K]
        s = jnp.real(jnp.einsum("lkab,liba->lki", state.B, state.R))  # tr(B_mk R_mi)
        snr = jnp.log10(env.p_ap * F)
        inr = jnp.log10(env.p_ap * s / F[..., None])
        pos = jnp.concatenate([state.ap_pos.reshape(-1), state.ue_pos.reshape(-1)]) / env.side
        return jnp.concatenate([pos, snr.reshape(-1), inr.reshape(-1), state.se / 2.0])

    def sample(keys):
        _, st = env.reset(keys[0], params)
        u = jax.random.uniform(keys[1], (M, D), minval=-1.0, maxval=1.0)

        def sum_se(u):
            return env.transition(st, spaces.unflatten(env.action_space, u), params)[2]["sum_se"]

        y, g = jax.value_and_grad(sum_se)(u)
        base = env.transition(st, env._fractional_actions(st), params)[2]["sum_se"]
        return (env.global_state(st), coupling(st), base), u, y, g

    n_tr, n_te, aps = args.train, args.test, args.actions_per_drop
    n = n_tr + n_te
    drop = jax.random.split(jax.random.PRNGKey(0), n_tr // aps + 1)[jnp.arange(n_tr) // aps]
    drop = jnp.concatenate([drop, jax.random.split(jax.random.PRNGKey(99), n_te)])
    keys = jnp.stack([drop, jax.random.split(jax.random.PRNGKey(1), n)], 1)
    t0 = time.time()
    feats, U, Y, G = jax.jit(lambda k: jax.lax.map(sample, k, batch_size=500))(keys)
    print(
        f"{n} samples ({n_tr} train on {n_tr // aps} drops, {n_te} held-out drops) in "
        f"{time.time() - t0:.0f} s; sum SE var {float(jnp.var(Y)):.3f}, "
        f"after the baseline {float(jnp.var(Y - feats[2])):.3f}"
    )

    print("| features | inputs | train MSE | held-out R^2 | grad corr power | move | antenna |")
    print("|---|---|---|---|---|---|---|")
    for kind, base in (("gains", 0), ("coupling", 0), ("gains", 1), ("coupling", 1)):
        X = feats[0] if kind == "gains" else feats[1]
        y = Y - feats[2] if base else Y
        mse, r2, c = fit_and_score(X, U.reshape(n, -1), y, G, n_tr, args.steps, (M, D), leaves)
        name = kind + (" + baseline" if base else "")
        print(
            f"| {name} | {X.shape[-1] + M * D} | {mse:.3f} | {r2:.3f} | "
            f"{c['power']:.3f} | {c['move']:.3f} | {c['antenna']:.3f} |"
        )


def _corr(a, b):
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    return jnp.sum(a * b, -1) / jnp.sqrt(jnp.sum(a * a, -1) * jnp.sum(b * b, -1) + 1e-12)


def fit_and_score(X, U, y, G, n_tr, steps, shape, leaves):
    """Fit the critic on the first ``n_tr`` rows of ``(X, U) -> y``; on the others: the
    training MSE (last 1000 steps), the held-out R^2 and the mean gradient correlation per
    action leaf against the true gradients ``G[n, M, D]``."""
    Xin = jnp.concatenate([X, U], -1)
    nf, n_te = X.shape[-1], X.shape[0] - n_tr
    net = AgentMLP(Xin.shape[-1], [128, 128], 1, None)
    opt = optax.adam(1e-3)

    def loss(p, x, t):
        return jnp.mean((net.apply(p, x)[..., 0] - t) ** 2)

    def body(c, k):
        p, s = c
        i = jax.random.randint(k, (256,), 0, n_tr)
        l, g = jax.value_and_grad(loss)(p, Xin[i], y[i])
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), l

    @jax.jit
    def fit(key):
        p = net.init(jax.random.PRNGKey(1))
        (p, _), ls = jax.lax.scan(body, (p, opt.init(p)), jax.random.split(key, steps))
        return p, ls

    p, ls = fit(jax.random.PRNGKey(2))
    pred = net.apply(p, Xin[n_tr:])[..., 0]
    r2 = 1.0 - float(jnp.mean((pred - y[n_tr:]) ** 2) / jnp.var(y[n_tr:]))

    def dq(x):
        return jax.grad(lambda u: net.apply(p, jnp.concatenate([x[:nf], u]))[0])(x[nf:])

    Gq = jax.vmap(dq)(Xin[n_tr:]).reshape((n_te,) + shape)
    Gt = G[n_tr:]
    corr = {
        k: float(jnp.mean(_corr(Gq[..., s].reshape(n_te, -1), Gt[..., s].reshape(n_te, -1))))
        for k, s in leaves.items()
    }
    return float(ls[-1000:].mean()), r2, corr


if __name__ == "__main__":
    main()
