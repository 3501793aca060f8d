"""Tests of the ``cfmimo`` command line: configurations, errors, and an end-to-end evaluate."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from cfmimo_cli import evaluate as evaluate_mod
from cfmimo_cli import main as main_mod
from cfmimo_cli.config import (
    ConfigError,
    apply_overrides,
    default_config_text,
    load_config,
    load_default,
    parse_override,
)
from cfmimo_cli.main import main
from cfmimo_jax.se import DOWNLINK_SCHEMES, UPLINK_SCHEMES

REPO = Path(__file__).resolve().parents[1]

TINY = [
    "network.L=6",
    "network.K=4",
    "network.N=2",
    "network.tau_p=2",
    "n_setups=2",
    "n_realizations=8",
]

# the scheme keys evaluate writes: those of cfmimo_jax.se, without the "mr" aliases
UPLINK_KEYS = set(UPLINK_SCHEMES)
DOWNLINK_KEYS = set(DOWNLINK_SCHEMES)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_embedded_default_is_the_configs_file():
    shipped = (REPO / "configs" / "evaluate_canonical.yaml").read_text(encoding="utf-8")
    assert default_config_text("evaluate") == shipped


def test_default_is_the_canonical_setting():
    cfg = load_config()
    assert cfg == load_default()
    net, power = cfg["network"], cfg["power"]
    assert (net["L"], net["K"], net["N"], net["tau_c"], net["tau_p"]) == (100, 40, 4, 200, 10)
    assert net["asd_azimuth_deg"] == net["asd_elevation_deg"] == 15
    assert power["p_mw"] == 100 and power["rho_max_mw"] == 200
    assert power["downlink_exponent"] == 0.5
    assert cfg["seed"] == 0 and cfg["genie"] is False


def test_overrides_are_dotted_and_parsed_as_yaml():
    cfg = load_config(
        overrides=[
            "network.K=20",
            "power.p_mw=50.5",
            "genie=true",
            "seed=7",
            "network.asd_azimuth_deg=null",
            "network.asd_elevation_deg=~",
        ]
    )
    assert cfg["network"]["K"] == 20
    assert cfg["power"]["p_mw"] == 50.5
    assert cfg["genie"] is True
    assert cfg["seed"] == 7
    assert cfg["network"]["asd_azimuth_deg"] is None
    assert cfg["network"]["asd_elevation_deg"] is None
    # the default is untouched
    assert load_default()["network"]["K"] == 40


def test_parse_override():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("x=1e-3") == (["x"], 1e-3)
    assert parse_override("x=hello") == (["x"], "hello")
    assert parse_override("x=[1, 2]") == (["x"], [1, 2])  # lists: for list-valued keys
    for bad in ("novalue", "=3", "a..b=1", "x={a: 1}"):
        with pytest.raises(ConfigError):
            parse_override(bad)
    with pytest.raises(ConfigError, match="not a list"):
        load_config(None, ["network.K=[1, 2]"])


def test_config_file_sets_a_subset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("n_setups: 3\nnetwork:\n  K: 12\n", encoding="utf-8")
    cfg = load_config(path, ["network.N=2"])
    assert cfg["n_setups"] == 3
    assert cfg["network"]["K"] == 12 and cfg["network"]["N"] == 2
    assert cfg["network"]["L"] == 100  # from the default


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("network.bogus=1", "network.bogus"),
        ("bogus=1", "bogus"),
        ("power.p_mw.x=1", "power.p_mw"),
        ("network=3", "network"),
    ],
)
def test_unknown_or_misplaced_key_is_refused(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(overrides=[override])


def test_unknown_key_in_file_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("network:\n  M: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"network\.M"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["network.K=-1"], "network.K"),
        (["network.L=0"], "network.L"),
        (["network.N=2.5"], "network.N"),
        (["n_setups=0"], "n_setups"),
        (["n_realizations=true"], "n_realizations"),
        (["seed=-1"], "seed"),
        (["devices=0"], "devices"),
        (["devices=two"], "devices"),
        (["devices=true"], "devices"),
        (["genie=maybe"], "genie"),
        (["power.p_mw=-100"], "power.p_mw"),
        (["power.rho_max_mw=0"], "power.rho_max_mw"),
        (["power.downlink_exponent=.nan"], "power.downlink_exponent"),
        (["network.asd_azimuth_deg=-5"], "network.asd_azimuth_deg"),
        (["network.asd_azimuth_deg=null"], "asd_elevation_deg"),
        (["network.tau_p=300"], "network.tau_p"),
        (["network.tau_p=20", "network.tau_c=20"], "network.tau_c"),
    ],
)
def test_bad_values_are_refused_with_the_parameter_named(overrides, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(overrides=overrides)


def test_apply_overrides_copies():
    base = load_default()
    out = apply_overrides(base, ["network.K=3"])
    assert out["network"]["K"] == 3 and base["network"]["K"] == 40


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def test_bad_value_exits_before_any_compute(tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("compute started")

    monkeypatch.setattr(evaluate_mod, "_kernels", boom)
    out = tmp_path / "out"
    assert main(["evaluate", "network.tau_p=250", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "network.tau_p" in err and "tau_c" in err
    assert not out.exists()
    assert main(["evaluate", "network.nope=1", "--out", str(out)]) == 2
    assert "network.nope" in capsys.readouterr().err


def test_print_config(capsys):
    assert main(["evaluate", "network.K=7", "--print-config"]) == 0
    assert "K: 7" in capsys.readouterr().out


def test_reproduce_bad_input(capsys):
    assert main(["reproduce", "nope-paper"]) == 2
    assert "paper must be one of" in capsys.readouterr().err
    assert main(["reproduce", "aps-gnn", "methods=[aps_gnn, magic]", "--print-config"]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err
    assert main(["reproduce", "aps-gnn", "scenarios=[huge_pedestrian]", "--print-config"]) == 2
    assert "huge_pedestrian" in capsys.readouterr().err
    assert main(["reproduce", "aps-gnn", "seeds=[]", "--print-config"]) == 2
    assert "seeds" in capsys.readouterr().err
    assert main(["reproduce", "aps-gnn", "seeds=[3]", "--print-config"]) == 0
    assert "- 3" in capsys.readouterr().out


def test_reproduce_compile_cache_dir(monkeypatch):
    """A sweep's persistent compilation cache: OUT/.jax_cache by default, a given folder, none
    with ``off``, and JAX's own environment variable wins; the flag parses."""
    from cfmimo_cli.main import build_parser, compile_cache_dir

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    assert compile_cache_dir(None, "results/x") == str(Path("results/x") / ".jax_cache")
    assert compile_cache_dir("/tmp/c", "results/x") == "/tmp/c"
    assert compile_cache_dir("off", "results/x") is None
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/tmp/jax")
    assert compile_cache_dir(None, "results/x") is None
    ns = build_parser().parse_args(["reproduce", "xl-uplink", "--compile-cache", "off"])
    assert ns.compile_cache == "off"


def test_bench_without_script(monkeypatch, capsys):
    monkeypatch.setattr(main_mod, "_find_bench_script", lambda: None)
    assert main(["bench", "--quick"]) == 2
    assert "not implemented yet (see issues)" in capsys.readouterr().err


def test_bench_passes_arguments_through(monkeypatch, tmp_path):
    script = tmp_path / "bench" / "bench_kernels.py"
    script.parent.mkdir()
    marker = tmp_path / "args.json"
    script.write_text(
        f"import json, sys\njson.dump(sys.argv[1:], open({str(marker)!r}, 'w'))\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(main_mod, "_find_bench_script", lambda: script)
    assert main(["bench", "--help", "--n", "3"]) == 0
    assert json.loads(marker.read_text()) == ["--help", "--n", "3"]


def test_module_help():
    res = subprocess.run(
        [sys.executable, "-m", "cfmimo_cli", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    for command in ("train", "evaluate", "reproduce", "bench"):
        assert command in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "cfmimo_cli", "evaluate", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 0 and "--out" in res.stdout


# --------------------------------------------------------------------------------------------
# evaluate, end to end
# --------------------------------------------------------------------------------------------


def _check_outputs(out: Path, n_setups: int, K: int, ul_keys: set, dl_keys: set) -> dict:
    with (out / "per_ue_se.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["setup", "ue", "direction", "scheme", "se"]
    assert len(rows) == n_setups * K * (len(ul_keys) + len(dl_keys))
    assert {r["scheme"] for r in rows if r["direction"] == "uplink"} == ul_keys
    assert {r["scheme"] for r in rows if r["direction"] == "downlink"} == dl_keys
    assert all(float(r["se"]) >= 0.0 for r in rows)

    summary = json.loads((out / "summary.json").read_text())
    for key in ("config", "se", "wall_time_s", "environment"):
        assert key in summary
    assert summary["environment"]["backend"]
    assert set(summary["se"]["uplink"]) == ul_keys
    assert set(summary["se"]["downlink"]) == dl_keys
    for stats in (*summary["se"]["uplink"].values(), *summary["se"]["downlink"].values()):
        assert set(stats) >= {"median", "mean", "p5", "p95"}
        assert stats["p5"] <= stats["median"] <= stats["p95"]
        assert stats["n"] == n_setups * K

    png = out / "se_cdf.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return summary


def test_evaluate_plumbing_with_stand_in_kernels(tmp_path, monkeypatch, capsys):
    """The command line's plumbing (genie keys included) with tiny stand-in kernels."""
    import jax
    import jax.numpy as jnp

    Setup = namedtuple("Setup", "gain_db R pilot D ap_pos ue_pos")

    def generate_setup(key, L, K, N, tau_p, asd_azimuth=None, asd_elevation=None):
        gain_db = 10.0 * jax.random.uniform(key, (L, K))
        R = 10.0 ** (gain_db / 10.0)[..., None, None] * jnp.eye(N)
        D = gain_db >= gain_db.max(axis=0, keepdims=True)
        pilot = jnp.arange(K, dtype=jnp.int32) % tau_p
        return Setup(gain_db, R, pilot, D, jnp.zeros((L, 2)), jnp.zeros((K, 2)))

    def fractional_downlink(gain, D, rho_max, exponent=0.5):
        w = jnp.where(D, gain**exponent, 0.0)
        return rho_max * w / jnp.maximum(w.sum(axis=1, keepdims=True), 1e-30)

    def all_se(key, R, pilot, D, p, rho, tau_p, tau_c, n, genie=False, devices=None):
        snr = jnp.einsum("lknn,lk->k", R, D).real * p
        base = (tau_c - tau_p) / tau_c * jnp.log2(1.0 + snr * jax.random.uniform(key))
        ul = {k: base * (i + 1) / 10 for i, k in enumerate(sorted(UPLINK_KEYS))}
        dl = {k: base * (i + 1) / 10 for i, k in enumerate(sorted(DOWNLINK_KEYS))}
        if genie:
            ul |= {f"{k}_genie": v for k, v in ul.items()}
            dl |= {f"{k}_genie": v for k, v in dl.items()}
        return {"uplink": ul, "downlink": dl}

    monkeypatch.setattr(
        evaluate_mod, "_kernels", lambda: (generate_setup, fractional_downlink, all_se)
    )
    out = tmp_path / "out"
    assert main(["evaluate", *TINY, "n_setups=3", "genie=true", "--out", str(out)]) == 0
    ul = UPLINK_KEYS | {f"{k}_genie" for k in UPLINK_KEYS}
    dl = DOWNLINK_KEYS | {f"{k}_genie" for k in DOWNLINK_KEYS}
    summary = _check_outputs(out, 3, 4, ul, dl)
    assert summary["config"]["genie"] is True
    printed = capsys.readouterr().out
    assert "lp_mmse_lsfd" in printed and "median" in printed


def test_evaluate_devices_two_equal_one(tmp_path):
    """``devices=2`` in a fresh process (the command exposes two host devices itself) splits
    each setup's realizations over both CPU devices and gives the one-device numbers (float64
    on both sides; 24 realizations = two chunks of 16, one per device, the second padded)."""
    overrides = [*TINY, "n_realizations=24"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
    # conftest's compile-speed flag only; the command adds the host device count itself
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "cfmimo_cli", "evaluate", *overrides, "devices=2"]
    run = subprocess.run(
        [*cmd, "--out", str(two), "--no-progress"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    s2 = json.loads((two / "summary.json").read_text())
    assert s2["environment"]["devices"] == ["cpu:0", "cpu:1"] and s2["environment"]["x64"]
    assert s2["config"]["devices"] == 2
    one = tmp_path / "one"
    assert main(["evaluate", *overrides, "--out", str(one), "--no-progress"]) == 0
    s1 = json.loads((one / "summary.json").read_text())
    assert s1["config"]["devices"] == 1 and len(s1["environment"]["devices"]) == 1
    for direction, schemes in s1["se"].items():
        for scheme, stats in schemes.items():
            for name, value in stats.items():
                got = s2["se"][direction][scheme][name]
                assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (scheme, name)


def test_evaluate_passes_devices_to_all_se(tmp_path, monkeypatch):
    """The configured device count reaches ``all_se`` (recorded by a stand-in that then runs
    the real kernel on this process's one device), and the command asks XLA for that many
    host devices through ``XLA_FLAGS`` (restored after the test)."""
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    generate_setup, fractional_downlink, all_se = evaluate_mod._kernels()
    seen = []

    def recording_all_se(*args, devices=None, **kwargs):
        seen.append(devices)
        return all_se(*args, **kwargs)

    monkeypatch.setattr(
        evaluate_mod, "_kernels", lambda: (generate_setup, fractional_downlink, recording_all_se)
    )
    out = tmp_path / "out"
    assert main(["evaluate", *TINY, "devices=3", "--out", str(out), "--no-progress"]) == 0
    assert seen == [3]
    assert "--xla_force_host_platform_device_count=3" in os.environ["XLA_FLAGS"]
    seen.clear()
    assert main(["evaluate", *TINY, "--out", str(out), "--no-progress"]) == 0
    assert seen == [None]


def test_evaluate_end_to_end_tiny(tmp_path, capsys):
    """The real kernels through ``main()`` on a tiny network."""
    out = tmp_path / "evaluate"
    assert main(["evaluate", *TINY, "--out", str(out), "--no-progress"]) == 0
    summary = _check_outputs(out, 2, 4, UPLINK_KEYS, DOWNLINK_KEYS)
    assert summary["config"]["network"]["L"] == 6
    se = summary["se"]
    # sanity of the physics: positive SEs, MMSE at least as good as MR (centralized uplink)
    assert se["uplink"]["mmse"]["mean"] > 0.0
    assert se["uplink"]["mmse"]["mean"] >= se["uplink"]["mr_central"]["mean"] - 1e-6
    assert "mmse" in capsys.readouterr().out
