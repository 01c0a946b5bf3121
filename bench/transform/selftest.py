"""Checks of the transform study's machinery (numpy only; `--codec` also runs the real codec through
codec-bridge.ts, which needs the built addon). Run by test/data/transform-study.test.ts.

  python3 bench/transform/selftest.py [--codec]
"""
import itertools
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import study  # noqa: E402

G = {0: 1.0, 1: 0.36, 2: 0.088, 3: 0.025, 4: 0.0071}


def check_allocation():
    """The DP equals brute force over every rate vector within the budget."""
    rng = np.random.default_rng(1)
    for trial in range(20):
        var = np.sort(rng.exponential(size=4))[::-1] * 10 ** rng.uniform(-2, 2, size=4)
        for rates in (study.RATES, study.RATES_NO_1BIT):
            for budget in range(0, 17):
                got = study.allocate(var, budget, G, rates)
                cost = sum(v * G[r] for v, r in zip(var, got))
                best = min(sum(v * G[r] for v, r in zip(var, combo))
                           for combo in itertools.product(rates, repeat=4) if sum(combo) <= budget)
                assert sum(got) <= budget and all(r in rates for r in got), (got, budget)
                assert math.isclose(cost, best, rel_tol=1e-12), (trial, budget, got, cost, best)


def check_bases():
    for d in (64, 128):
        for m in (study.hadamard(d), study.hadamard_basis(d), study.band_mixer(d)):
            assert np.allclose(m @ m.T, np.eye(d), atol=1e-12)
    x = np.random.default_rng(2).standard_normal((500, 64)) @ np.diag(np.linspace(3, 0.1, 64)) + 0.5
    f = study.Fit(x)
    assert np.allclose(f.transform @ f.transform.T, np.eye(64), atol=1e-10)
    assert np.all(np.diff(f.lam) <= 1e-9) and np.allclose(f.mu, x.mean(0))
    y = (x - f.mu) @ f.transform.T  # the band variances are what the calibration data has
    assert np.allclose((y ** 2).mean(0).reshape(-1, 8).mean(1), f.band_var, rtol=1e-9)


def check_curves():
    curve = {1: 0.1, 2: 0.05, 3: 0.01}
    assert study.needed_budget(curve, 0.2) == 1.0
    assert math.isclose(study.needed_budget(curve, 0.05), 2.0)
    b = study.needed_budget(curve, math.sqrt(0.05 * 0.01))  # halfway in log NMSE
    assert math.isclose(b, 2.5, rel_tol=1e-9), b
    assert study.needed_budget(curve, 0.001) is None
    wf, flat = study.ideal_waterfilling(np.ones(16), 16.0, 2.0)  # equal eigenvalues: no gain
    assert math.isclose(wf, flat, rel_tol=1e-6), (wf, flat)
    wf, flat = study.ideal_waterfilling(np.array([8.0] + [1e-3] * 15), 8.015, 1.0)
    assert wf < flat / 100


def check_codec(workdir):
    """The padding that forces the codec's scale (two codec runs in all):
    - equal band RMS and one rate: the simulation is the plain codec (no rotation) on the same vectors;
    - a band with its own scale is quantized as the codec quantizes it alone, up to the 1/8-octave
      rounding of its stored scale;
    - the shared scale is really forced: bands 100x weaker than the others (calibration said equal)
      are lost under the shared scale, not quantized at their own;
    - a 0-bit band decodes to zero."""
    codec = study.Codec(workdir)
    x = np.random.default_rng(3).standard_normal((2000, 64)).astype(np.float32)
    x[:, :8] *= 4  # one strong band
    weak = x.copy()
    weak[:, 8:32] *= 0.01
    base = {"x": x, "mu": np.zeros(64), "transform": np.eye(64), "sigma": np.ones(8)}
    cases, keys = [], []
    for r in (2, 3, 4):
        for rho in ("energy", "whitened"):
            cases.append({**base, "rates": [r] * 8, "rho": rho})
            keys.append(("equal", r, rho))
        cases.append({**base, "rates": [r] * 8, "rho": "energy", "own_scale_bands": [0]})
        keys.append(("own", r, None))
    cases.append({**base, "x": weak, "rates": [3, 2, 2, 2, 3, 3, 3, 3], "rho": "energy"})
    keys.append(("weak", 2, None))
    cases.append({**base, "rates": [2] * 7 + [0], "rho": "energy"})
    keys.append(("zero", 2, None))
    sims = dict(zip(keys, study.simulate_chunked(codec, cases)))
    refs = codec.run([(x, r, False) for r in (2, 3, 4)] + [(x[:, :8], r, False) for r in (2, 3, 4)] + [(weak[:, 8:32], 2, False)])
    refs = [a.astype(np.float64) for a in refs]
    for i, r in enumerate((2, 3, 4)):
        plain, alone = refs[i], refs[3 + i]
        for rho in ("energy", "whitened"):
            sim = sims[("equal", r, rho)]
            same = np.mean(np.all(np.abs(sim - plain) <= 1e-5 * np.abs(plain).max(), axis=1))
            assert same > 0.99, (r, rho, same)
            assert math.isclose(study.nmse(x, sim), study.nmse(x, plain), rel_tol=1e-3)
        e_own, e_alone = study.nmse(x[:, :8], sims[("own", r, None)][:, :8]), study.nmse(x[:, :8], alone)
        assert abs(e_own / e_alone - 1) < 0.05, (r, e_own, e_alone)
    e_shared = study.nmse(weak[:, 8:32], sims[("weak", 2, None)][:, 8:32])
    e_alone = study.nmse(weak[:, 8:32], refs[6])
    assert e_alone < 0.1 < 0.5 < e_shared, (e_alone, e_shared)
    assert np.all(sims[("zero", 2, None)][:, 56:] == 0)


def main():
    check_allocation()
    check_bases()
    check_curves()
    if "--codec" in sys.argv[1:]:
        with tempfile.TemporaryDirectory(prefix="nq-transform-selftest-") as workdir:
            check_codec(workdir)
    print("selftest ok" + (" (with the codec)" if "--codec" in sys.argv[1:] else ""))


if __name__ == "__main__":
    main()
