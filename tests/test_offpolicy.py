"""The off-policy engine: replay buffer, DDPG / MADDPG / double DQN, exact resume.

Independent references: the optimal action values of a tiny chain MDP by value iteration in
NumPy float64 (double DQN must converge to them), a continuous bandit whose optimal action and
reward are known in closed form (DDPG and MADDPG must find them), a ring buffer written row by
row in NumPy, and a run split in chunks and restored from an Orbax checkpoint (bit-identical to
the uninterrupted run).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import algorithms
from algorithms import offpolicy as op
from algorithms.evaluation import evaluate_policy
from algorithms.replay import replay_add, replay_init, replay_sample
from cfmimo_jax.envs import MultiAgentEnv, spaces

# ---- toy environments ------------------------------------------------------------------------

N_CHAIN, GAMMA, STEP_COST = 4, 0.9, -0.1


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class ChainState:
    pos: jax.Array  # [A] int32
    t: jax.Array


class Chain(MultiAgentEnv):
    """Two agents, each on its own chain 0..N-1: action 1 moves right, 0 left (floor 0); every
    step costs 0.1, reaching N-1 pays 1 and ends the episode (terminated); 12 steps truncate."""

    n_agents = 2
    observation_space = spaces.Box(0.0, 1.0, (N_CHAIN,))
    action_space = spaces.Discrete(2)

    def default_params(self):
        return jnp.float32(0.0)

    def _obs(self, pos):
        return jax.nn.one_hot(pos, N_CHAIN)

    def reset_env(self, key, params):
        pos = jnp.zeros((self.n_agents,), jnp.int32)
        return self._obs(pos), ChainState(pos, jnp.int32(0))

    def step_env(self, key, state, actions, params):
        pos = jnp.clip(state.pos + jnp.where(actions == 1, 1, -1), 0, N_CHAIN - 1)
        goal = pos == N_CHAIN - 1
        reward = jnp.where(goal, 1.0, STEP_COST)
        # both agents' episodes end together: terminate when both reached the goal
        pos = jnp.where(goal, 0, pos)  # an agent that arrived restarts (its own "episode")
        t = state.t + 1
        info = {"goals": jnp.mean(goal.astype(jnp.float32))}
        return self._obs(pos), ChainState(pos, t), reward, jnp.bool_(False), t >= 12, info


def chain_q_star():
    """Value iteration in float64 for one chain where reaching N-1 pays 1 and restarts at 0."""
    q = np.zeros((N_CHAIN - 1, 2))
    for _ in range(2000):
        v = q.max(1)
        new = np.zeros_like(q)
        for s in range(N_CHAIN - 1):
            for a in range(2):
                s2 = min(max(s + (1 if a == 1 else -1), 0), N_CHAIN - 1)
                if s2 == N_CHAIN - 1:  # pays 1, then continues from 0 (no termination)
                    new[s, a] = 1.0 + GAMMA * v[0]
                else:
                    new[s, a] = STEP_COST + GAMMA * v[s2]
        q = new
    return q


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class BanditState:
    c: jax.Array  # [A]


class Bandit(MultiAgentEnv):
    """Continuous team bandit: agent i sees c_i ~ U(-0.8, 0.8) and acts ``{"a": Box(-1, 1),
    "b": Box(0, 2)}`` (composite) or ``Box(-1, 1, (1,))``; the team reward is
    ``1 - mean_i [(a_i - c_i)^2 (+ (b_i - 1 - c_i)^2) ]``, maximal (1) at ``a = c, b = 1 + c``.
    One step per episode (terminated)."""

    def __init__(self, n_agents=3, composite=False):
        self.n_agents = n_agents
        self.composite = composite
        self.observation_space = spaces.Box(-1.0, 1.0, (1,))
        if composite:
            self.action_space = {"a": spaces.Box(-1, 1, (1,)), "b": spaces.Box(0, 2, (1,))}
        else:
            self.action_space = spaces.Box(-1.0, 1.0, (1,))
        self.global_state_space = spaces.Box(-1.0, 1.0, (n_agents,))

    def default_params(self):
        return jnp.float32(0.0)

    def global_state(self, state):
        return state.c

    def reset_env(self, key, params):
        c = jax.random.uniform(key, (self.n_agents,), minval=-0.8, maxval=0.8)
        return c[:, None], BanditState(c)

    def step_env(self, key, state, actions, params):
        if self.composite:
            err = (actions["a"][:, 0] - state.c) ** 2 + (actions["b"][:, 0] - 1 - state.c) ** 2
        else:
            err = (actions[:, 0] - state.c) ** 2
        r = 1.0 - jnp.mean(err)
        obs, st = self.reset_env(key, params)
        reward = jnp.full((self.n_agents,), r)
        return obs, st, reward, jnp.bool_(True), jnp.bool_(False), {"err": jnp.mean(err)}


# ---- replay buffer ---------------------------------------------------------------------------


def test_ring_buffer_matches_numpy_rows():
    cap = 5
    buf = replay_init({"x": jnp.zeros((2,)), "n": jnp.int32(0)}, cap)
    rows = np.zeros((cap, 2))
    ins, size, counter = 0, 0, 0
    for b in (3, 1, 4, 5, 2):
        x = np.arange(counter, counter + b, dtype=np.float64)[:, None] * np.ones((1, 2))
        buf = replay_add(buf, {"x": jnp.asarray(x), "n": jnp.arange(b, dtype=jnp.int32)})
        for i in range(b):  # the reference: one row at a time
            rows[ins] = x[i]
            ins = (ins + 1) % cap
            size = min(size + 1, cap)
        counter += b
        assert int(buf.insert) == ins and int(buf.size) == size
        np.testing.assert_array_equal(np.asarray(buf.data["x"]), rows)
    # uniform sampling over the valid rows only, reproducible from the key
    buf2 = replay_add(replay_init(jnp.zeros(()), 100), jnp.arange(7.0))
    s = np.asarray(replay_sample(buf2, jax.random.PRNGKey(0), 7000))
    assert set(np.unique(s)) == set(range(7))
    counts = np.bincount(s.astype(int), minlength=7)
    assert np.all(np.abs(counts - 1000) < 150), counts
    np.testing.assert_array_equal(s, np.asarray(replay_sample(buf2, jax.random.PRNGKey(0), 7000)))
    # vmap over seeds = one buffer per seed
    many = jax.vmap(
        lambda k: replay_add(replay_init(jnp.zeros(()), 4), jax.random.normal(k, (3,)))
    )(jax.random.split(jax.random.PRNGKey(1), 2))
    assert many.data.shape == (2, 4) and np.all(np.asarray(many.size) == 3)


def test_buffer_bad_input():
    with pytest.raises(ValueError, match="capacity"):
        replay_init(jnp.zeros(()), 0)
    buf = replay_init({"a": jnp.zeros(()), "b": jnp.zeros(())}, 3)
    with pytest.raises(ValueError, match="exceeds the capacity"):
        replay_add(buf, {"a": jnp.zeros(4), "b": jnp.zeros(4)})
    with pytest.raises(ValueError, match="same leading size"):
        replay_add(buf, {"a": jnp.zeros(2), "b": jnp.zeros(1)})


def test_schedules_and_target_updates():
    f = op.linear_schedule(1.0, 0.1, 10)
    np.testing.assert_allclose([float(f(t)) for t in (0, 5, 10, 50)], [1.0, 0.55, 0.1, 0.1], 1e-6)
    assert float(op.linear_schedule(1.0, 0.2, 0)(0)) == pytest.approx(0.2)
    t, o = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
    np.testing.assert_allclose(np.asarray(op.target_update(t, o, 1, 0.25, 0)["w"]), 0.25)
    np.testing.assert_allclose(np.asarray(op.target_update(t, o, 3, 0.25, 4)["w"]), 0.0)
    np.testing.assert_allclose(np.asarray(op.target_update(t, o, 8, 0.25, 4)["w"]), 1.0)


# ---- double DQN ------------------------------------------------------------------------------

DQN_CFG = dict(
    n_envs=16,
    n_steps=8,
    n_updates=100,
    updates_per_chunk=50,
    buffer_size=4096,
    batch_size=64,
    learning_starts=128,
    gradient_steps=4,
    gamma=GAMMA,
    target_period=20,
    lr=0.003,
    hidden=[32],
    eps_start=1.0,
    eps_end=0.2,
    eps_decay_steps=200,
)


@pytest.fixture(scope="module")
def dqn_run():
    env = Chain()
    tr = algorithms.make_train("ddqn", DQN_CFG, env, env.default_params())
    rs, m = jax.jit(tr.train)(jax.random.PRNGKey(0))
    return env, tr, rs, m


def test_double_dqn_converges_to_optimal_q(dqn_run):
    env, tr, rs, m = dqn_run
    q_star = chain_q_star()
    obs = jnp.broadcast_to(jnp.eye(N_CHAIN)[: N_CHAIN - 1, None, :], (N_CHAIN - 1, 2, N_CHAIN))
    q = np.asarray(tr.q_values(rs.params["q"], obs))  # [state, agent, action]
    for agent in range(2):
        np.testing.assert_allclose(q[:, agent], q_star, atol=0.08)
    assert np.all(np.asarray(tr.act(rs.params, obs)) == 1)  # always move right
    assert float(m["td_loss"][-1]) < float(m["td_loss"][5])
    assert float(m["epsilon"][-1]) == pytest.approx(0.2)


def test_dqn_plain_target_and_bad_config():
    env = Chain()
    p = env.default_params()
    for bad, match in (
        (dict(eps_end=1.5), "eps_end"),
        (dict(dropout=1.0), "dropout"),
        (dict(loss="l1"), "loss"),
        (dict(batch_size=0), "batch_size"),
        (dict(n_updates=7, updates_per_chunk=2), "updates_per_chunk"),
        (dict(hidden=[0]), "hidden"),
        (dict(reward="global"), "reward"),
        (dict(nope=1), "unknown"),
    ):
        with pytest.raises(ValueError, match=match):
            algorithms.make_train("ddqn", bad, env, p)
    with pytest.raises(ValueError, match="Discrete"):
        algorithms.make_train("ddqn", {}, Bandit(), jnp.float32(0))
    with pytest.raises(ValueError, match="Box"):
        algorithms.make_train("maddpg", {}, env, p)


# ---- DDPG / MADDPG ---------------------------------------------------------------------------

DDPG_CFG = dict(
    n_envs=16,
    n_steps=4,
    n_updates=100,
    updates_per_chunk=50,
    buffer_size=2048,
    batch_size=64,
    learning_starts=64,
    gradient_steps=2,
    gamma=0.0,
    lr_actor=0.003,
    lr_critic=0.003,
    hidden=[32, 32],
    noise_start=0.4,
    noise_end=0.1,
    noise_decay_steps=100,
    random_steps=4,
)


@pytest.mark.parametrize(
    "name, composite, shared, critic_input",
    [
        ("maddpg", False, True, "joint"),
        ("maddpg", True, False, "joint"),
        ("ddpg", True, True, "joint"),
        ("maddpg", True, True, "ego"),
    ],
)
def test_ddpg_and_maddpg_solve_the_bandit(name, composite, shared, critic_input):
    env = Bandit(n_agents=3, composite=composite)
    cfg = dict(DDPG_CFG, shared_parameters=shared)
    if critic_input != "joint":
        cfg["critic_input"] = critic_input
    tr = algorithms.make_train(name, cfg, env, env.default_params())
    rs0 = tr.init(jax.random.PRNGKey(0))
    rs, m = jax.jit(tr.train)(jax.random.PRNGKey(0))
    if not shared:  # per-agent parameters stacked along a leading agent axis
        leaf = jax.tree.leaves(rs.params["actor"])[0]
        assert leaf.shape[0] == env.n_agents

    def score(params):
        pol = lambda o, k, s: tr.act(params, o)  # noqa: E731
        out = jax.jit(lambda k: evaluate_policy(env, 0.0, pol, k, 256, 1))(jax.random.PRNGKey(7))
        return float(np.mean(out["reward"]))

    before, after = score(rs0.params), score(rs.params)
    assert after > 0.95 and after > before + 0.1, (before, after)


def test_ego_critic_input_is_own_observation_and_action_first():
    """``critic_input="ego"``: critic ``i`` reads ``(s, o_i, u^(i)_i, u^(i), id_i)``, its own
    observation and its own entry of the joint action it is evaluated at in front of the joint
    action (checked against the network applied to that concatenation by hand); the default
    reads ``(s, u^(i), id_i)``; bad values raise."""
    env = Bandit(n_agents=3, composite=True)
    tr = algorithms.make_train("maddpg", dict(SMALL, critic_input="ego"), env, 0.0)
    A, D, F = 3, tr.D, tr.F
    params = tr.critic.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    joint = jnp.asarray(rng.uniform(-1, 1, (5, A)), jnp.float32)
    obs = jnp.asarray(rng.uniform(-1, 1, (5, A, F)), jnp.float32)
    u_seen = jnp.asarray(rng.uniform(-1, 1, (5, A, A * D)), jnp.float32)
    got = np.asarray(tr.q_per_agent(params, joint, u_seen, obs))
    for i in range(A):
        own = u_seen[:, i, i * D : (i + 1) * D]
        x = jnp.concatenate(
            [joint, obs[:, i], own, u_seen[:, i], jnp.tile(jnp.eye(A)[i], (5, 1))], -1
        )
        want = np.asarray(nnx.merge(tr.critic.graphdef, params)(x)[..., 0])
        np.testing.assert_allclose(got[:, i], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="obs"):
        tr.q_per_agent(params, joint, u_seen)
    plain = algorithms.make_train("maddpg", SMALL, env, 0.0)
    assert plain.critic.kw["in_features"] == A + A * D + A
    assert tr.critic.kw["in_features"] == A + F + D + A * D + A
    with pytest.raises(ValueError, match="critic_input"):
        algorithms.make_train("maddpg", dict(SMALL, critic_input="local"), env, 0.0)
    with pytest.raises(ValueError, match="critic_input"):
        algorithms.make_train("ddpg", dict(SMALL, critic_input="ego"), env, 0.0)


# ---- determinism, chunks, vmap, resume -------------------------------------------------------

SMALL = dict(
    DDPG_CFG, n_updates=6, updates_per_chunk=2, buffer_size=40, learning_starts=16, gradient_steps=1
)


def test_chunks_equal_train_and_vmap_equals_loop():
    """``train`` vmapped over two seeds equals, seed by seed, ``init`` then ``update`` chunk by
    chunk (the command line's path); the 40-transition buffer has wrapped around."""
    env = Bandit(n_agents=2)
    tr = algorithms.make_train("maddpg", SMALL, env, env.default_params())
    keys = jax.random.split(jax.random.PRNGKey(4), 2)
    rs_v, m_v = jax.jit(jax.vmap(tr.train))(keys)
    init, upd = jax.jit(tr.init), jax.jit(tr.update)
    for i in range(2):
        rs = init(keys[i])
        for _ in range(3):
            rs, m = upd(rs)
        assert int(rs.buffer.size) == 40 and int(rs.env_step) == 24
        for a, b in zip(jax.tree.leaves(rs_v), jax.tree.leaves(rs), strict=True):
            np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            np.asarray(m_v["critic_loss"][i, -2:]), np.asarray(m["critic_loss"]), rtol=1e-4
        )


def test_resume_from_orbax_is_bit_identical(tmp_path):
    """Stop after one chunk with a wrapped-around buffer, checkpoint, restore, continue: the
    same parameters, buffer and key as the uninterrupted run."""
    from cfmimo_cli.train import _manager, _restore, _save

    env = Chain()
    cfg = dict(DQN_CFG, n_updates=4, updates_per_chunk=2, buffer_size=100, learning_starts=32)
    tr = algorithms.make_train("ddqn", cfg, env, env.default_params())
    upd = jax.jit(tr.update)
    rs = jax.device_put(jax.jit(tr.init)(jax.random.PRNGKey(5)), jax.devices()[0])
    rs, _ = upd(rs)
    assert int(rs.buffer.size) == 100 and int(rs.buffer.insert) == 56  # 256 written: wrapped
    manager = _manager(tmp_path)
    _save(manager, 1, rs)
    manager.wait_until_finished()
    full, _ = upd(rs)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), rs)
    step, restored = _restore(_manager(tmp_path), abstract)
    assert step == 1
    resumed, _ = upd(restored)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
