"""Monte-Carlo SEs split over several devices (``devices=`` of ``uplink_se`` / ``downlink_se`` /
``all_se``): the same numbers as one device, and a ``ValueError`` for each kind of bad value.

Two devices on a CPU need ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` before jax is
imported, so that comparison runs in a subprocess (float64, small shapes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cfmimo_jax import se
from cfmimo_jax.setup import generate_setup

REPO = Path(__file__).resolve().parents[1]

# the arguments of the jitted ``all_se`` call of tests/test_kernel_paths.py (its ``canon``
# setup): the one-device side is then already compiled when this module runs after it
_SETUP = "generate_setup(jax.random.PRNGKey(3), 24, 12, 2, 4, 0.25, 0.25)"

_WORKER = r"""
import json
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from cfmimo_jax import se
from cfmimo_jax.setup import generate_setup

assert len(jax.devices()) == 2, jax.devices()
s = SETUP
rho = jnp.where(s.D, 50.0, 0.0)
# 40 realizations in chunks of 32: 2 chunks, one per device, the second with 24 of weight 0
out = se.all_se(jax.random.PRNGKey(1), s.R, s.pilot, s.D, 100.0, rho, 4, 50, 40, genie=True,
                devices=jax.devices())
res = {d: {k: [float(x) for x in v] for k, v in out[d].items()} for d in out}
res["n_devices"] = len(out["uplink"]["mmse"].sharding.device_set)
print("RESULT " + json.dumps(res))
""".replace("SETUP", _SETUP)


def test_two_devices_match_one():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    env["JAX_PLATFORMS"] = "cpu"
    res = subprocess.run(
        [sys.executable, "-c", _WORKER],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    lines = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    assert res.returncode == 0 and lines, res.stderr[-3000:]
    two = json.loads(lines[0][len("RESULT ") :])
    assert two.pop("n_devices") == 2  # the chunks really were split
    s = generate_setup(jax.random.PRNGKey(3), 24, 12, 2, 4, 0.25, 0.25)
    rho = jnp.where(s.D, 50.0, 0.0)
    one = se.all_se(jax.random.PRNGKey(1), s.R, s.pilot, s.D, 100.0, rho, 4, 50, 40, genie=True)
    for d in ("uplink", "downlink"):
        assert sorted(one[d]) == sorted(two[d])
        for k in one[d]:
            # same realizations; only the order of the float64 sums differs
            np.testing.assert_allclose(two[d][k], np.asarray(one[d][k]), rtol=1e-10, err_msg=k)
    assert float(np.max(np.asarray(one["uplink"]["mmse"]))) > 0.1


@pytest.mark.parametrize(
    "devices, match",
    [
        (0, "devices must be >= 1"),
        (-2, "devices must be >= 1"),
        ("ab", "devices must be an int or a sequence of devices"),
        (1.5, "devices must be an int or a sequence of devices"),
        ([], "devices must be an int or a sequence of devices"),
        ("repeat", "devices must not repeat a device"),
        ("too_many", "only 1 cpu device"),
    ],
)
def test_bad_devices(corr_reuse, devices, match):
    sc = corr_reuse
    if devices == "repeat":
        devices = [jax.devices()[0]] * 2
    elif devices == "too_many":
        devices = len(jax.devices()) + 1
        if jax.devices()[0].platform != "cpu" or len(jax.devices()) != 1:
            pytest.skip("message checked for a single CPU device")
    with pytest.raises(ValueError, match=match):
        se.uplink_se(
            jax.random.PRNGKey(0),
            sc.R,
            sc.pilot,
            sc.D,
            sc.p,
            sc.tau_p,
            sc.tau_c,
            4,
            devices=devices,
        )


def test_one_device_is_the_default(corr_reuse):
    sc = corr_reuse
    args = (jax.random.PRNGKey(0), sc.R, sc.pilot, sc.D, sc.p, sc.rho, sc.tau_p, sc.tau_c, 4)
    a = se.downlink_se(*args, chunk=2)
    b = se.downlink_se(*args, chunk=2, devices=1)
    b2 = se.downlink_se(*args, chunk=2, devices=jax.devices()[:1])
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b2[k]))
