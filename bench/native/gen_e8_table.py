#!/usr/bin/env python3
"""Generates the 256-entry absolute-value table of the 2-bit E8 codebook (kernels/nq_e8.h).

Entry = 8 two-bit digits c_i (coordinate i in bits 2i..2i+1); the absolute value of coordinate i is
c_i + 1/2. The table holds every pattern of squared norm <= 10 (227 patterns: 7 whole permutation
orbits) and 29 of the 56 patterns of the orbit (3/2,3/2,3/2,3/2,3/2,1/2,1/2,1/2) (norm 12), picked
greedily so that each coordinate is 3/2 about equally often (the orbit's patterns are equivalent for
rotated data; balance keeps unrotated data from favouring a channel). Order: by norm, then by the
pattern read as a base-4 number with coordinate 0 most significant.
Run: python3 bench/native/gen_e8_table.py  (prints the initializer pasted into kernels/nq_e8.h)
"""
import itertools

def norm(c):
    return sum((x + 0.5) ** 2 for x in c)

pats = [c for c in itertools.product(range(3), repeat=8) if norm(c) <= 10]
assert len(pats) == 227
orbit = sorted([c for c in itertools.product(range(2), repeat=8) if sum(c) == 5])
assert len(orbit) == 56
counts = [0] * 8
chosen = []
remaining = list(orbit)
for _ in range(29):
    best = min(remaining, key=lambda c: (max(counts[i] + c[i] for i in range(8)), sum((counts[i] + c[i]) ** 2 for i in range(8)), c))
    remaining.remove(best)
    chosen.append(best)
    for i in range(8):
        counts[i] += best[i]
table = sorted(pats + chosen, key=lambda c: (norm(c), c))
assert len(table) == 256 and len(set(table)) == 256
words = [sum(x << (2 * i) for i, x in enumerate(c)) for c in table]
print("// ones per coordinate among the 29 norm-12 patterns:", counts)
for i in range(0, 256, 8):
    print("  " + " ".join("0x%04X," % w for w in words[i:i + 8]) + " \\")
