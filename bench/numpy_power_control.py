"""The power-control uplink environment in vectorised NumPy, one environment per object.

The baseline environment of ``bench/bench_offpolicy.py`` (stepped by ``bench/torch_maddpg.py``):
the default configuration of ``cfmimo_jax.envs.make("power_control")`` (uplink, continuous
actions, in dB below ``p_max`` over ``power_db_range`` or linear in mW, ``L = 16`` APs with
``N = 2`` antennas, ``K = 6`` UEs, ``tau_p = 3``, ``tau_c = 200``, ``p_max = 100`` mW, 5 steps
per setup, distributed MR with ``a = 1``, ``coupling`` or ``gains`` observations; the uplink
variants ``from_env`` accepts), written the way a paper's
code base writes it: one Python object per network, NumPy vectorised over APs, UEs and antennas,
float64. No JAX in here.

Setups. Every episode runs on a new network setup. The setups (``R[L, K, N, N]``, ``pilot[K]``,
``D[L, K]``, ``gain_db[L, K]``) are NOT generated here: the benchmark draws a pool of them with
the JAX generator ahead of time (the JAX environment's own ``reset``) and hands them over as
NumPy arrays; each reset of this environment takes a pool entry chosen by its own NumPy
generator. The benchmark measures the training loop, not setup generation (drop, path loss,
correlated shadowing, pilot assignment, DCC). Everything downstream of the setup is computed
here, in NumPy, from ``R`` and ``pilot``:

* at reset (once per episode), the MMSE estimation statistics (book section 4, SPEC 2.3;
  pilots at ``p_max``): ``Psi_{l,t} = sum_{i: t_i = t} p tau_p R_li + I``,
  ``B_lk = p tau_p R_lk Psi_{l,t_k}^{-1} R_lk``; and the closed-form distributed MR statistics
  (book Cor. 5.6, SPEC 2.5): ``m[l,k,i] = E[g_ki]_l = p tau_p tr(R_lk Psi_{l,t_k}^{-1} R_li)``
  for ``t_i = t_k`` (else 0), ``s[l,k,i] = tr(B_lk R_li)``, ``F[l,k] = tr(B_lk)``;
* at every step, the uplink SINR of book Thm 5.4 with ``a = D[:, k]`` and the data powers
  ``p[K]`` (mW; from the actions ``a[K, 1]``: ``p = p_max 10^(clip(a, -r, 0) / 10)`` with
  ``power_db_range = r``, else ``a`` itself, clipped to ``[0, p_max]``)::

      proj_ki = sum_l D_lk m[l,k,i]
      SINR_k  = p_k |proj_kk|^2 / (sum_i p_i (|proj_ki|^2 + sum_l D_lk s[l,k,i])
                                    - p_k |proj_kk|^2 + sum_l D_lk F_lk)
      SE_k    = (tau_c - tau_p) / tau_c log2(1 + SINR_k)

  and the reward of every agent, ``sum_k SE_k``.

Observations and global state exactly as ``cfmimo_jax.envs.power_control`` builds them, with
the pilot load ``n_k = |{i : t_i = t_k}| / K`` and the previous step's power and SE (at reset:
full power and its SEs):

* ``features="gains"``: UE ``k`` sees ``[g_{:,k} (L), D_{:,k} (L), n_k, p_k / p_max,
  SE_k / obs_se_scale]`` with the normalised gain ``g = (gain_db - obs_offset_db) /
  obs_scale_db``; global state ``[g (L K), D (L K), p / p_max (K), SE / obs_se_scale (K)]``;
* ``features="coupling"``: the SINR terms at full power in dB / 10, ``snr_k = log10(p_max S_k /
  N_k)``, ``inr_ki = log10(p_max C_ki / N_k)`` with ``S_k = |proj_kk|^2``, ``C_ki = |proj_ki|^2
  + sum_l D_lk s[l,k,i]``, ``N_k = sum_l D_lk F_lk`` (computed once per setup, at reset); UE
  ``k`` sees ``[snr_k, inr_{k,:} (K), inr_{:,k} (K), n_k, p_k / p_max, SE_k / obs_se_scale]``;
  global state ``[snr (K), inr (K K), p / p_max (K), SE / obs_se_scale (K)]``.
An episode is ``episode_steps`` steps, then truncated (never terminated); ``step`` resets
automatically and returns the finished episode's last observation and global state in ``info``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PowerControlNumPy", "estimation_statistics", "mr_statistics", "uplink_sinr"]


def estimation_statistics(R, pilot, p, tau_p):
    """``(B[L, K, N, N], X[L, K, N, N] = Psi_{l,t_k}^{-1} R_lk)`` for pilot power ``p``
    (scalar, mW) on every UE (book eq. (4.7); SPEC 2.3)."""
    L, K, N, _ = R.shape
    onehot = (pilot[:, None] == np.arange(tau_p)[None, :]).astype(R.real.dtype)  # [K, tau_p]
    Psi = p * tau_p * np.einsum("kt,lkab->ltab", onehot, R) + np.eye(N)  # [L, tau_p, N, N]
    X = np.linalg.solve(Psi[:, pilot], R)  # Psi_{l,t_k}^{-1} R_lk
    B = p * tau_p * (R @ X)
    B = 0.5 * (B + np.conj(np.swapaxes(B, -1, -2)))  # Hermitian part (round-off)
    return B, X


def mr_statistics(R, B, X, pilot, p, tau_p):
    """Closed-form distributed MR statistics ``m[L, K, K]`` (complex), ``s[L, K, K]``,
    ``F[L, K]`` (book Cor. 5.6; SPEC 2.5), equal pilot powers ``p``."""
    same = pilot[:, None] == pilot[None, :]
    # tr(R_lk Psi^{-1} R_li) = sum_ab conj(X_lk)[b, a] R_li[b, a]  (R, Psi Hermitian)
    m = p * tau_p * same[None] * np.einsum("liab,lkab->lki", R, np.conj(X))
    s = np.real(np.einsum("lkab,liba->lki", B, R))
    F = np.real(np.trace(B, axis1=-2, axis2=-1))
    return m, s, F


def uplink_sinr(m, s, F, D, p):
    """Uplink SINR ``[K]`` of book Thm 5.4 with ``a = 1`` on the serving APs (module doc)."""
    Df = D.astype(F.dtype)
    proj = np.einsum("lk,lki->ki", Df, m)  # a^H E[g_ki]
    a2 = np.abs(proj) ** 2
    num = p * np.diagonal(a2)
    interf = (a2 + np.einsum("lk,lki->ki", Df, s)) @ p
    noise = np.sum(Df * F, axis=0)
    return num / (interf - num + noise)


class PowerControlNumPy:
    """One uplink power-control network (module docstring).

    ``setups``: dict of NumPy arrays with a leading pool axis ``P``: ``R[P, L, K, N, N]``,
    ``pilot[P, K]``, ``D[P, L, K]``, ``gain_db[P, L, K]``. Interface: ``reset() -> obs``,
    ``step(actions[K, 1]) -> (obs[K, obs_dim], reward[K], done, info)``, ``global_state()``;
    after ``done`` the returned observation is the new episode's and ``info["final_obs"]`` /
    ``info["final_state"]`` hold the finished one's.
    """

    def __init__(
        self,
        setups: dict,
        *,
        tau_p: int = 3,
        tau_c: int = 200,
        p_max: float = 100.0,
        episode_steps: int = 5,
        obs_offset_db: float = -20.0,
        obs_scale_db: float = 10.0,
        obs_se_scale: float = 2.0,
        power_db_range: float | None = None,
        features: str = "gains",
        seed: int = 0,
    ):
        if features not in ("gains", "coupling"):
            raise ValueError(f"features must be 'gains' or 'coupling', got {features!r}")
        self.setups = {k: np.asarray(setups[k]) for k in ("R", "pilot", "D", "gain_db")}
        P, L, K, N, _ = self.setups["R"].shape
        self.n_setups, self.L, self.K, self.N = P, L, K, N
        self.tau_p, self.tau_c = int(tau_p), int(tau_c)
        self.p_max = float(p_max)
        self.episode_steps = int(episode_steps)
        self.offset, self.scale, self.se_scale = obs_offset_db, obs_scale_db, obs_se_scale
        self.prelog = (self.tau_c - self.tau_p) / self.tau_c
        self.db_range = None if power_db_range is None else float(power_db_range)
        self.features = features
        self.n_agents = K
        if features == "coupling":
            self.obs_dim, self.state_dim = 2 * K + 4, K + K * K + 2 * K
        else:
            self.obs_dim, self.state_dim = 2 * L + 3, 2 * L * K + 2 * K
        # the per-agent action box (``actions[K, 1]``)
        self.action_low = 0.0 if self.db_range is None else -self.db_range
        self.action_high = self.p_max if self.db_range is None else 0.0
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def env_kwargs(env, params) -> dict:
        """The keyword arguments (all but ``setups`` and ``seed``) of the NumPy twin of a JAX
        ``PowerControl`` (uplink, continuous, ``a = 1``) and its ``PowerControlParams``."""
        if not env.uplink or env.action != "continuous" or env.lsfd:
            raise ValueError("the NumPy environment implements uplink, continuous, lsfd=false")
        return dict(
            tau_p=env.tau_p,
            tau_c=env.tau_c,
            p_max=env.p_max,
            episode_steps=env.episode_steps,
            obs_offset_db=float(params.obs_offset_db),
            obs_scale_db=float(params.obs_scale_db),
            obs_se_scale=float(params.obs_se_scale),
            power_db_range=getattr(env, "db_range", None),
            features=getattr(env, "features", "gains"),
        )

    @classmethod
    def from_env(cls, env, params, setups: dict, seed: int = 0):
        """The NumPy twin of a JAX ``PowerControl`` (uplink, continuous, ``a = 1``) and its
        ``PowerControlParams``; ``setups`` as in the class docstring."""
        return cls(setups, **cls.env_kwargs(env, params), seed=seed)

    # ---- physics -----------------------------------------------------------------------

    def load_setup(self, index: int):
        """Make pool entry ``index`` the current setup: statistics at full pilot power."""
        S = self.setups
        R = S["R"][index].astype(np.complex128)
        self.pilot = S["pilot"][index].astype(np.int64)
        self.D = S["D"][index].astype(bool)
        self.Df = self.D.astype(np.float64)
        self.gain_obs = (S["gain_db"][index].astype(np.float64) - self.offset) / self.scale
        B, X = estimation_statistics(R, self.pilot, self.p_max, self.tau_p)
        self.m, self.s, self.F = mr_statistics(R, B, X, self.pilot, self.p_max, self.tau_p)
        same = self.pilot[:, None] == self.pilot[None, :]
        self.load = np.sum(same, axis=1) / self.K
        if self.features == "coupling":
            self.snr, self.inr = self.coupling()
        self.t = 0

    def coupling(self):
        """``(snr[K], inr[K, K])``: the SINR terms at full power in dB / 10 (module doc)."""
        proj = np.einsum("lk,lki->ki", self.Df, self.m)
        C = np.abs(proj) ** 2 + np.einsum("lk,lki->ki", self.Df, self.s)
        S = np.diagonal(np.abs(proj) ** 2)
        N = np.maximum(np.sum(self.Df * self.F, axis=0), 1e-30)
        snr = np.log10(np.maximum(self.p_max * S / N, 1e-30))
        inr = np.log10(np.maximum(self.p_max * C / N[:, None], 1e-30))
        return snr, inr

    def se(self, p):
        """``SE[K]`` (bit/s/Hz) of the data powers ``p[K]`` (mW) on the current setup."""
        return self.prelog * np.log2(1.0 + uplink_sinr(self.m, self.s, self.F, self.D, p))

    def _obs(self):
        extra = np.stack([self.load, self.power / self.p_max, self.se_prev / self.se_scale], 1)
        if self.features == "coupling":  # [K, 2K + 4]
            return np.concatenate([self.snr[:, None], self.inr, self.inr.T, extra], axis=1)
        return np.concatenate([self.gain_obs.T, self.Df.T, extra], axis=1)  # [K, 2L + 3]

    def global_state(self):
        """``[g (L K), D (L K), p / p_max (K), SE / obs_se_scale (K)]`` (gains) or ``[snr (K),
        inr (K K), p / p_max (K), SE / obs_se_scale (K)]`` (coupling)."""
        prev = [self.power / self.p_max, self.se_prev / self.se_scale]
        if self.features == "coupling":
            return np.concatenate([self.snr, self.inr.ravel(), *prev])
        return np.concatenate([self.gain_obs.ravel(), self.Df.ravel(), *prev])

    def powers(self, actions):
        """``actions[K, 1]`` -> data powers ``p[K]`` in mW (module docstring)."""
        a = np.asarray(actions, np.float64)[:, 0]
        if self.db_range is not None:
            a = self.p_max * 10.0 ** (np.clip(a, -self.db_range, 0.0) / 10.0)
        return np.clip(a, 0.0, self.p_max)

    # ---- interface ---------------------------------------------------------------------

    def reset(self, index: int | None = None):
        """New episode on a pool setup (random unless ``index``): ``-> obs[K, 2L + 3]``."""
        if index is None:
            index = int(self.rng.integers(self.n_setups))
        self.load_setup(index)
        self.power = np.full(self.K, self.p_max)
        self.se_prev = self.se(self.power)
        return self._obs()

    def step(self, actions):
        """``actions[K, 1]`` -> ``(obs, reward[K], done, info)`` with auto-reset."""
        p = self.powers(actions)
        se = self.se(p)
        sum_se = float(np.sum(se))
        self.power, self.se_prev = p, se
        self.t += 1
        obs = self._obs()
        truncated = self.t >= self.episode_steps
        info = {"sum_se": sum_se, "terminated": False, "truncated": truncated}
        if truncated:
            info["final_obs"] = obs
            info["final_state"] = self.global_state()
            obs = self.reset()
        return obs, np.full(self.K, sum_se), truncated, info
