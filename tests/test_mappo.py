"""The MAPPO engine on a tiny AP-selection network: learning, determinism, resume, multiplier.

APS-GNN is "Graph-Neural Multi-Agent Coordination for Distributed Access-Point Selection in
Cell-Free Massive MIMO"."""

from __future__ import annotations

import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms.mappo import PPOConfig, evaluate_policies, evaluate_policy, make_train
from cfmimo_cli.config import ConfigError, load_config
from cfmimo_cli.train import train
from cfmimo_jax.envs import ap_selection as aps

ENV = {"n_aps": 4, "n_ues": 2, "window_slots": 2, "n_windows": 4, "history": 2, "radius_m": 200}
TRAINER = dict(
    n_envs=8,
    n_steps=4,
    n_updates=4,
    updates_per_chunk=2,
    epochs=2,
    n_minibatches=2,
    hidden=8,
    gnn_rounds=1,
    lr=3e-3,
)


@pytest.fixture(scope="module")
def env_params():
    return aps.make(ENV)


@pytest.fixture(scope="module")
def trainer(env_params):
    env, params = env_params
    return make_train(dict(TRAINER, critic="central"), env, params)


@pytest.fixture(scope="module")
def train_fn(trainer):
    return jax.jit(trainer.train)


def test_chunked_updates_equal_train(trainer, train_fn):
    """The command-line path (init + update chunks) and train(key) give identical numbers."""
    rs_a, m_a = train_fn(jax.random.PRNGKey(3))
    rs = jax.jit(trainer.init)(jax.random.PRNGKey(3))
    upd = jax.jit(trainer.update)
    ms = []
    for _ in range(2):
        rs, m = upd(rs)
        ms.append(m)
    for a, b in zip(jax.tree.leaves(rs_a.params), jax.tree.leaves(rs.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(m_a["reward"]), np.concatenate([np.asarray(m["reward"]) for m in ms])
    )
    assert int(rs.update) == 4


def test_vmap_over_seeds_equals_loop_and_same_key_same_result(trainer, train_fn):
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    rs_v, m_v = jax.jit(jax.vmap(trainer.train))(keys)
    rs_0, m_0 = train_fn(keys[0])
    rs_0b, _ = train_fn(keys[0])
    for a, b, c in zip(
        jax.tree.leaves(rs_v.params),
        jax.tree.leaves(rs_0.params),
        jax.tree.leaves(rs_0b.params),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a[0]), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(b), np.asarray(c))
    assert not np.allclose(np.asarray(m_v["reward"][0]), np.asarray(m_v["reward"][1]))


def test_vmap_over_hyperparameters(trainer):
    hp = {"lr": jnp.array([1e-3, 3e-3]), "ent_coef": jnp.array([0.0, 0.05])}
    rs, m = jax.jit(jax.vmap(trainer.train, in_axes=(None, 0)))(jax.random.PRNGKey(1), hp)
    assert m["reward"].shape == (2, 4)
    np.testing.assert_allclose(np.asarray(rs.hparams["lr"]), [1e-3, 3e-3])


def test_evaluate_policies_equals_one_policy_at_a_time(env_params):
    """One program for several policies (lax.map + lax.switch) gives each policy's own
    evaluate_policy numbers on the same episodes (the learned policies go through it in
    test_resume_gives_same_parameters)."""
    env, params = env_params
    heur = env.heuristics()
    pols = [lambda o, k, s: heur["1-strongest"](o, s), lambda o, k, s: heur["all-on"](o, s)]
    key = jax.random.PRNGKey(5)
    both = jax.jit(lambda k: evaluate_policies(env, params, pols, k, 4, 3))(key)
    assert both["reward"].shape == (2, 3)
    for i, pol in enumerate(pols):
        one = jax.jit(lambda k, pol=pol: evaluate_policy(env, params, pol, k, 4, 3))(key)
        for name, v in one.items():
            np.testing.assert_allclose(np.asarray(both[name][i]), np.asarray(v), rtol=1e-6)
    assert not np.allclose(np.asarray(both["active_aps"][0]), np.asarray(both["active_aps"][1]))
    with pytest.raises(ValueError, match="at least one"):
        evaluate_policies(env, params, [], key, 4, 3)


def test_lagrange_multiplier_follows_cost(env_params):
    """APS-GNN eq. (14): the multiplier rises while the cost exceeds its limit, else falls."""
    env, params = env_params
    params = dataclasses.replace(params, se_target=50.0)  # always short: cost > 0
    tr = make_train(dict(TRAINER, lagrangian=True, lambda_init=1.0, lambda_lr=0.1), env, params)
    rs, m = jax.jit(tr.train)(jax.random.PRNGKey(0), {"cost_limit": 0.0})
    lam = np.asarray(m["lagrange"])
    assert np.all(np.diff(lam) > 0) and float(rs.lagrange) > lam[-1]
    cost = np.asarray(m["cost"])
    np.testing.assert_allclose(np.diff(lam), 0.1 * cost[:-1], rtol=1e-5)
    rs, m = jax.jit(tr.train)(jax.random.PRNGKey(0), {"cost_limit": 1e3})
    lam = np.asarray(m["lagrange"])
    assert np.all(np.diff(lam) < 0) or float(rs.lagrange) == 0.0
    assert float(rs.lagrange) >= 0.0  # projection onto the non-negative reals


def test_team_signals_are_network_averages(env_params):
    """team_reward=True: every agent learns from the network-average reward and cost (the
    ``aps_gnn_team`` method); by default each agent has its own (APS-GNN eqs. (11)-(12))."""
    env, params = env_params
    out = {}
    for team in (False, True):
        tr = make_train(dict(TRAINER, lagrangian=True, team_reward=team), env, params)
        rs = tr.init(jax.random.PRNGKey(0))
        out[team] = jax.jit(tr._rollout)(rs)[2]
    for team, traj in out.items():
        sig = np.asarray(traj["signal"])  # [T, n_envs, n_agents, 2]
        assert sig.shape[2:] == (8, 2)
        np.testing.assert_allclose(sig[..., 0].mean(-1), np.asarray(traj["reward"]), rtol=1e-6)
        np.testing.assert_allclose(sig[..., 1].mean(-1), np.asarray(traj["cost"]), rtol=1e-5)
        spread = np.ptp(sig, axis=2).max()
        assert spread == 0.0 if team else spread > 0.0


def test_short_training_improves_return(env_params):
    """Seeded, small: the trained policy beats the untrained one on the same episodes."""
    env, params = env_params
    cfg = dict(
        TRAINER,
        n_envs=16,
        n_updates=40,
        updates_per_chunk=40,
        epochs=4,
        lr=1e-2,
        cost_weight=1.0,
        gamma=0.5,
    )
    tr = make_train(cfg, env, params)
    rs0 = tr.init(jax.random.PRNGKey(0))
    rs, m = jax.jit(tr.train)(jax.random.PRNGKey(0))

    def score(p):
        pol = lambda o, k, s: tr.act(p, o, k)  # noqa: E731
        out = jax.jit(lambda k: evaluate_policy(env, params, pol, k, 64, 8))(jax.random.PRNGKey(42))
        return float(np.mean(out["reward"]) - np.mean(out["cost"]))

    before, after = score(rs0.params), score(rs.params)
    assert after > before + 0.1, (before, after)


def _cli_config():
    cfg = load_config(None, [], command="train")
    cfg["env"].update(ENV)
    cfg["trainer"].update(TRAINER)
    cfg["trainer"].update(pretrain_policy="2-strongest", pretrain_updates=3)
    # the main job's selection stays on (its state must resume exactly), on few episodes
    cfg["trainer"].update(select_envs=2, select_steps=2)
    cfg["eval"].update(n_envs=4, n_steps=2, heuristics=["1-strongest", "all-on"])
    cfg["checkpoint_every"] = 1
    return cfg


def test_resume_gives_same_parameters(tmp_path):
    cfg = _cli_config()
    full = train(copy.deepcopy(cfg), tmp_path / "full", progress=False, stream=False)
    part = train(copy.deepcopy(cfg), tmp_path / "part", progress=False, stop_after_chunks=1)
    assert part["stopped_after_chunk"] == 1
    resumed = train(copy.deepcopy(cfg), tmp_path / "part", resume=True, progress=False)
    for a, b in zip(jax.tree.leaves(full["state"]), jax.tree.leaves(resumed["state"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    lines_full = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    lines_res = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert lines_full == lines_res
    for f in ("summary.json", "learning_curves.png", "config.yaml"):
        assert (tmp_path / "part" / f).is_file()
    assert "learned (greedy)" in resumed["evaluation"]
    # a fresh run (no --resume) over an old run folder replaces its checkpoints: the latest
    # checkpoint is the new run's final state, not the old run's
    from cfmimo_cli.train import _manager, _restore

    cfg["seed"] += 1
    again = train(copy.deepcopy(cfg), tmp_path / "full", progress=False, stream=False)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), again["state"])
    step, restored = _restore(_manager(tmp_path / "full"), abstract)
    assert step == 2
    for a, b in zip(jax.tree.leaves(again["state"]), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(full["state"]), jax.tree.leaves(restored), strict=True)
    )


def test_imitation_reaches_high_accuracy(env_params):
    """APS-GNN section V-B: the actor learns the heuristic's labels (2-strongest of 4 APs per
    UE needs the same-UE messages: from the own channel alone accuracy stays near 50-75 %)."""
    env, params = env_params
    cfg = dict(
        TRAINER, hidden=16, pretrain_policy="2-strongest", pretrain_updates=300, pretrain_lr=1e-2
    )
    tr = make_train(cfg, env, params)
    rs, m = jax.jit(tr.init_with_metrics)(jax.random.PRNGKey(0))
    acc = np.asarray(m["accuracy"])
    assert acc.shape == (300,)
    assert np.mean(acc[:5]) < 0.8 and np.mean(acc[-20:]) > 0.95, (acc[:5], acc[-20:])
    # the pre-trained policy acts like its teacher on fresh episodes
    teacher = env.heuristics()["2-strongest"]
    obs, _ = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.PRNGKey(9), 32), params)
    agree = np.mean(np.asarray(tr.act(rs.params, obs)) == np.asarray(teacher(obs)))
    assert agree > 0.95
    with pytest.raises(ValueError, match="not a heuristic"):
        make_train(dict(cfg, pretrain_policy="9-strongest"), env, params).init(
            jax.random.PRNGKey(0)
        )
    with pytest.raises(ValueError, match="pretrain_policy"):
        PPOConfig(pretrain_updates=5)


def test_label_smoothing_and_critic_warmup(env_params):
    """Imitation with label smoothing eps converges to probability 1 - eps + eps / 2 on the
    teacher's action (the cross-entropy minimiser), not 1; during the critic warm-up only the
    value head moves (the imitated actor and the shared backbone stay as they are)."""
    from algorithms.mappo import _is_value_head

    env, params = env_params
    cfg = dict(
        TRAINER,
        hidden=16,
        pretrain_policy="2-strongest",
        pretrain_updates=300,
        pretrain_lr=1e-2,
        pretrain_smoothing=0.2,
        critic_warmup=2,
    )
    tr = make_train(cfg, env, params)
    rs = jax.jit(tr.init)(jax.random.PRNGKey(0))
    teacher = env.heuristics()["2-strongest"]
    obs, _ = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.PRNGKey(9), 32), params)
    probs = jax.nn.softmax(tr.forward(rs.params, obs.astype(jnp.float32))[0])
    p_teacher = np.take_along_axis(np.asarray(probs), np.asarray(teacher(obs))[..., None], -1)
    assert 0.8 < np.median(p_teacher) < 0.95, np.median(p_teacher)
    rs2, _ = jax.jit(tr.update)(rs)  # updates 0 and 1: warm-up
    moved = {}
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(rs.params), jax.tree.leaves(rs2.params), strict=True
    ):
        moved[jax.tree_util.keystr(path)] = (_is_value_head(path), not np.array_equal(a, b))
    assert all(m for head, m in moved.values() if head), moved
    assert not any(m for head, m in moved.values() if not head), moved
    rs3, _ = jax.jit(tr.update)(rs2)  # after the warm-up the actor learns
    assert any(
        not np.array_equal(a, b)
        for (path, a), b in zip(
            jax.tree_util.tree_leaves_with_path(rs2.params), jax.tree.leaves(rs3.params)
        )
        if not _is_value_head(path)
    )
    with pytest.raises(ValueError, match="pretrain_smoothing"):
        PPOConfig(pretrain_smoothing=1.0)
    with pytest.raises(ValueError, match="critic_warmup"):
        PPOConfig(critic_warmup=-1)


def test_single_agent_ppo_lagr(env_params):
    """APS-GNN's PPO-Lagr: one agent over the association matrix. Its policy of a pair depends
    on the other pairs' channels; the joint ratio makes the clipped surrogate act on the whole
    matrix; the multiplier follows the network-average cost."""
    env, params = env_params
    cfg = dict(TRAINER, lagrangian=True, single_agent=True, lambda_lr=0.1)
    tr = make_train(cfg, env, params)
    rs, m = jax.jit(tr.train)(jax.random.PRNGKey(0), {"cost_limit": 0.0})
    for v in m.values():
        assert np.all(np.isfinite(np.asarray(v)))
    lam = np.asarray(m["lagrange"])
    np.testing.assert_allclose(np.diff(lam), 0.1 * np.asarray(m["cost"])[:-1], rtol=1e-5)
    obs, _ = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.PRNGKey(1), 2), params)
    obs = obs.astype(jnp.float32)
    logits, values = tr.forward(rs.params, obs)
    assert logits.shape == (2, env.n_agents, 2)
    np.testing.assert_allclose(np.asarray(values - values[:, :1]), 0.0)  # one global value
    moved = obs.at[:, 1, -1, 0].add(3.0)  # another pair's latest channel
    assert not np.allclose(np.asarray(tr.forward(rs.params, moved)[0][:, 0]), logits[:, 0])
    # the loss's ratio is the joint one: exp(sum over pairs of log-ratio)
    mb = {
        "obs": obs,
        "action": jnp.zeros((2, env.n_agents), jnp.int32),
        "logp": jnp.log(jax.nn.softmax(logits)[..., 0]) - 0.05,
        "value": values,
        "adv": jnp.ones((2, env.n_agents)),
        "ret": values,
    }
    hp = dict(rs.hparams, clip=jnp.float32(10.0), ent_coef=jnp.float32(0.0))
    _, aux = tr._loss(rs.params, mb, hp)
    np.testing.assert_allclose(float(aux["pg_loss"]), -np.exp(0.05 * env.n_agents), rtol=1e-4)


def test_bad_trainer_config(env_params):
    env, params = env_params
    with pytest.raises(ValueError, match="n_minibatches"):
        PPOConfig(n_envs=3, n_steps=3, n_minibatches=2)
    with pytest.raises(ValueError, match="critic"):
        PPOConfig(critic="global")
    for bad in (dict(gamma=-0.1), dict(gamma=1.5), dict(gae_lambda=-1.0), dict(lr=0.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PPOConfig(**bad)
    PPOConfig(gamma=0.0)  # myopic returns (a contextual bandit) are allowed
    with pytest.raises(ValueError, match="unknown trainer"):
        make_train({"n_env": 4}, env, params)
    with pytest.raises(ValueError, match="updates_per_chunk"):
        PPOConfig(n_updates=5, updates_per_chunk=2)
    cfg = _cli_config()
    cfg["algorithm"] = "sac"
    with pytest.raises(ConfigError, match="algorithm"):
        train(cfg, "/tmp/never", progress=False)
    with pytest.raises(ConfigError, match="trainer.nope"):
        load_config(None, ["trainer.nope=1"], command="train")
