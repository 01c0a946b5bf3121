#!/usr/bin/env python3
"""The 1-bit band code's scale factor and its distortion (issue 26; kernels/nq_e8_root.h).

The code is the E8 lattice's 240 minimal vectors and the origin. A band y of a calibrated transform
is coded as the point nearest u = y / (f * sigma); this finds the factor f with the least NMSE on
Gaussian bands (nq_scale.h kScaleFactor1) and prints the NMSE there (GROUP_NMSE[1] in
src/transform/codec-distortion.ts). Brute force over the 241 points, 400,000 groups, seed 1.

  python3 bench/transform/rate1-scale.py
"""
import itertools

import numpy as np


def points():
    pts = [np.zeros(8)]
    for i, j in itertools.combinations(range(8), 2):
        for si in (1, -1):
            for sj in (1, -1):
                p = np.zeros(8)
                p[i], p[j] = si, sj
                pts.append(p)
    for bits in range(128):
        s = np.array([-1.0 if (bits >> k) & 1 else 1.0 for k in range(7)] + [1.0])
        if np.sum(s < 0) % 2:
            s[7] = -1.0
        pts.append(0.5 * s)
    return np.array(pts)


def nmse(y, p, f):
    u = y / f
    idx = np.argmin(-2 * (u @ p.T) + (p ** 2).sum(1)[None, :], axis=1)
    return float(((y - f * p[idx]) ** 2).sum() / (y ** 2).sum())


def main():
    p = points()
    y = np.random.default_rng(1).standard_normal((400_000, 8))
    grid = [round(1.3 + 0.05 * k, 2) for k in range(15)]
    results = {f: nmse(y, p, f) for f in grid}
    for f, e in results.items():
        print(f"f = {f:.2f}: NMSE {e:.4f}")
    best = min(results, key=results.get)
    print(f"best f = {best:.2f}, NMSE {results[best]:.4f} ({10 * np.log10(results[best]):.2f} dB)")


if __name__ == "__main__":
    main()
