"""Figures of the command line (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "plot_bars",
    "plot_cdfs",
    "plot_curves",
    "plot_latency",
    "plot_learning_curves",
    "plot_points",
    "plot_se_cdf",
    "plot_se_vs_active_aps",
    "scheme_label",
    "sort_schemes",
]

# Uplink keys of cfmimo_jax.se.uplink_se (cfmimo_jax.se.UPLINK_SCHEMES); "mr_central" is
# centralized MR, "mr_dist" distributed MR ("mr": the kernels' alias of "mr_central").
_UPLINK = {
    "mmse": ("MMSE", "C0"),
    "p_mmse": ("P-MMSE", "C1"),
    "p_rzf": ("P-RZF", "C2"),
    "mr_central": ("MR (centralized)", "C3"),
    "mr": ("MR (centralized)", "C3"),
    "l_mmse": ("L-MMSE", "C4"),
    "lp_mmse": ("LP-MMSE", "C5"),
    "mr_dist": ("MR (distributed)", "C6"),
}
# Downlink keys of cfmimo_jax.se.downlink_se (cfmimo_jax.se.DOWNLINK_SCHEMES); "mr_dist" is
# distributed MR ("mr": the kernels' alias of "mr_dist").
_DOWNLINK = {
    "mmse": ("MMSE", "C0"),
    "p_mmse": ("P-MMSE", "C1"),
    "p_rzf": ("P-RZF", "C2"),
    "l_mmse": ("L-MMSE", "C4"),
    "lp_mmse": ("LP-MMSE", "C5"),
    "mr_dist": ("MR (distributed)", "C6"),
    "mr": ("MR (distributed)", "C6"),
}
_CENTRALIZED = {"mmse", "p_mmse", "p_rzf"}


def _split(scheme: str) -> tuple[str, bool, bool]:
    """``"lp_mmse_lsfd_genie"`` -> ``("lp_mmse", lsfd=True, genie=True)``."""
    base, lsfd, genie = scheme, False, False
    if base.endswith("_genie"):
        base, genie = base[: -len("_genie")], True
    if base.endswith("_lsfd"):
        base, lsfd = base[: -len("_lsfd")], True
    return base, lsfd, genie


def sort_schemes(direction: str, schemes) -> list[str]:
    """Scheme keys in the book's order: centralized first, each a = 1 before optimal LSFD,
    genie-aided after the others; unknown keys last, alphabetically."""
    table = _UPLINK if direction == "uplink" else _DOWNLINK
    order = list(table)

    def rank(scheme: str):
        base, lsfd, genie = _split(scheme)
        known = base in table
        return (genie, not known, order.index(base) if known else 0, base, lsfd)

    return sorted(schemes, key=rank)


def _style(direction: str, scheme: str) -> tuple[str, str | None, str, bool]:
    """(label, colour, line style, genie) of a scheme key such as ``lp_mmse_lsfd``."""
    table = _UPLINK if direction == "uplink" else _DOWNLINK
    base, lsfd, genie = _split(scheme)
    label, colour = table.get(base, (base, None))
    centralized = base in _CENTRALIZED or (direction == "uplink" and base in ("mr", "mr_central"))
    style = "-" if centralized else "--"
    if lsfd:
        label += " + opt. LSFD"
        style = ":"
    if genie:
        label += " (genie)"
    return label, colour, style, genie


def scheme_label(direction: str, scheme: str) -> str:
    """Human-readable name of a scheme key, e.g. ``lp_mmse_lsfd`` -> ``LP-MMSE + opt. LSFD``."""
    return _style(direction, scheme)[0]


def plot_se_cdf(
    per_ue: dict[str, dict[str, np.ndarray]],
    path: str | Path,
    config: dict[str, Any] | None = None,
) -> Path:
    """Empirical CDFs of the per-UE SE, one panel per direction (like the book's Figs. 5.x/6.x).

    ``per_ue[direction][scheme]`` holds the per-UE SEs of all setups. Centralized schemes are
    solid, distributed dashed, optimal LSFD dotted; genie-aided curves are thin and faded.
    """
    path = Path(path)
    directions = [d for d in ("uplink", "downlink") if per_ue.get(d)]
    fig, axes = plt.subplots(
        1, len(directions), figsize=(6.0 * len(directions), 4.4), squeeze=False
    )
    legends = []
    for ax, direction in zip(axes[0], directions, strict=True):
        for scheme in sort_schemes(direction, per_ue[direction]):
            se = np.sort(np.asarray(per_ue[direction][scheme], dtype=np.float64).ravel())
            cdf = np.arange(1, se.size + 1) / se.size
            label, colour, style, genie = _style(direction, scheme)
            ax.step(
                se,
                cdf,
                where="post",
                color=colour,
                linestyle=style,
                linewidth=1.0 if genie else 1.8,
                alpha=0.55 if genie else 1.0,
                label=label,
            )
        ax.set_title(direction.capitalize())
        ax.set_xlabel("Spectral efficiency [bit/s/Hz]")
        ax.set_ylabel("CDF")
        ax.set_ylim(0.0, 1.0)
        ax.set_xlim(left=0.0)
        ax.grid(True, alpha=0.3)
        legend = ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
        legend.set_in_layout(False)  # below the axes; savefig's tight bbox makes room for it
        legends.append(legend)
    if config is not None:
        net, power = config["network"], config["power"]
        title = fig.suptitle(
            f"L={net['L']} APs, N={net['N']}, K={net['K']} UEs, tau_p={net['tau_p']}, "
            f"tau_c={net['tau_c']}, p={power['p_mw']} mW, rho_max={power['rho_max_mw']} mW; "
            f"{config['n_setups']} setups x {config['n_realizations']} realizations",
            fontsize=9,
        )
        legends.append(title)
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight", bbox_extra_artists=legends)
    plt.close(fig)
    return path


_CURVES = (
    ("episode_return", "episode return (mean reward per agent)"),
    ("episode_cost", "episode cost (mean per agent)"),
    ("mean_se", "mean SE (bit/s/Hz)"),
    ("frac_target", "fraction of UEs meeting the target"),
    ("active_aps", "active APs"),
    ("lagrange", "Lagrange multiplier"),
    ("entropy", "policy entropy"),
    ("ent_coef", "entropy coefficient"),
    ("val_reward", "validation reward (greedy)"),
    ("val_cost", "validation cost (greedy)"),
    ("approx_kl", "approx. KL"),
    ("sum_se", "sum SE (bit/s/Hz)"),
    ("critic_loss", "critic loss (TD, squared)"),
    ("td_loss", "TD loss"),
    ("q", "mean Q of the batch"),
    ("noise_std", "exploration noise std"),
    ("epsilon", "epsilon"),
)


def plot_learning_curves(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Learning curves against environment steps, one panel per metric in ``rows``."""
    panels = [(k, label) for k, label in _CURVES if rows and k in rows[0]]
    n = max(len(panels), 1)
    cols = 4 if n > 4 else n
    nrows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.8 * nrows), squeeze=False)
    x = np.array([r["env_steps"] for r in rows], dtype=float)
    for ax, (key, label) in zip(axes.ravel(), panels, strict=False):
        y = np.array([r[key] for r in rows], dtype=float)
        if key.startswith("episode_"):
            ok = np.array([r.get("episodes", 1) > 0 for r in rows])
            x_k, y = x[ok], y[ok]
        else:
            x_k = x
        ax.plot(x_k, y, lw=1.2)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("environment steps", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_se_vs_active_aps(table: list[dict[str, Any]], se_target: float, path: str | Path):
    """Mean SE against active APs, one panel per scenario (APS-GNN Figs. 5-6): learned
    methods as filled markers, heuristics as open ones, error bars = 95 % CI over seeds."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in table))
    n = len(scenarios)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.0), squeeze=False)
    markers = "osD^v<>ph*"
    for ax, sc in zip(axes[0], scenarios, strict=True):
        rows = [r for r in table if r["scenario"] == sc]
        for i, r in enumerate(rows):
            learned = r["kind"] == "learned"
            xe = r.get("active_aps_ci95", float("nan"))
            ye = r.get("mean_se_ci95", float("nan"))
            ax.errorbar(
                r["active_aps"],
                r["mean_se"],
                xerr=None if np.isnan(xe) else xe,
                yerr=None if np.isnan(ye) else ye,
                fmt=markers[i % len(markers)],
                color=f"C{i % 10}",
                mfc=f"C{i % 10}" if learned else "none",
                ms=7,
                capsize=2,
                label=r["policy"],
            )
        ax.axhline(se_target, color="k", ls="--", lw=0.8, label="SE target")
        ax.set_title(sc.replace("_", ", "))
        ax.set_xlabel("active APs")
        ax.set_ylabel("mean SE per UE (bit/s/Hz)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_latency(rows: list[dict[str, Any]], path: str | Path):
    """Per-decision inference latency of every policy for one network, log axis (APS-GNN
    Fig. 7): grouped bars per scenario."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    val = {(r["scenario"], r["policy"]): r["latency_ms"] for r in rows}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(scenarios) * len(policies) / 3), 4.0))
    width = 0.8 / max(len(policies), 1)
    x = np.arange(len(scenarios))
    for i, p in enumerate(policies):
        ys = [val.get((sc, p), np.nan) for sc in scenarios]
        ax.bar(x + i * width - 0.4 + width / 2, ys, width, label=p, color=f"C{i % 10}")
    ax.set_xticks(x)
    ax.set_xticklabels([sc.replace("_", "\n") for sc in scenarios])
    ax.set_yscale("log")
    ax.set_ylabel("per-decision latency (ms), one network")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bars(groups: dict[str, list[tuple[str, float, float]]], ylabel: str, path: str | Path):
    """Grouped bars with error bars: ``groups[panel] = [(label, value, half_width), ...]``,
    one panel per group (e.g. one per scenario variant)."""
    n = max(len(groups), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (title, rows) in zip(axes.ravel(), groups.items(), strict=False):
        labels = [r[0] for r in rows]
        vals = np.array([r[1] for r in rows], float)
        err = np.array([0.0 if np.isnan(r[2]) else r[2] for r in rows], float)
        ax.bar(
            range(len(rows)), vals, yerr=err, capsize=3, color=[f"C{i}" for i in range(len(rows))]
        )
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_curves(
    panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]],
    ylabel: str,
    path: str | Path,
    xlabel: str = "episodes",
):
    """Training curves over seeds: ``panels[title][label] = (x, mean, half_width)``, the mean
    as a line and the 95 % interval shaded (where finite), one panel per title."""
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.4), squeeze=False)
    for ax, (title, curves) in zip(axes.ravel(), panels.items(), strict=False):
        for i, (label, (x, y, h)) in enumerate(curves.items()):
            x, y, h = (np.asarray(a, float) for a in (x, y, h))
            ax.plot(x, y, lw=1.3, color=f"C{i % 10}", label=label)
            if np.isfinite(h).any():
                h = np.nan_to_num(h)
                ax.fill_between(x, y - h, y + h, color=f"C{i % 10}", alpha=0.2, lw=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_points(
    points: list[tuple[str, float, float, float, float, bool]],
    xlabel: str,
    ylabel: str,
    path: str | Path,
):
    """One marker per ``(label, x, x_half, y, y_half, filled)`` with 95 % error bars (NaN:
    none); filled markers for this project's values, open ones for published ones."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    markers = "osD^v<>ph*"
    for i, (label, x, xe, y, ye, filled) in enumerate(points):
        ax.errorbar(
            x,
            y,
            xerr=None if np.isnan(xe) else xe,
            yerr=None if np.isnan(ye) else ye,
            fmt=markers[i % len(markers)],
            color=f"C{i % 10}",
            mfc=f"C{i % 10}" if filled else "none",
            ms=7,
            capsize=2,
            label=label,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_cdfs(panels: dict[str, dict[str, np.ndarray]], xlabel: str, path: str | Path):
    """Empirical CDFs, ``panels[title][label] = samples`` (any shape, pooled), one step curve
    ``F(x) = #{samples <= x} / n`` per label, one panel per title; an empty panel (no samples)
    says so."""
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.8 * n, 3.6), squeeze=False)
    for ax, (title, curves) in zip(axes.ravel(), panels.items(), strict=False):
        drawn = 0
        for i, (label, x) in enumerate(curves.items()):
            x = np.sort(np.asarray(x, np.float64).ravel())
            if not x.size:
                continue
            ax.step(
                x,
                np.arange(1, x.size + 1) / x.size,
                where="post",
                color=f"C{i % 10}",
                lw=1.4,
                label=label,
            )
            drawn += 1
        if drawn:
            ax.legend(fontsize=7, loc="lower right")
        else:
            ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("CDF", fontsize=8)
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
