"""Dynamic multi-AP cooperation ([AP-COOP]), as a multi-agent environment.

The paper: M. Ajmal et al., "Multi-Agent Deep Reinforcement Learning for Dynamic Multi-AP
Cooperation in Cell-Free Massive MIMO Networks" (docs/references.md, [AP-COOP]); equation
numbers below are its. Kernels: :mod:`cfmimo_jax.cooperation`,
:func:`cfmimo_jax.pilots.threshold_clusters`, :func:`cfmimo_jax.processing.cluster_rzf`
(conventions in docs/kernels.md, "AP cooperation").

System (section II, Table I): ``M`` APs with ``N`` antennas (the paper's ``L``) and ``K``
single-antenna UEs dropped uniformly in a ``side_m`` square with wrap-around; large-scale
fading by the book's model (Demir, Björnson, Sanguinetti 2021, section 5.3, through
:func:`cfmimo_jax.setup.generate_setup`: ``-30.5 - 36.7 log10(d / 1 m)`` dB, AP 10 m above
the UEs, shadowing of std 4 dB correlated over UEs with 9 m decorrelation), noise
``-174 + 10 log10(20 MHz) + 7 dB`` dBm; pilots by book Algorithm 4.1 over ``tau_p`` pilots
(``cfmimo_jax.pilots.assign_pilots``, inside the setup). Channels are noise-normalised, so
``rho |h^H w|^2`` (``rho`` in mW) is an SNR and the noise power of eq. (9) is 1. UE positions,
shadowing, pilots and serving sets are fixed within an episode (one ``reset`` = one drop);
the small-scale fading is uncorrelated Rayleigh, redrawn at every step: ``h_mk = sqrt(beta_mk)
g_mk``, ``g_mk ~ CN(0, I_N)`` (eq. (1)), with MMSE estimates from a fresh pilot
transmission at the UE power ``pilot_power_mw`` (eq. (4) = book eq. (4.5) with ``R = beta
I``: ``cfmimo_jax.estimation``'s received pilots and the MMSE matrices ``sqrt(p) R
Psi^{-1}``, computed once at reset, a scalar times ``I`` per pair, in closed form).

Serving sets (eq. (2)): ``M_k = {m : beta_mk >= delta max_m' beta_m'k}`` capped at the
``max_aps_per_ue`` strongest (Table I: 5), ``D[M, K]``
(:func:`cfmimo_jax.pilots.threshold_clusters`); ``K_m = {k : D[m, k]}``.

Powers and who transmits: every AP radiates its full ``ap_power_mw`` (Table I: 1000 mW),
split equally over the UEs it transmits to (unit-norm precoders, eq. (5); the paper leaves the
powers ``rho_mk`` out, the equal split keeps every AP at its budget). ``transmit = "serving"``
(default): an AP transmits to its own UEs only, ``rho_mk = P / |K_m|`` on ``K_m``, also inside
a cluster, where it uses its segment of the cluster's joint RZF vector (eq. (17)) for them:
the sums of eq. (9) run over the serving sets ``M_j``, as printed, so the cluster chooses
the directions and the serving APs send the data. ``transmit = "cluster"``: every AP of a
cluster transmits to every UE of ``K_C`` (section III-B's "jointly process ... the set of all
users they serve"; :func:`cfmimo_jax.processing.cluster_serving`), ``rho_mk = P / |K_C|``;
at the defaults this loses to no cooperation once clusters grow (full cooperation 110
against 140 bit/s/Hz for none, 8 drops), the serving reading gains (187, below).

Interference metric and neighbours, computed once per episode at ``reset`` (the paper's
reading: the neighbour sets ``N_m`` index the agents' actions, so they stay fixed while the
UEs do; the small-scale fading averages out): ``I_mn`` of eq. (7)
(:func:`cfmimo_jax.cooperation.interference_metric`, true channels, the no-cooperation MRT
precoders of eq. (18) on the MMSE estimates, the powers above) averaged over
``metric_samples`` independent fading and pilot-noise draws; as printed, the inner sum of
eq. (7) includes ``j = k`` when AP ``n`` also serves UE ``k`` (``metric_exclude_desired =
true`` drops it). ``N_m = {n : I_mn > neighbour_ratio max_n' I_mn'}`` (eq. (11), Table I:
``0.05 x max(I_AP)``, read as each AP's own maximum, ``neighbour_per_ap = true``; with
``false`` one maximum over the whole matrix, which the few APs very close to a shared UE
dominate: 0.36 neighbours per AP at the defaults, against 2.8 per AP and 93 mutual neighbour
pairs with the per-AP reading, closer to the paper's hundreds of links), the
``max_neighbours`` strongest (Table I: 4), strongest first, in a fixed table ``idx[M, Q]`` /
``mask[M, Q]`` (``Q = max_neighbours``; :func:`cfmimo_jax.cooperation.interference_neighbours`).
An AP that serves no UE has ``I_mn = 0`` and no neighbours.

Agents and actions (section III-1/2): one agent per AP (``n_agents = M``); action
``Discrete(2^Q)`` (16 for ``Q = 4``), bit ``q`` of the action (``(a >> q) & 1``) is ``a_mn``
for the neighbour in slot ``q`` (``n = idx[m, q]``). The engine has no action-mask mechanism,
so the bits of empty slots (an AP with fewer than ``Q`` neighbours) are mapped to 0: actions
that differ only there are the same action (same links, same reward). A link ``m - n`` is
formed only when both agree (``a_mn = a_nm = 1``,
:func:`cfmimo_jax.cooperation.agreement_matrix`); clusters are the connected components of
the links (:func:`cfmimo_jax.cooperation.clusters_from_agreements`).

Precoding (section III-B): joint RZF per cluster over all UEs its APs serve, eqs. (14)-(17),
``W_C^H = H_C (H_C^H H_C + alpha I)^{-1}`` on the MMSE estimates, each AP's segment
normalised; MRT, eq. (18), for an AP alone (:func:`cfmimo_jax.processing.cluster_rzf`). The
paper gives no value of ``alpha``: ``rzf_alpha = 0.1`` (noise-normalised units), the best of
``1e-4 .. 10`` for full cooperation at the defaults (8 drops; within 1 % from ``1e-4`` to 1,
6 % lower at 10). SINR of eq. (9) (:func:`cfmimo_jax.cooperation.downlink_sinr`, coherent
joint transmission on the true channels) and rates ``R_k = log2(1 + SINR_k)`` without a
prelog (eq. (8) and the paper's numbers: 122 bit/s/Hz over 40 UEs at 8.5 dB mean SINR;
``tau_c`` only bounds ``tau_p``).

Reward of AP ``m`` (eq. (12)), with ``R_k^base`` the rates of no cooperation (every AP MRT, the
same channels and estimates of this step) and ``a_mn`` the AP's own (effective) request bits::

    r_m = alpha_1 (sum_{k in K_m} R_k - R_k^base) / sum_{k in K_m} R_k^base
          - alpha_2 sum_{n in N_m} a_mn - alpha_3 sum_{n in N_m} Ibar_mn a_mn

(the first term is 0 for an AP that serves no UE), ``Ibar_mn = I_mn / max_{n' in N_m} I_mn'``
the interference normalised per AP (in ``(0, 1]``, 1 for its strongest neighbour). The paper
gives no values; it says the third term "encourages the agent to prioritize forming
partnerships that tackle the most severe interference", which with the printed minus sign
needs ``alpha_3 < 0``. Chosen: ``alpha_1 = 1``, ``alpha_2 = 0.05``, ``alpha_3 = -0.025``: a
request to the strongest neighbour costs 0.025, to a weak one nearly 0.05, against a
relative rate gain of about 0.1 per request on average under full cooperation (+34 % sum rate
over 2.8 requests per AP at the defaults), so weak links are worth less than they cost for
many APs. Requests are charged whether or not the other AP agrees (the paper's ``a_mn`` is
the agent's own action).

Observation of AP ``m`` (eq. (10), ``Box(-inf, inf, (U + 1 + 5 Q + T,))``, ``U =
obs_users``, ``T = obs_history``), in this order:

* ``beta_m`` (``U``): the link SNRs at full power of its ``U`` strongest served UEs,
  ``(gain_db_mk + 10 log10(ap_power_mw) - obs_offset_db) / obs_scale_db``, sorted descending,
  0 in empty slots; then ``|K_m| / U`` (1);
* ``I_m`` (``3 Q``): per neighbour slot the slot mask (1 / 0), ``Ibar_mn`` (above) and the
  interference in dB, ``(10 log10 I_mn - obs_offset_db) / obs_scale_db`` (``I_mn`` is an
  interference-to-noise ratio), 0 in empty slots;
* ``C_m`` (``2 Q``): its cooperation vector of the last step (its effective request bits) and
  the links that formed (both agreed), per slot; 0 at reset;
* ``T_m`` (``T``): its last ``T`` cooperation gains (the first term of eq. (12) without
  ``alpha_1``), most recent first, 0 at reset.

The defaults ``obs_offset_db = 30``, ``obs_scale_db = 20`` put the served SNRs and the
neighbour interference of the default setups mostly in ``[-1, 2]``. ``global_state(state)``:
the joint observation, flat, and the last per-UE rates divided by ``RATE_SCALE`` (``M F +
K``).

``info`` (per environment; the scalars are the metrics of the CLI's tables and curves):
``sum_rate`` (bit/s/Hz), ``mean_sinr_db`` (the mean over UEs of ``10 log10 SINR_k``),
``links`` (the number of mutually agreed AP pairs ``{m, n}``, each counted once),
``requests`` (``sum_m sum_n a_mn``, the cost term of eq. (8)), ``coop_rate`` (requests over
the neighbour slots that exist: the cooperation rate of Fig. 3), ``clusters`` (clusters of at
least two APs), ``sum_rate_mrt`` (no cooperation, MRT everywhere, on the same channels),
``efficiency`` (``(sum_rate - sum_rate_mrt) / links``, 0 without links: the paper's
efficiency in bit/s/Hz per link, ``(133.7 - 122.0) / 500 = 0.023`` for its full cooperation,
``12.6 / 194 = 0.065`` for its DRL); per UE (not metrics): ``rate[K]``,
``rate_mrt[K]``, ``sinr_db[K]``. The paper's link counts (500 for full cooperation of 100
APs with at most 4 neighbours each) are neither mutual pairs (at most 200) nor requests (at
most 400); how it counts them is not in the text.

An episode is ``episode_steps`` steps on one drop (default 10; the paper does not say how
long its episodes are), then truncated (never terminated).

Heuristics (``heuristics()``, through the same ``step``; they read the true state): ``none``
(every bit 0: MRT everywhere, the paper's no-cooperation benchmark), ``full`` (every
neighbour slot agreed: the links are the mutual neighbour pairs; the paper's "centralized
full cooperation" reading within the neighbour tables), ``threshold`` (no learning: request
slot ``q`` when ``10 log10 I_mn > threshold_db``; default 30 dB, about the median of the
neighbour interference at the defaults), and two centralized upper references beyond the
paper, ``central_przf`` and ``central_pmmse``.

Centralized references (beyond [AP-COOP]; Demir, Björnson, Sanguinetti, "Foundations of
User-Centric Cell-Free Massive MIMO", section 6.3): the CPU precodes every UE jointly over
all the APs of its serving set ``M_k`` (the same ``D``), with the book's P-RZF (eq. (5.18))
or P-MMSE (eq. (5.16)) vector computed from the same channel estimates the step draws, the
uplink powers ``p = pilot_power_mw`` (the book's duality: the precoders are the uplink
combiners) and, for P-MMSE, the estimation errors ``C_mk = (beta_mk - B_mk) I_N`` (book eqs.
(4.7), (4.9): ``B_mk = sqrt(p) tau_p beta_mk c_mk`` with ``c_mk`` the MMSE coefficient ``est``)
(:func:`cfmimo_jax.cooperation.central_precoders`, on
:func:`cfmimo_jax.processing.central_scaled_all`). The per-AP budget is met as for the
cluster RZF: each AP's ``N``-segment of ``v_k`` normalised (eq. (17)) and ``rho_mk = P /
|K_m|`` on ``K_m`` (with either ``transmit``), so each AP radiates exactly ``P``; the book's
own scaling (one norm over ``M_k``, a power per UE) would not bound every AP. The SINR is
eq. (9) on the true channels, as for every policy; the gap to ``full`` is what cooperation
limited to the neighbour tables leaves on the table. These two act through the same ``step``
by reserved action values outside the action space: when any agent's action is
``CENTRAL_PRZF`` (-1) or ``CENTRAL_PMMSE`` (-2) the whole network uses that precoder (-2
wins; a value below -2 acts as -2), every request bit is 0 (no links, requests, clusters or
request cost: ``links = coop_rate = efficiency = 0``, the reward is ``alpha_1`` times the
gain over MRT), every other info entry as usual. They are references, not teachers (their
actions are not actions of the agents). Cost: ``step_env`` then selects between the cluster
and the two centralized precoders (a ``lax.switch``, a select under ``vmap``), and
``step_batch`` runs that version only when some action of the batch is negative (one
``lax.cond`` per batch), so training and the learned policy pay nothing for it.

At the defaults (8 drops, 3 steps each, mean; the paper's Figs. 4-5 in brackets): none
139.6 bit/s/Hz, 9.80 dB (122.0, 8.48 dB); full 187.6 bit/s/Hz, 13.82 dB, 92.6 links,
280.8 requests, reward 0.153 (133.7, 9.43 dB, "500 links"); threshold 164.8 bit/s/Hz,
11.90 dB, 26.3 links, cooperation rate 0.44, reward 0.100.
The centralized references, on other drops (8 x 3 steps through
``algorithms.evaluation.evaluate_policies``, key 0, where none gives 140.9 and full 187.5
bit/s/Hz): ``central_przf`` 198.2 bit/s/Hz, 14.62 dB; ``central_pmmse`` 199.3 bit/s/Hz,
14.71 dB, 6 % above full cooperation within the neighbour tables. Per network and step they
cost about 0.6x (P-RZF) and 1.2x (P-MMSE) the cluster RZF of full cooperation
(``bench/RESULTS_ap_cooperation.md``).

Values the paper leaves out, chosen here: ``delta = 0.01`` (-20 dB; with the cap of 5, 75 % of
the UEs get 5 APs, 4.4 on average, 1.8 UEs per AP, 16 % of the APs serve none), book section
5.3 for the path loss, shadowing, AP height and UE (pilot) power (100 mW), the power split,
``transmit``, the per-AP reading of eq. (11), ``rzf_alpha``, ``alpha_1..3``, 8 samples for the
metric, 10 steps per episode, the observation sizes ``U = 4`` served UEs and ``T = 3`` past
gains.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate as V
from .._validate import is_number as _is_number
from .._validate import positive_number as _positive
from ..cooperation import (
    _agreement_matrix,
    _central_precoders,
    _clusters,
    _downlink_sinr,
    _interference_power,
    _metric_from_power,
    _neighbours,
    rates,
)
from ..estimation import _pilot_signal
from ..pilots import _threshold_clusters
from ..processing import _cluster_rzf, cluster_serving, mrt_precoders
from ..setup import generate_setup
from . import merge_config, spaces
from .base import MultiAgentEnv

RATE_SCALE = 4.0  # global_state: per-UE rates / 4 bit/s/Hz (about their mean at the defaults)
MAX_Q = 10  # at most 10 neighbour slots (1024 actions)
CENTRAL_PRZF = -1  # reserved action: centralized P-RZF on the serving sets (module docstring)
CENTRAL_PMMSE = -2  # reserved action: centralized P-MMSE on the serving sets
TRANSMIT = ("serving", "cluster")  # who transmits to whom inside a cluster (module docstring)


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class APCooperationParams:
    """Numeric parameters (scalars; a pytree, so sweeps ``vmap`` over them). Units in names;
    meanings in the module docstring."""

    ap_power_mw: float = 1000.0
    pilot_power_mw: float = 100.0
    delta: float = 0.01
    neighbour_ratio: float = 0.05
    rzf_alpha: float = 0.1
    alpha_1: float = 1.0
    alpha_2: float = 0.05
    alpha_3: float = -0.025
    obs_offset_db: float = 30.0
    obs_scale_db: float = 20.0


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class APCooperationState:
    """One drop. gain[M, K] linear gain over noise (per mW); pilot[K] int32; est[M, K] the MMSE
    coefficient (``hhat = est * y``, pilot noise-normalised); D[M, K] serving sets (eq. (2));
    I_nb[M, Q] the metric ``I_{m, idx[m, q]}`` of the neighbour slots (0 where empty),
    I_rel[M, Q] normalised per AP; idx[M, Q] int32 / mask[M, Q] bool the neighbour table;
    obs_static[M, U + 1 + 3 Q] the fixed part of the observations; bits[M, Q] / linked[M, Q]
    the last step's requests and links; hist[M, T] past cooperation gains; rate[K] the last
    rates; t int32 steps done."""

    gain: jax.Array
    pilot: jax.Array
    est: jax.Array
    D: jax.Array
    I_nb: jax.Array
    I_rel: jax.Array
    idx: jax.Array
    mask: jax.Array
    obs_static: jax.Array
    bits: jax.Array
    linked: jax.Array
    hist: jax.Array
    rate: jax.Array
    t: jax.Array


def equal_powers(S, power):
    """``rho_mk = power / |S_m|`` on ``S[M, K]`` (0 elsewhere; an AP with no UE radiates
    nothing)."""
    Sf = S.astype(jnp.result_type(float))
    return power * Sf / jnp.maximum(jnp.sum(Sf, axis=1, keepdims=True), 1.0)


class APCooperation(MultiAgentEnv):
    """The AP-cooperation scenario (module docstring). Static sizes in the constructor."""

    eval_metrics = (
        "sum_rate",
        "mean_sinr_db",
        "links",
        "coop_rate",
        "efficiency",
        "sum_rate_mrt",
    )
    progress_metrics = ("sum_rate", "links", "coop_rate")
    # per-UE SINR of eq. (9) in dB, kept unaveraged by the evaluation (the CDF of Fig. 7)
    sample_metrics = ("sinr_db",)

    def __init__(
        self,
        n_aps: int = 100,
        n_antennas: int = 4,
        n_ues: int = 40,
        tau_p: int = 10,
        tau_c: int = 200,
        side_m: float = 1000.0,
        height_m: float = 10.0,
        shadow_std_db: float = 4.0,
        decorrelation_m: float = 9.0,
        noise_figure_db: float = 7.0,
        bandwidth_hz: float = 20e6,
        max_aps_per_ue: int = 5,
        max_neighbours: int = 4,
        neighbour_per_ap: bool = True,
        metric_exclude_desired: bool = False,
        metric_samples: int = 8,
        threshold_db: float = 30.0,
        obs_users: int = 4,
        obs_history: int = 3,
        episode_steps: int = 10,
        transmit: str = "serving",
    ):
        if transmit not in TRANSMIT:
            raise ValueError(f"transmit must be one of {TRANSMIT}, got {transmit!r}")
        self.transmit = transmit
        self.M = V.positive_int("n_aps", n_aps, minimum=2)
        self.N = V.positive_int("n_antennas", n_antennas)
        self.K = V.positive_int("n_ues", n_ues)
        self.tau_p = V.positive_int("tau_p", tau_p)
        self.tau_c = V.positive_int("tau_c", tau_c)
        if self.tau_p >= self.tau_c:
            raise ValueError(f"tau_p={tau_p} must be smaller than tau_c={tau_c}")
        self.side_m = _positive("side_m", side_m)
        self.height_m = _positive("height_m", height_m)
        self.shadow_std_db = _number("shadow_std_db", shadow_std_db, nonneg=True)
        self.decorrelation_m = _positive("decorrelation_m", decorrelation_m)
        self.noise_figure_db = _number("noise_figure_db", noise_figure_db)
        self.bandwidth_hz = _positive("bandwidth_hz", bandwidth_hz)
        self.max_aps = V.positive_int("max_aps_per_ue", max_aps_per_ue)
        self.Q = V.positive_int("max_neighbours", max_neighbours)
        if self.Q > MAX_Q:
            raise ValueError(f"max_neighbours must be <= {MAX_Q}, got {max_neighbours}")
        self.per_ap = _flag("neighbour_per_ap", neighbour_per_ap)
        self.exclude_desired = _flag("metric_exclude_desired", metric_exclude_desired)
        self.metric_samples = V.positive_int("metric_samples", metric_samples)
        self.threshold_db = _number("threshold_db", threshold_db)
        self.U = V.positive_int("obs_users", obs_users)
        self.T = V.positive_int("obs_history", obs_history)
        self.episode_steps = V.positive_int("episode_steps", episode_steps)
        self.n_agents = self.M
        self.obs_dim = self.U + 1 + 5 * self.Q + self.T
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.obs_dim,))
        self.action_space = spaces.Discrete(2**self.Q)
        self.global_state_space = spaces.Box(-np.inf, np.inf, (self.M * self.obs_dim + self.K,))
        self._central = True  # False: the copy whose step ignores the reserved actions

    def default_params(self, **overrides) -> APCooperationParams:
        return APCooperationParams(**overrides)

    # ---- physics -------------------------------------------------------------------------

    def action_bits(self, actions):
        """``actions[..., M]`` (ints in ``[0, 2^Q)``) ``-> bits[..., M, Q]`` bool, bit ``q``
        = ``(a >> q) & 1`` (slot ``q`` of the neighbour table)."""
        a = jnp.asarray(actions).astype(jnp.int32)[..., None]
        return (jnp.right_shift(a, jnp.arange(self.Q, dtype=jnp.int32)) & 1).astype(bool)

    def bits_to_actions(self, bits):
        """Inverse of :meth:`action_bits`: ``bits[..., M, Q] -> actions[..., M]`` int32."""
        w = jnp.left_shift(1, jnp.arange(self.Q, dtype=jnp.int32))
        return jnp.sum(jnp.asarray(bits).astype(jnp.int32) * w, axis=-1).astype(jnp.int32)

    def channels(self, key, state: APCooperationState, params):
        """One fading realization and its MMSE estimates ``-> (H, Hhat)``, each ``[M, K, N]``
        (``H = sqrt(gain) g``, eq. (1); ``Hhat`` from a pilot transmission, eq. (4)). The
        randomness of a step (``step_env`` draws its channels with its key)."""
        k_h, k_n = jax.random.split(key)
        return self._channels(k_h, k_n, state.gain, state.pilot, state.est, params)

    def _channels(self, k_h, k_n, gain, pilot, est, params):
        rdt = gain.dtype
        cdt = jnp.result_type(rdt, jnp.complex64)
        g = jax.random.normal(k_h, (self.M, self.K, self.N), cdt)  # CN(0, 1) entries
        H = jnp.sqrt(gain)[..., None].astype(cdt) * g
        Y = _pilot_signal(k_n[None], H[None], pilot, params.pilot_power_mw, self.tau_p)[0]
        Hhat = est[..., None].astype(cdt) * Y[:, pilot, :]
        return H, Hhat

    def _mmse_coefficient(self, gain, pilot, params):
        """The MMSE matrix ``sqrt(p) R Psi^{-1}`` of ``R = gain I`` is ``c I`` (book eqs.
        (4.5)-(4.6)), in closed form: ``c_mk = sqrt(p) beta_mk / psi_mk``, ``psi_mk = p tau_p
        sum_{i: t_i = t_k} beta_mi + 1``; ``gain[M, K]``, ``pilot[K]`` ``-> c[M, K]``."""
        p = jnp.asarray(params.pilot_power_mw, gain.dtype)
        w = jax.nn.one_hot(pilot, self.tau_p, dtype=gain.dtype) * (p * self.tau_p)  # [K, tau_p]
        psi = gain @ w + 1.0  # [M, tau_p]
        return jnp.sqrt(p) * gain / psi[:, pilot]

    def precoders(self, labels, Hhat, D, params):
        """``(W[M, K, N], rho[M, K])`` of cluster labels ``[M]``: joint RZF per cluster, MRT
        alone (``cluster_rzf``), restricted to ``D`` with ``transmit = "serving"``; equal power
        split over the UEs each AP transmits to."""
        W = _cluster_rzf(Hhat, labels, D, params.rzf_alpha)
        if self.transmit == "serving":
            W = W * D[..., None].astype(W.dtype)
            rho = equal_powers(D, params.ap_power_mw)
        else:
            rho = equal_powers(cluster_serving(labels, D), params.ap_power_mw)
        return W, rho.astype(jnp.real(Hhat).dtype)

    def error_correlations(self, state: APCooperationState, params):
        """``C[M, K, N, N] = (beta_mk - B_mk) I_N``, the MMSE estimation errors of the step's
        estimates (book eqs. (4.7), (4.9) with ``R = beta I``: ``B_mk = p tau_p beta_mk^2 /
        psi_mk = sqrt(p) tau_p beta_mk c_mk``, ``c_mk = state.est``, ``p = pilot_power_mw``)."""
        rdt = state.gain.dtype
        cdt = jnp.result_type(rdt, jnp.complex64)
        b = jnp.sqrt(jnp.asarray(params.pilot_power_mw, rdt)) * self.tau_p * state.gain * state.est
        err = jnp.maximum(state.gain - b, 0.0)
        return err[..., None, None].astype(cdt) * jnp.eye(self.N, dtype=cdt)

    def central_precoders(self, Hhat, state: APCooperationState, params, scheme: str):
        """``(W[M, K, N], rho[M, K])`` of the centralized reference ``scheme`` (``"p_rzf"`` or
        ``"p_mmse"``, module docstring): the book's vector over each UE's serving set from
        the estimates ``Hhat[M, K, N]``, each AP's segment normalised, ``rho = P / |K_m|``."""
        C = self.error_correlations(state, params)
        p = jnp.asarray(params.pilot_power_mw, jnp.real(Hhat).dtype)
        W = _central_precoders(Hhat, C.astype(Hhat.dtype), state.D, p, scheme, self.max_aps)
        rho = equal_powers(state.D, params.ap_power_mw)
        return W, rho.astype(jnp.real(Hhat).dtype)

    def _evaluate(self, key, state, bits, params, mode=None):
        """Everything a step computes from the effective request ``bits[M, Q]``; ``mode``
        (int32 scalar, with the reserved actions enabled): 0 the clusters of ``bits``, 1
        central P-RZF, 2 central P-MMSE."""
        agree = _agreement_matrix(state.idx, state.mask, bits)
        labels = _clusters(agree)
        H, Hhat = self.channels(key, state, params)
        if mode is None:
            W, rho = self.precoders(labels, Hhat, state.D, params)
        else:
            W, rho = jax.lax.switch(
                mode,
                [
                    lambda: self.precoders(labels, Hhat, state.D, params),
                    lambda: self.central_precoders(Hhat, state, params, "p_rzf"),
                    lambda: self.central_precoders(Hhat, state, params, "p_mmse"),
                ],
            )
        sinr = _downlink_sinr(H, W, rho)
        W0 = mrt_precoders(Hhat, state.D)
        rho0 = equal_powers(state.D, params.ap_power_mw).astype(rho.dtype)
        sinr0 = _downlink_sinr(H, W0, rho0)
        return agree, labels, sinr, sinr0

    # ---- interface ------------------------------------------------------------------------

    def reset_env(self, key, params):
        k_setup, k_metric = jax.random.split(key)
        setup = generate_setup(
            k_setup,
            self.M,
            self.K,
            self.N,
            self.tau_p,
            side=self.side_m,
            height=self.height_m,
            shadow_std_db=self.shadow_std_db,
            decorrelation_m=self.decorrelation_m,
            bandwidth_hz=self.bandwidth_hz,
            noise_figure_db=self.noise_figure_db,
        )
        gain_db = setup.gain_db
        gain = 10.0 ** (gain_db / 10.0)
        pilot = setup.pilot
        D = _threshold_clusters(gain, params.delta, self.max_aps)
        est = self._mmse_coefficient(gain, pilot, params)
        rdt = gain.dtype

        # eq. (7) under no cooperation (MRT, equal powers), averaged over metric_samples draws
        rho0 = equal_powers(D, params.ap_power_mw).astype(rdt)

        def one(k):  # the inner sums of eq. (7) for one draw, [M, K]
            k_h, k_n = jax.random.split(k)
            H, Hhat = self._channels(k_h, k_n, gain, pilot, est, params)
            W0 = mrt_precoders(Hhat, D)
            return _interference_power(H, W0, rho0, D, self.exclude_desired)

        # eq. (7) is linear in the inner sums: average them over the draws, then I once (the
        # draws one after another: a sixth of vmap's memory, and no slower)
        keys = jax.random.split(k_metric, self.metric_samples)
        I = _metric_from_power(jnp.mean(jax.lax.map(one, keys), axis=0), D)
        idx, mask = _neighbours(I, self.Q, params.neighbour_ratio, self.per_ap)
        I_nb = jnp.where(mask, jnp.take_along_axis(I, idx, axis=1), 0.0).astype(rdt)
        top = jnp.max(I_nb, axis=1, keepdims=True)
        I_rel = jnp.where(mask, I_nb / jnp.where(top > 0, top, 1.0), 0.0)

        # the fixed part of the observations
        off, scale = params.obs_offset_db, params.obs_scale_db
        snr_db = gain_db + 10.0 * jnp.log10(params.ap_power_mw)
        vals = jnp.where(D, snr_db, -jnp.inf)
        u = min(self.U, self.K)
        top_u, _ = jax.lax.top_k(vals, u)
        beta = jnp.where(jnp.isfinite(top_u), (top_u - off) / scale, 0.0)
        if u < self.U:
            beta = jnp.concatenate([beta, jnp.zeros((self.M, self.U - u), rdt)], axis=1)
        count = jnp.sum(D, axis=1, keepdims=True).astype(rdt) / self.U
        maskf = mask.astype(rdt)
        I_db = jnp.where(mask, (10.0 * jnp.log10(jnp.where(mask, I_nb, 1.0)) - off) / scale, 0.0)
        obs_static = jnp.concatenate([beta, count, maskf, I_rel, I_db], axis=1).astype(rdt)

        zq = jnp.zeros((self.M, self.Q), bool)
        state = APCooperationState(
            gain=gain,
            pilot=pilot,
            est=est.astype(rdt),
            D=D,
            I_nb=I_nb,
            I_rel=I_rel.astype(rdt),
            idx=idx,
            mask=mask,
            obs_static=obs_static,
            bits=zq,
            linked=zq,
            hist=jnp.zeros((self.M, self.T), rdt),
            rate=jnp.zeros((self.K,), rdt),
            t=jnp.int32(0),
        )
        return self._obs(state), state

    def central_mode(self, actions):
        """``actions[..., M] -> mode[...]`` int32: 0 the agents' clusters, 1 central P-RZF (some
        action is ``CENTRAL_PRZF``), 2 central P-MMSE (some action ``<= CENTRAL_PMMSE``)."""
        a = jnp.asarray(actions).astype(jnp.int32)
        return jnp.clip(-jnp.min(a, axis=-1), 0, 2).astype(jnp.int32)

    def step_env(self, key, state, actions, params):
        actions = jnp.asarray(actions).astype(jnp.int32)
        if self._central:
            mode = self.central_mode(actions)
            bits = self.action_bits(jnp.maximum(actions, 0)) & state.mask & (mode == 0)
        else:
            mode = None
            bits = self.action_bits(actions) & state.mask
        agree, labels, sinr, sinr0 = self._evaluate(key, state, bits, params, mode)
        rdt = state.gain.dtype
        rate = rates(sinr).astype(rdt)
        rate0 = rates(sinr0).astype(rdt)
        Df = state.D.astype(rdt)
        own, own0 = Df @ rate, Df @ rate0
        gain = jnp.where(own0 > 0, (own - own0) / jnp.where(own0 > 0, own0, 1.0), 0.0)
        bf = bits.astype(rdt)
        reward = (
            params.alpha_1 * gain
            - params.alpha_2 * jnp.sum(bf, axis=1)
            - params.alpha_3 * jnp.sum(state.I_rel * bf, axis=1)
        ).astype(rdt)
        linked = jnp.take_along_axis(agree, state.idx, axis=1) & state.mask
        links = jnp.sum(agree).astype(rdt) / 2.0
        requests = jnp.sum(bf)
        slots = jnp.sum(state.mask).astype(rdt)
        size = jnp.sum(labels[:, None] == labels[None, :], axis=1)
        roots = labels == jnp.arange(self.M, dtype=labels.dtype)
        sum_rate, sum_rate0 = jnp.sum(rate), jnp.sum(rate0)
        sinr_db = (10.0 * jnp.log10(sinr)).astype(rdt)
        info = {
            "sum_rate": sum_rate,
            "mean_sinr_db": jnp.mean(sinr_db),
            "links": links,
            "requests": requests,
            "coop_rate": requests / jnp.maximum(slots, 1.0),
            "clusters": jnp.sum(roots & (size >= 2)).astype(rdt),
            "sum_rate_mrt": sum_rate0,
            "efficiency": jnp.where(
                links > 0, (sum_rate - sum_rate0) / jnp.maximum(links, 1.0), 0.0
            ),
            "rate": rate,
            "rate_mrt": rate0,
            "sinr_db": sinr_db,
        }
        t = state.t + 1
        hist = jnp.concatenate([gain[:, None], state.hist[:, :-1]], axis=1)
        state = dataclasses.replace(state, bits=bits, linked=linked, hist=hist, rate=rate, t=t)
        truncated = t >= self.episode_steps
        return self._obs(state), state, reward, jnp.bool_(False), truncated, info

    def step_batch(self, keys, states, actions, params=None):
        """``MultiAgentEnv.step_batch`` (vmapped ``step`` with auto-reset), the centralized
        references computed only when some action of the batch is negative: one ``lax.cond``
        between this environment's step and that of a copy that ignores the reserved actions
        (under an outer ``vmap`` the ``cond`` becomes a select and both run)."""
        if not self._central:
            return super().step_batch(keys, states, actions, params)
        plain = copy.copy(self)
        plain._central = False
        actions = jnp.asarray(actions)
        return jax.lax.cond(
            jnp.any(actions < 0),
            super().step_batch,
            plain.step_batch,
            keys,
            states,
            actions,
            params if params is not None else self.default_params(),
        )

    def _obs(self, state):
        rdt = state.obs_static.dtype
        parts = [state.obs_static, state.bits.astype(rdt), state.linked.astype(rdt), state.hist]
        return jnp.concatenate(parts, axis=1)  # [M, U + 1 + 5 Q + T]

    def global_state(self, state: APCooperationState):
        """The joint observation, flat, and the last per-UE rates / ``RATE_SCALE``."""
        return jnp.concatenate([self._obs(state).reshape(-1), state.rate / RATE_SCALE])

    # ---- heuristics -----------------------------------------------------------------------

    def heuristics(self) -> dict:
        """``{"none", "full", "threshold", "central_przf", "central_pmmse"}`` (module
        docstring), each ``policy(obs[..., M, F], state) -> actions[..., M]`` int32 with the
        leading axes of ``obs`` (the last two: the reserved actions ``CENTRAL_PRZF`` /
        ``CENTRAL_PMMSE`` for every agent)."""
        full = 2**self.Q - 1
        thr = 10.0 ** (self.threshold_db / 10.0)

        def none(obs, state=None):
            return jnp.zeros(jnp.shape(obs)[:-1], jnp.int32)

        def all_on(obs, state=None):
            return jnp.full(jnp.shape(obs)[:-1], full, jnp.int32)

        def threshold(obs, state):
            return self.bits_to_actions((state.I_nb > thr) & state.mask)

        def central(value):
            def policy(obs, state=None):
                return jnp.full(jnp.shape(obs)[:-1], value, jnp.int32)

            return policy

        return {
            "none": none,
            "full": all_on,
            "threshold": threshold,
            "central_przf": central(CENTRAL_PRZF),
            "central_pmmse": central(CENTRAL_PMMSE),
        }


def _number(name, v, *, nonneg=False) -> float:
    if not _is_number(v) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be non-negative, got {v!r}")
    return float(v)


def _flag(name, v) -> bool:
    if not isinstance(v, bool | np.bool_):
        raise ValueError(f"{name} must be true or false, got {v!r}")
    return bool(v)


# Documented default configuration (``cfmimo_jax.envs.make("ap_cooperation", config)``): the
# paper's Table I where it gives a value, every other choice explained in the module docstring.
DEFAULT_CONFIG = {
    "n_aps": 100,  # APs M = agents (Table I)
    "n_antennas": 4,  # antennas per AP (the paper's L, Table I)
    "n_ues": 40,  # single-antenna UEs K (Table I)
    "tau_p": 10,  # pilots, book Algorithm 4.1 (Table I)
    "tau_c": 200,  # coherence block (Table I; rates carry no prelog, as the paper's)
    "side_m": 1000.0,  # square side, wrap-around (Table I)
    "height_m": 10.0,  # AP height over the UEs (book section 5.3)
    "shadow_std_db": 4.0,  # shadowing std (book)
    "decorrelation_m": 9.0,  # shadowing decorrelation distance over UEs (book)
    "noise_figure_db": 7.0,  # (Table I)
    "bandwidth_hz": 20e6,  # 20 MHz (book)
    "ap_power_mw": 1000.0,  # AP transmit power (Table I), split equally over its UEs
    "pilot_power_mw": 100.0,  # UE pilot power (book section 5.3)
    "delta": 0.01,  # eq. (2) threshold (-20 dB; the paper gives none)
    "max_aps_per_ue": 5,  # eq. (2) cap (Table I)
    "max_neighbours": 4,  # Q neighbour slots, Discrete(2^Q) actions (Table I)
    "neighbour_ratio": 0.05,  # eq. (11): gamma_th = 0.05 max I (Table I)
    "neighbour_per_ap": True,  # eq. (11) maximum per AP (false: over the whole matrix)
    "metric_exclude_desired": False,  # eq. (7) without j = k (as printed it includes it)
    "metric_samples": 8,  # fading draws the reset's eq. (7) averages over
    "rzf_alpha": 0.1,  # eq. (16) regularisation (noise-normalised units)
    "alpha_1": 1.0,  # eq. (12): weight of the relative rate gain
    "alpha_2": 0.05,  # eq. (12): cost per request
    "alpha_3": -0.025,  # eq. (12): weight of the normalised interference (< 0: a bonus)
    "threshold_db": 30.0,  # heuristic "threshold": request when I_mn > 30 dB over noise
    "obs_users": 4,  # U served UEs observed per AP
    "obs_history": 3,  # T past cooperation gains observed
    "obs_offset_db": 30.0,  # observed dB values (x - offset) / scale
    "obs_scale_db": 20.0,
    "episode_steps": 10,  # steps per drop, then truncated
    # serving: an AP sends only to its own UEs (its segment of the cluster's RZF), eq. (9) as
    # printed | cluster: every AP of a cluster sends to all of K_C (power split over them)
    "transmit": "serving",
}
_PARAMS = tuple(f.name for f in dataclasses.fields(APCooperationParams))


def make(config: dict | None = None):
    """``(env, params)`` from a config dict over ``DEFAULT_CONFIG`` (module docstring; an
    unknown key or a bad value raises ``ValueError`` naming it)."""
    config = merge_config("ap_cooperation", DEFAULT_CONFIG, config)
    values = {k: config.pop(k) for k in _PARAMS}
    for k, v in values.items():
        _number(k, v)
    for k in ("ap_power_mw", "pilot_power_mw", "rzf_alpha", "obs_scale_db"):
        _positive(k, values[k])
    if not 0.0 < values["delta"] <= 1.0:
        raise ValueError(f"delta must lie in (0, 1], got {values['delta']!r}")
    if not 0.0 <= values["neighbour_ratio"] < 1.0:
        raise ValueError(f"neighbour_ratio must lie in [0, 1), got {values['neighbour_ratio']!r}")
    env = APCooperation(**config)
    return env, env.default_params(**{k: float(v) for k, v in values.items()})
