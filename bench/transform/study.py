"""Transform-coding study (issue 26, part 1: measure first).

Would a calibrated per-layer, per-KV-head PCA basis with reverse water-filling bit allocation over the
E8 codes beat today's flat scheme (Hadamard rotation, one FP16 scale per vector, equal bits for every
8-dim group)? For each model, layer, KV head and tensor (post-RoPE K as the cache stores it, pre-RoPE
K, V) this script

  1. captures the vectors from a float32 forward pass (collect.py) on calibration text and on
     different test text;
  2. fits the basis on the calibration text (mean, eigenvectors of the covariance);
  3. predicts the NMSE of both schemes at the operating points from the calibration spectrum and the
     codec's per-group NMSE measured on Gaussian data, and simulates both schemes end-to-end on the
     test text with the real codec (codec-bridge.ts: quantizeSync/dequantizeSync), sweeping the PCA
     scheme's bit budget to find the bits it needs to match the flat scheme;
  4. measures attention-logit, attention-output and attention-KL errors with the queries of the same
     forward pass; and checks the calibrated basis on out-of-distribution text (random tokens).

Scheme (ii), simulated exactly as a fixed-size codec could store it (see README.md):
  y = B8 · Uᵀ (x − μ)          U: calibrated eigenvectors (descending), μ: calibrated mean,
                               B8: an 8-point Hadamard with sign flips inside each band of 8
                               coefficients (equalizes the variances inside a band)
  band b has calibrated RMS σ_b and R_b ∈ {0,1,2,3,4} bits/dim (Σ 8 R_b = the flat code bits)
  one FP16 scale per vector, from ρ² = Σ‖y_b‖² / Σ 8σ_b² over the coded bands (R_b ≥ 1; `--rho
  whitened`: the mean square of y_b / σ_b instead):
    R_b ≥ 2: the E8 code at R_b bits of y_b / σ_b with the codec's scale k_R · ρ (k_R as today);
    R_b = 1: ASSUMED sign code (no 1-bit E8 code exists): ŷ = sqrt(2/π) · ρ · σ_b · sign(y_b);
    R_b = 0: ŷ_b = 0.
  The codec chooses its scale from the RMS of what it is given, so a band set at rate R is quantized
  as one vector padded with constant elements whose energy makes that RMS exactly ρ (the pad is
  quantized too and discarded): the codes of the real bands are those a codec with scale k_R·ρ writes.

Run from the repository root (after `NEXUSQUANT_CUDA=OFF npm run build:native`):
  npx tsx bench/transform/random-models.ts /tmp/nq-transform/models
  /usr/bin/python3 bench/transform/study.py --random-dir /tmp/nq-transform/models \\
      --out bench/results/transform-study
"""
import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "bench", "model"))

import numpy as np  # noqa: E402

import collect  # noqa: E402
import corpus  # noqa: E402

GROUP = 8
MAX_HEAD_DIM = 8192  # FORMAT_LIMITS.maxHeadDim: the longest vector the codec takes
RATES = (0, 1, 2, 3, 4)
RATES_NO_1BIT = (0, 2, 3, 4)
# Flat code bits per dim of the operating points; with one FP16 scale per vector at head_dim 64 that is
# 1.5, 2.25 and 3.25 bits per element (1.375, 2.125, 3.125 at head_dim 128). 1.25 has no flat E8 code:
# the flat scheme time-shares 2-bit groups and (assumed) 1-bit sign groups.
OPERATING_POINTS = (1.25, 2.0, 3.0)
# A band with its own per-vector scale stores it in one byte: 8 bits, one band-bit of the budget.
OWN_SCALE_BITS = GROUP
SIGN_GAIN = math.sqrt(2 / math.pi)  # E|y| / RMS(y) of a Gaussian: the sign code's reconstruction level
TENSORS = ("k_post", "k_pre", "v")
# PCA variants: rate set, and whether the strongest band may get its own one-byte scale (chosen per head
# and budget on the calibration text). pca_shared (one shared scale only, the simplest format) is
# simulated at the operating points only.
VARIANTS = {"pca": (RATES, True), "pca_no1bit": (RATES_NO_1BIT, True), "pca_shared": (RATES, False)}
SEED = 26


# --------------------------------------------------------------------------------------------- text

def text_windows(kind, split, count, length, vocab, tokenizer, seed=SEED):
    """`count` windows of `length` token ids. Speeches of the split concatenated from a fixed start
    (each window starts at its own speech); "random": ids uniform over the vocabulary (seeded)."""
    if split == "random":
        rng = np.random.default_rng(seed)
        low = 1 if kind == "bpe" else 0  # id 0 is <|endoftext|> for the BPE model
        return [rng.integers(low, vocab, size=length).tolist() for _ in range(count)]
    path = os.path.join(REPO, "bench", "model", "data", f"sotu-{split}.txt.xz")
    speeches = corpus.read_corpus(path)
    starts = {"heldout": [3, 14, 8, 19], "train": [40, 150, 95, 190]}[split]
    windows = []
    for start in starts[:count]:
        ids = []
        for s in speeches[start:]:
            if kind == "bpe":
                ids += [0] + tokenizer.encode(s["text"])
            else:
                ids += list(("\n\n" + s["text"]).encode("utf-8"))
            if len(ids) >= length:
                break
        windows.append(ids[:length])
    return windows


# ------------------------------------------------------------------------------------------- codec

class Codec:
    """Batches quantize→dequantize jobs through codec-bridge.ts (one tsx process per batch)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.calls = 0
        self.elements = 0
        self.scale_clamped = 0  # band sets whose RMS could not be padded down to ρ (see simulate)
        self.scale_vectors = 0

    def run(self, jobs):
        """jobs: [(array [N, headDim] float32, bits, rotate)] → list of dequantized arrays."""
        if not jobs:
            return []
        specs = []
        for i, (a, bits, rotate) in enumerate(jobs):
            a = np.ascontiguousarray(a, dtype="<f4")
            inp = os.path.join(self.workdir, f"in{i}.f32")
            a.tofile(inp)
            specs.append({"input": inp, "output": os.path.join(self.workdir, f"out{i}.f32"),
                          "headDim": int(a.shape[1]), "bits": int(bits), "rotate": bool(rotate)})
            self.elements += a.size
        jobs_path = os.path.join(self.workdir, "jobs.json")
        with open(jobs_path, "w") as f:
            json.dump(specs, f)
        subprocess.run(["npx", "tsx", os.path.join(HERE, "codec-bridge.ts"), "codec", jobs_path], cwd=REPO, check=True)
        self.calls += 1
        out = []
        for spec, (a, _, _) in zip(specs, jobs):
            out.append(np.fromfile(spec["output"], dtype="<f4").reshape(a.shape).astype(np.float32))
            os.remove(spec["input"])
            os.remove(spec["output"])
        return out


def ratio_query(head_dim, kv_heads, rows):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"headDim": head_dim, "kvHeads": kv_heads, "rows": rows}, f)
        path = f.name
    try:
        out = subprocess.run(["npx", "tsx", os.path.join(HERE, "codec-bridge.ts"), "ratio", path], cwd=REPO,
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.remove(path)
    return json.loads(out)


# --------------------------------------------------------------------------------------- transforms

def hadamard(n):
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    assert h.shape[0] == n, "head_dim must be a power of two for the Sylvester Hadamard"
    return h / math.sqrt(n)


def random_signs(n, seed):
    return np.where(np.random.default_rng(seed).integers(0, 2, size=n) == 1, -1.0, 1.0)


def hadamard_basis(d):
    """The flat scheme's transform (rows = output coordinates): H·D, like the codec's rotation."""
    return hadamard(d) * random_signs(d, SEED)[None, :]


def band_mixer(d):
    """Block-diagonal 8-point Hadamard with sign flips: mixes the 8 coefficients of each band."""
    h8 = hadamard(GROUP) * random_signs(GROUP, SEED + 1)[None, :]
    return np.kron(np.eye(d // GROUP), h8)


class Fit:
    """Calibration of one (tensor, layer, head): mean, eigen-decomposition, PCA transform, band RMS."""

    def __init__(self, x):
        x = x.astype(np.float64)
        self.d = x.shape[1]
        self.mu = x.mean(0)
        xc = x - self.mu
        cov = xc.T @ xc / len(x)
        lam, u = np.linalg.eigh(cov)
        order = np.argsort(lam)[::-1]
        self.lam = np.maximum(lam[order], 0.0)
        self.u = u[:, order]
        self.energy = float((x ** 2).sum(1).mean())  # E‖x‖², mean included
        self.transform = band_mixer(self.d) @ self.u.T
        # = E y_b² in the calibration data; floored (1e-6 of the mean per-dim energy) so that a band the
        # calibration saw as empty (rank-deficient data) cannot blow up when whitened.
        self.band_var = np.maximum(self.lam.reshape(-1, GROUP).mean(1), 1e-6 * self.energy / self.d)


def band_energy(x, mu, transform):
    """Mean square per band (per element) of the coefficients of x in a basis."""
    y = (x.astype(np.float64) - mu) @ transform.T
    return (y ** 2).mean(0).reshape(-1, GROUP).mean(1)


# --------------------------------------------------------------------------------------- simulation

def simulate(codec, cases):
    """End-to-end reconstruction of each case through one codec batch. A case is either today's codec
    ({x, mu, plain_bits}: quantize(x − mu) with the Hadamard rotation, + mu) or the transform codec of
    the module docstring ({x, mu, transform, sigma, rates})."""
    prepared, jobs, where = [], [], []
    for ci, c in enumerate(cases):
        x = c["x"].astype(np.float64)
        if "plain_bits" in c:
            where.append((ci, None, 0, None))
            jobs.append(((x - c["mu"]).astype(np.float32), c["plain_bits"], True))
            prepared.append(None)
            continue
        n, d = x.shape
        nb = d // GROUP
        rates = np.asarray(c["rates"])
        sigma = c["sigma"]
        y = ((x - c["mu"]) @ c["transform"].T).reshape(n, nb, GROUP)
        w = y / sigma[None, :, None]
        # Bands with their own per-vector scale (the codec's, on that band alone) leave the shared one.
        own = np.zeros(nb, dtype=bool)
        own[list(c.get("own_scale_bands", ()))] = True
        own &= rates >= 2
        coded = (rates >= 1) & ~own
        n_coded = int(coded.sum())
        if not n_coded:
            rho2 = np.zeros(n)
        elif c["rho"] == "energy":  # coded energy over its calibrated expectation (Σ‖y_b‖² / Σ 8σ_b²)
            rho2 = (y[:, coded] ** 2).sum((1, 2)) / (GROUP * (sigma[coded] ** 2).sum())
        else:  # "whitened": mean square of the whitened coded coefficients y_b / σ_b
            rho2 = (w[:, coded] ** 2).sum((1, 2)) / (GROUP * n_coded)
        w_hat = np.zeros_like(w)
        for b in np.flatnonzero(own):
            # Own scale of the band, stored in OWN_SCALE_BITS bits: log2 of the band's RMS rounded to
            # 1/8 octave (±4.4%); forced on the codec by padding the band to exactly that RMS.
            sel = np.zeros(nb, dtype=bool)
            sel[b] = True
            band = w[:, b]
            rms = np.sqrt((band ** 2).mean(1))
            target = np.where(rms > 0, 2.0 ** (np.round(8 * np.log2(np.maximum(rms, 1e-30))) / 8), 0.0)
            fill = np.sqrt(np.maximum(target ** 2 * 2 * GROUP - (band ** 2).sum(1), 0.0) / GROUP)
            vec = np.concatenate([band, np.repeat(fill[:, None], GROUP, axis=1)], axis=1)
            where.append((ci, sel, 1, slice(None)))
            jobs.append((vec.astype(np.float32), int(rates[b]), False))
        for r in (2, 3, 4):
            sel = (rates == r) & ~own
            n_r = int(sel.sum())
            if n_r == 0:
                continue
            sub = w[:, sel].reshape(n, GROUP * n_r)
            energy = (sub ** 2).sum(1)
            # Pad elements needed to bring the RMS down to ρ: with whitened ρ, 8·n_coded always suffice
            # (‖sub‖² ≤ 8·n_coded·ρ²); with energy ρ a vector whose weak bands carry far more than their
            # calibrated share needs more, so vectors go in buckets of padding 8·n_coded·2^k, up to the
            # codec's largest head_dim; beyond it the codec's larger scale is used (counted).
            base = GROUP * n_coded
            with np.errstate(divide="ignore", invalid="ignore"):
                need_pad = np.where(rho2 > 0, energy / np.maximum(rho2, 1e-300) - GROUP * n_r, 0.0)
            k = np.ceil(np.log2(np.maximum(need_pad / base, 1.0))).astype(int)
            k = np.minimum(k, int(math.log2((MAX_HEAD_DIM - GROUP * n_r) // base)))
            codec.scale_vectors += n
            for kk in np.unique(k):
                idx = np.flatnonzero(k == kk)
                pad = base * 2 ** int(kk)
                need = rho2[idx] * (GROUP * n_r + pad) - energy[idx]
                codec.scale_clamped += int((need < -1e-9 * energy[idx]).sum())
                fill = np.sqrt(np.maximum(need, 0.0) / pad)
                vec = np.concatenate([sub[idx], np.repeat(fill[:, None], pad, axis=1)], axis=1)
                where.append((ci, sel, n_r, idx))
                jobs.append((vec.astype(np.float32), r, False))
        sel1 = rates == 1
        if sel1.any():
            w_hat[:, sel1] = SIGN_GAIN * np.sqrt(rho2)[:, None, None] * np.sign(w[:, sel1])
        prepared.append((w_hat, sigma, n, d))
    plain = {}
    for (ci, sel, n_r, idx), out in zip(where, codec.run(jobs)):
        if sel is None:
            plain[ci] = out.astype(np.float64) + cases[ci]["mu"]
            continue
        w_hat = prepared[ci][0]
        rows = w_hat[idx]
        rows[:, sel] = out[:, :GROUP * n_r].astype(np.float64).reshape(-1, n_r, GROUP)
        w_hat[idx] = rows
    result = []
    for ci, (c, prep) in enumerate(zip(cases, prepared)):
        if prep is None:
            result.append(plain[ci])
            continue
        w_hat, sigma, n, d = prep
        y_hat = (w_hat * sigma[None, :, None]).reshape(n, d)
        result.append(c["mu"] + y_hat @ c["transform"])
    return result


def simulate_chunked(codec, cases, max_elements=12_000_000):
    """simulate() in batches of at most max_elements input elements, yielding one reconstruction per
    case, so that memory stays bounded on big sweeps while each codec process (a few seconds to start)
    gets a sizeable batch."""
    batch, size = [], 0
    for c in cases:
        if batch and size + c["x"].size > max_elements:
            yield from simulate(codec, batch)
            batch, size = [], 0
        batch.append(c)
        size += c["x"].size
    if batch:
        yield from simulate(codec, batch)


def flat_rates(d, bits):
    """Per-band rates of the flat scheme at `bits` per dim: equal, or 2/1-bit time-sharing at 1.25."""
    nb = d // GROUP
    if float(bits).is_integer():
        return [int(bits)] * nb
    n2 = round(nb * (bits - 1))
    return [2] * n2 + [1] * (nb - n2)


def nmse(x, x_hat):
    x = x.astype(np.float64)
    return float(((x - x_hat) ** 2).sum() / (x ** 2).sum())


def allocate(band_var, budget, g, rates=RATES):
    """Reverse water-filling on the codec's curve: rates per band (Σ R_b ≤ budget, in band-bits of 8 bits)
    minimizing Σ σ_b² g(R_b), by exact dynamic programming."""
    nb = len(band_var)
    inf = float("inf")
    best = [[inf] * (budget + 1) for _ in range(nb + 1)]
    choice = [[None] * (budget + 1) for _ in range(nb + 1)]
    best[0][0] = 0.0
    for b in range(nb):
        for s in range(budget + 1):
            if best[b][s] == inf:
                continue
            for r in rates:
                if s + r <= budget:
                    cost = best[b][s] + band_var[b] * g[r]
                    if cost < best[b + 1][s + r]:
                        best[b + 1][s + r] = cost
                        choice[b + 1][s + r] = r
    # At most the budget: with {0, 2, 3, 4} an odd budget may leave one band-bit unused.
    s = min(range(budget + 1), key=lambda k: (best[nb][k], -k))
    if best[nb][s] == inf:
        raise ValueError(f"budget {budget} not reachable with rates {rates}")
    out = []
    for b in range(nb, 0, -1):
        r = choice[b][s]
        out.append(r)
        s -= r
    return out[::-1]


def predicted_nmse(band_var, energy, rates, g):
    return float(GROUP * sum(v * g[r] for v, r in zip(band_var, rates)) / energy)


def ideal_waterfilling(lam, energy, bits):
    """Gaussian rate-distortion (reverse water-filling on the eigenvalues, mean free) at `bits` per dim,
    and the flat bound 2^(-2 bits): the ideal gain, codec aside."""
    lam = np.maximum(np.asarray(lam, dtype=np.float64), 1e-30)
    target = bits * len(lam)
    lo, hi = 1e-30, float(lam.max())
    for _ in range(200):
        theta = math.sqrt(lo * hi)
        rate = float(np.maximum(0.0, 0.5 * np.log2(lam / theta)).sum())
        lo, hi = (theta, hi) if rate > target else (lo, theta)
    return float(np.minimum(theta, lam).sum() / energy), 2.0 ** (-2 * bits)


def needed_budget(curve, target):
    """Smallest (interpolated in log NMSE) budget whose NMSE reaches target; curve: {budget: nmse}."""
    pts = sorted(curve.items())
    if pts[0][1] <= target:
        return float(pts[0][0])
    for (b0, e0), (b1, e1) in zip(pts, pts[1:]):
        if e1 <= target:
            return b0 + (math.log(e0) - math.log(target)) / (math.log(e0) - math.log(e1)) * (b1 - b0)
    return None


# ------------------------------------------------------------------------------------------ attention

def attention_errors(q, k, v, k_hat, v_hat):
    """Sums over causal (query, key) pairs of one query head and window: logit error, output errors
    (K only, V only, both) and KL(softmax exact ‖ softmax with k_hat)."""
    import torch
    q, k, v, k_hat, v_hat = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (q, k, v, k_hat, v_hat))
    t, d = q.shape
    causal = torch.ones(t, t, dtype=torch.bool).triu(1)
    s = (q @ k.T) / math.sqrt(d)
    s_hat = (q @ k_hat.T) / math.sqrt(d)
    keep = ~causal
    diff = (s_hat - s)[keep]
    logit = s[keep]
    logp = torch.log_softmax(s.masked_fill(causal, float("-inf")), dim=-1)
    logp_hat = torch.log_softmax(s_hat.masked_fill(causal, float("-inf")), dim=-1)
    p, p_hat = logp.exp(), logp_hat.exp()
    kl = (p * (logp - logp_hat)).masked_fill(causal, 0.0).sum(-1)
    o = p @ v
    return {
        "pairs": int(keep.sum()), "rows": t,
        "logit_err_sq": float((diff.double() ** 2).sum()), "logit_centered_sq": float(((logit - logit.mean()).double() ** 2).sum()),
        "out_sq": float((o.double() ** 2).sum()),
        "out_err_k_sq": float(((p_hat @ v - o).double() ** 2).sum()),
        "out_err_v_sq": float(((p @ v_hat - o).double() ** 2).sum()),
        "out_err_kv_sq": float(((p_hat @ v_hat - o).double() ** 2).sum()),
        "kl_sum": float(kl.double().sum()),
    }


def summarize_attention(acc):
    return {
        "logit_rmse": math.sqrt(acc["logit_err_sq"] / acc["pairs"]),
        "logit_std": math.sqrt(acc["logit_centered_sq"] / acc["pairs"]),
        "out_rel_mse_k": acc["out_err_k_sq"] / acc["out_sq"],
        "out_rel_mse_v": acc["out_err_v_sq"] / acc["out_sq"],
        "out_rel_mse_kv": acc["out_err_kv_sq"] / acc["out_sq"],
        "kl_per_row": acc["kl_sum"] / acc["rows"],
    }


def add_into(acc, part):
    for key, value in part.items():
        acc[key] = acc.get(key, 0) + value


# ------------------------------------------------------------------------------------------- study

def db(a, b):
    return 10 * math.log10(a / b) if a > 0 and b > 0 else None


def rnd(x, digits=5):
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return [rnd(v, digits) for v in x]
    if isinstance(x, dict):
        return {k: rnd(v, digits) for k, v in x.items()}
    if isinstance(x, float):
        return float(f"{x:.{digits}g}") if x != 0 else 0.0
    return x


def gaussian_curve(codec, d, n=16384):
    """The codec's NMSE per group at each rate on i.i.d. Gaussian vectors of head_dim d, through the
    same simulation path (identity basis, unit band RMS) as scheme (ii); and, as a cross-check of the
    padding, the plain codec (quantize with rotation) on the same data."""
    x = np.random.default_rng(SEED).standard_normal((n, d)).astype(np.float32)
    eye = np.eye(d)
    cases = [{"x": x, "mu": np.zeros(d), "transform": eye, "sigma": np.ones(d // GROUP), "rates": [r] * (d // GROUP), "rho": "energy"}
             for r in (1, 2, 3, 4)]  # with equal band RMS both ways of computing ρ agree
    sims = simulate_chunked(codec, cases)
    plain = codec.run([(x, r, True) for r in (2, 3, 4)])
    g = {0: 1.0}
    for r, xh in zip((1, 2, 3, 4), sims):
        g[r] = nmse(x, xh)
    return g, {r: nmse(x, xh) for r, xh in zip((2, 3, 4), plain)}


def study_model(name, spec, codec, g, args, log):
    t0 = time.time()
    cfg, weights = collect.load_model(spec["dir"])
    shape = collect.shape_of(cfg)
    d, L, KV, H = shape["head_dim"], shape["layers"], shape["kv_heads"], shape["heads"]
    nb = d // GROUP
    rep = H // KV
    tokenizer = None
    if spec["tokens"] == "bpe":
        import bpe
        tokenizer = bpe.ByteLevelBPE.load(os.path.join(spec["dir"], "tokenizer.json"))
    T = args.tokens
    windows = {
        "calib": text_windows(spec["tokens"], "train", spec["windows"], T, shape["vocab"], tokenizer),
        "test": text_windows(spec["tokens"], "heldout", spec["windows"], T, shape["vocab"], tokenizer),
        "shift": text_windows(spec["tokens"], "random", 1, T, shape["vocab"], tokenizer),
        # Calibration where there is no structure to find: other random tokens (its own seed).
        "calib_random": text_windows(spec["tokens"], "random", spec["windows"], T, shape["vocab"], tokenizer, seed=SEED + 1),
    }
    data, losses = {}, {}
    for split, ws in windows.items():
        data[split], losses[split] = collect.capture_windows(cfg, weights, ws)
    del weights
    log(f"{name}: captured {sum(len(w) for w in windows.values())} windows of {T} tokens in {time.time() - t0:.0f}s")
    theta = cfg.get("rope_theta", 10000.0)

    def vectors(split, tensor, layer, head):
        return data[split][tensor][layer, head].reshape(-1, d)  # [W·T, d]

    heads = [(layer, head) for layer in range(L) for head in range(KV)]
    fits = {(t, l, h): Fit(vectors("calib", t, l, h)) for t in TENSORS for (l, h) in heads}
    had = hadamard_basis(d)

    # Errors (sums of squared error and energy) per (split, variant, tensor, layer, head, bits); the
    # reconstructions themselves are kept only where the attention check needs them.
    errors, recon, vector_errors = {}, {}, {}
    keep = {("flat", "k_post"), ("flat", "v"), ("pca", "k_post"), ("pca", "k_pre"), ("pca", "v"),
            ("pca_no1bit", "k_post"), ("pca_no1bit", "v")}

    def record(key, x, x_hat):
        split, variant, t = key[0], key[1], key[2]
        x = x.astype(np.float64)
        per_vector = ((x - x_hat) ** 2).sum(1)
        errors[key] = (float(per_vector.sum()), float((x ** 2).sum()))
        if variant == "flat" or variant.removesuffix("_randcal") in VARIANTS:
            vector_errors[key] = per_vector
        if split == "test" and (variant, t) in keep:
            recon[key] = x_hat.astype(np.float32)

    # Flat scheme at every operating point: the plain codec for integer bits (exactly today's
    # quantize), the simulation with a Hadamard basis for 1.25 bits; also with the calibrated mean
    # subtracted (a gain that needs no basis).
    cases, keys = [], []
    for split in ("test", "shift"):
        for t in TENSORS:
            for (l, h) in heads:
                x = vectors(split, t, l, h)
                f = fits[(t, l, h)]
                for bits in OPERATING_POINTS:
                    for variant, mu in (("flat", np.zeros(d)), ("flat_mean", f.mu)):
                        if float(bits).is_integer():
                            cases.append({"x": x, "mu": mu, "plain_bits": int(bits)})
                        else:
                            cases.append({"x": x, "mu": mu, "transform": had, "sigma": np.ones(nb), "rates": flat_rates(d, bits), "rho": args.rho})
                        keys.append((split, variant, t, l, h, bits))
    for key, out in zip(keys, simulate_chunked(codec, cases)):
        record(key, vectors(key[0], key[2], key[3], key[4]), out)
    log(f"{name}: flat scheme done ({time.time() - t0:.0f}s)")

    # PCA scheme: allocation from the calibration spectrum; sweep of the budget on the test text (for
    # the equal-distortion rate), the operating points also on the shifted text. Variants (VARIANTS):
    # with and without the assumed 1-bit code, and whether the strongest band gets its own one-byte
    # scale (paid from the code budget), chosen per head and budget on the calibration text.
    lo, hi = 1, (7 * nb) // 2
    step = 1 if nb <= 8 else 2
    op_budgets = {round(nb * b): b for b in OPERATING_POINTS}
    sweep_budgets = sorted(set(list(range(lo, hi + 1, step)) + list(op_budgets)))
    calib_sample = {key: vectors("calib", *key)[::max(1, len(vectors("calib", *key)) // 1024)] for key in fits}

    def case(f, x, alloc):
        rates, own = alloc
        return {"x": x, "mu": f.mu, "transform": f.transform, "sigma": np.sqrt(f.band_var), "rates": rates, "own_scale_bands": own,
                "rho": args.rho}

    def choose_allocations(fits_, samples, budgets, only_ops):
        """Allocation of every (tensor, layer, head, budget, variant): DP on the calibrated band
        variances, and for the variants that may give the strongest band its own scale, the better of
        with and without, simulated on the calibration sample."""
        options = []
        for t in TENSORS:
            for (l, h) in heads:
                f = fits_[(t, l, h)]
                for budget in budgets:
                    for variant, (rate_set, own_choice) in VARIANTS.items():
                        if (variant == "pca_shared" or only_ops) and budget not in op_budgets:
                            continue
                        for n_own in ((0, 1) if own_choice else (0,)):
                            code_budget = budget - n_own * OWN_SCALE_BITS // GROUP  # the scale byte is paid in band-bits
                            if code_budget < 1:
                                continue
                            rates = allocate(f.band_var, code_budget, g, rate_set)
                            if n_own and rates[0] < 2:
                                continue  # a band without an E8 code has no scale of its own
                            options.append(((t, l, h, budget, variant), (rates, list(range(n_own)))))
        best = {}
        cases = [case(fits_[key[:3]], samples[key[:3]], alloc) for key, alloc in options]
        for (key, alloc), out in zip(options, simulate_chunked(codec, cases)):
            x = samples[key[:3]].astype(np.float64)
            err = float(((x - out) ** 2).sum())
            if key not in best or err < best[key][0]:
                best[key] = (err, alloc)
        return {key: alloc for key, (_, alloc) in best.items()}

    allocs = choose_allocations(fits, calib_sample, sweep_budgets, False)
    log(f"{name}: allocations chosen on the calibration text ({time.time() - t0:.0f}s)")
    sweep = {}
    for t in TENSORS:
        keys = [(t, l, h, budget, variant) for (l, h) in heads for budget in sweep_budgets for variant in VARIANTS
                if (t, l, h, budget, variant) in allocs]
        cases = [case(fits[k[:3]], vectors("test", *k[:3]), allocs[k]) for k in keys]
        for (t_, l, h, budget, variant), out in zip(keys, simulate_chunked(codec, cases)):
            x = vectors("test", t, l, h).astype(np.float64)
            sweep[(variant, t, l, h, budget)] = (float(((x - out) ** 2).sum()), float((x ** 2).sum()))
            if budget in op_budgets:
                record(("test", variant, t, l, h, op_budgets[budget]), x, out)
        log(f"{name}: PCA sweep of {t} done ({time.time() - t0:.0f}s)")
    keys = [(t, l, h, round(nb * bits), variant, bits) for t in TENSORS for (l, h) in heads for bits in OPERATING_POINTS for variant in VARIANTS]
    cases = [case(fits[k[:3]], vectors("shift", *k[:3]), allocs[k[:5]]) for k in keys]
    for (t, l, h, _, variant, bits), out in zip(keys, simulate_chunked(codec, cases)):
        record(("shift", variant, t, l, h, bits), vectors("shift", t, l, h), out)
    log(f"{name}: shifted-text check done ({time.time() - t0:.0f}s)")

    # No structure at all: basis and allocation calibrated on random tokens, tested on other random
    # tokens (the shift text). Variant names get a "_randcal" suffix.
    fits_rand = {(t, l, h): Fit(vectors("calib_random", t, l, h)) for t in TENSORS for (l, h) in heads}
    rand_sample = {key: vectors("calib_random", *key)[::max(1, len(vectors("calib_random", *key)) // 1024)] for key in fits_rand}
    allocs_rand = choose_allocations(fits_rand, rand_sample, sorted(op_budgets), True)
    keys = [(t, l, h, round(nb * bits), variant, bits) for t in TENSORS for (l, h) in heads for bits in OPERATING_POINTS for variant in VARIANTS]
    cases = [case(fits_rand[k[:3]], vectors("shift", *k[:3]), allocs_rand[k[:5]]) for k in keys]
    for (t, l, h, _, variant, bits), out in zip(keys, simulate_chunked(codec, cases)):
        record(("shift", variant + "_randcal", t, l, h, bits), vectors("shift", t, l, h), out)
    log(f"{name}: random-calibrated check done ({time.time() - t0:.0f}s)")

    def err_nmse(key):
        e, energy = errors[key]
        return e / energy

    def guarded_nmse(split, variant, t, l, h, bits):
        """Per-vector guard: the encoder keeps whichever of the flat and the PCA code reconstructs the
        vector better (one flag bit per vector; the FP16 scale's sign bit is free, scales are >= 0)."""
        e_flat = vector_errors[(split, "flat", t, l, h, bits)]
        e_pca = vector_errors[(split, variant, t, l, h, bits)]
        return float(np.minimum(e_flat, e_pca).sum()) / errors[(split, "flat", t, l, h, bits)][1]

    # Per head results.
    result_heads = {t: [] for t in TENSORS}
    for t in TENSORS:
        for (l, h) in heads:
            f = fits[(t, l, h)]
            x_test = vectors("test", t, l, h)
            test_energy = float((x_test.astype(np.float64) ** 2).sum(1).mean())
            test_band = band_energy(x_test, f.mu, f.transform)
            test_fit = Fit(x_test)
            lam_n = f.lam / f.lam.sum()
            entry = {
                "layer": l, "head": h,
                "spectrum_calib": rnd((f.lam / f.energy).tolist(), 4),
                "spectrum_test": rnd((test_fit.lam / test_fit.energy).tolist(), 4),
                "mean_energy_fraction": rnd(float(f.mu @ f.mu / f.energy)),
                "coding_gain_db": rnd(10 * math.log10(float(lam_n.mean()) / math.exp(float(np.log(np.maximum(lam_n, 1e-30)).mean())))),
                "effective_rank": rnd(math.exp(-float((lam_n * np.log(np.maximum(lam_n, 1e-30))).sum()))),
                "top8_energy_test": rnd(float(test_band[0] * GROUP / test_energy)),
                "band_var_calib": rnd((f.band_var / (f.energy / d)).tolist(), 4),
                "band_var_test": rnd((test_band / (test_energy / d)).tolist(), 4),
                "points": {},
                "sweep": {},
            }
            for bits in OPERATING_POINTS:
                budget = round(nb * bits)
                fr = flat_rates(d, bits)
                p = {
                    "flat": {"measured": err_nmse(("test", "flat", t, l, h, bits)),
                             "predicted": sum(g[r] for r in fr) / nb,
                             "shift_measured": err_nmse(("shift", "flat", t, l, h, bits))},
                    "flat_mean": {"measured": err_nmse(("test", "flat_mean", t, l, h, bits)),
                                  "shift_measured": err_nmse(("shift", "flat_mean", t, l, h, bits))},
                }
                for variant in VARIANTS:
                    rates, own = allocs[(t, l, h, budget, variant)]
                    err, energy = sweep[(variant, t, l, h, budget)]
                    p[variant] = {
                        "rates": rates,
                        "own_scale_bands": own,
                        "predicted": predicted_nmse(f.band_var, f.energy, rates, g),
                        "predicted_test_energy": predicted_nmse(test_band, test_energy, rates, g),
                        "measured": err / energy,
                        "shift_measured": err_nmse(("shift", variant, t, l, h, bits)),
                        "guarded_measured": guarded_nmse("test", variant, t, l, h, bits),
                        "guarded_shift_measured": guarded_nmse("shift", variant, t, l, h, bits),
                        "random_calibrated_on_random": err_nmse(("shift", variant + "_randcal", t, l, h, bits)),
                        "random_calibrated_on_random_guarded": guarded_nmse("shift", variant + "_randcal", t, l, h, bits),
                    }
                ideal_wf, ideal_flat = ideal_waterfilling(f.lam, f.energy, bits)
                p["ideal_gaussian"] = {"waterfilling": ideal_wf, "flat": ideal_flat, "gain_db": db(ideal_flat, ideal_wf)}
                p["gain_db"] = {
                    "measured": db(p["flat"]["measured"], p["pca"]["measured"]),
                    "predicted": db(p["flat"]["predicted"], p["pca"]["predicted"]),
                    "measured_no1bit": db(p["flat"]["measured"], p["pca_no1bit"]["measured"]),
                    "measured_shared_scale": db(p["flat"]["measured"], p["pca_shared"]["measured"]),
                    "mean_only": db(p["flat"]["measured"], p["flat_mean"]["measured"]),
                    "shift_measured": db(p["flat"]["shift_measured"], p["pca"]["shift_measured"]),
                    "shift_measured_no1bit": db(p["flat"]["shift_measured"], p["pca_no1bit"]["shift_measured"]),
                    "guarded_measured": db(p["flat"]["measured"], p["pca"]["guarded_measured"]),
                    "guarded_shift_measured": db(p["flat"]["shift_measured"], p["pca"]["guarded_shift_measured"]),
                    "random_calibrated_on_random": db(p["flat"]["shift_measured"], p["pca"]["random_calibrated_on_random"]),
                }
                entry["points"][str(bits)] = p
            for variant in ("pca", "pca_no1bit"):
                curve = {b: sweep[(variant, t, l, h, b)][0] / sweep[(variant, t, l, h, b)][1] for b in sweep_budgets}
                pred_curve = {b: predicted_nmse(f.band_var, f.energy, allocs[(t, l, h, b, variant)][0], g) for b in sweep_budgets}
                entry["sweep"][variant] = {str(b): rnd(v) for b, v in curve.items()}
                entry["needed_bits"] = entry.get("needed_bits", {})
                for bits in OPERATING_POINTS:
                    need = needed_budget(curve, entry["points"][str(bits)]["flat"]["measured"])
                    need_pred = needed_budget(pred_curve, entry["points"][str(bits)]["flat"]["predicted"])
                    entry["needed_bits"][f"{variant}@{bits}"] = {
                        "measured": None if need is None else need * GROUP / d,
                        "predicted": None if need_pred is None else need_pred * GROUP / d,
                    }
            result_heads[t].append(rnd(entry))

    # Pooled over every layer and head (one fixed budget per vector for the whole model).
    overall = {}
    for t in TENSORS:
        o = {"points": {}, "needed_bits": {}}
        for bits in OPERATING_POINTS:
            def pooled(split, variant, guarded=False):
                err = energy = 0.0
                for (l, h) in heads:
                    e, en = errors[(split, variant, t, l, h, bits)]
                    if guarded:
                        e = float(np.minimum(vector_errors[(split, "flat", t, l, h, bits)], vector_errors[(split, variant, t, l, h, bits)]).sum())
                    err, energy = err + e, energy + en
                return err / energy

            row = {v: pooled("test", v) for v in ("flat", "flat_mean", *VARIANTS)}
            row["pca_guarded"] = pooled("test", "pca", True)
            row["shift"] = {v: pooled("shift", v) for v in ("flat", "flat_mean", *VARIANTS)}
            row["shift"]["pca_guarded"] = pooled("shift", "pca", True)
            row["shift"]["pca_no1bit_guarded"] = pooled("shift", "pca_no1bit", True)
            row["shift"]["pca_randcal"] = pooled("shift", "pca_randcal")
            row["shift"]["pca_randcal_guarded"] = pooled("shift", "pca_randcal", True)
            row["shift"]["gain_db_randcal"] = db(row["shift"]["flat"], row["shift"]["pca_randcal"])
            row["shift"]["gain_db_randcal_guarded"] = db(row["shift"]["flat"], row["shift"]["pca_randcal_guarded"])
            row["gain_db"] = db(row["flat"], row["pca"])
            row["gain_db_no1bit"] = db(row["flat"], row["pca_no1bit"])
            row["gain_db_shared_scale"] = db(row["flat"], row["pca_shared"])
            row["gain_db_guarded"] = db(row["flat"], row["pca_guarded"])
            row["gain_db_mean_only"] = db(row["flat"], row["flat_mean"])
            row["shift"]["gain_db"] = db(row["shift"]["flat"], row["shift"]["pca"])
            row["shift"]["gain_db_guarded"] = db(row["shift"]["flat"], row["shift"]["pca_guarded"])
            heads_t = result_heads[t]
            row["heads_pca_worse"] = sum(1 for e in heads_t if e["points"][str(bits)]["pca"]["measured"] > e["points"][str(bits)]["flat"]["measured"])
            row["heads_pca_worse_shift"] = sum(1 for e in heads_t if e["points"][str(bits)]["pca"]["shift_measured"] > e["points"][str(bits)]["flat"]["shift_measured"])
            row["heads_pca_randcal_worse"] = sum(1 for e in heads_t if e["points"][str(bits)]["pca"]["random_calibrated_on_random"] > e["points"][str(bits)]["flat"]["shift_measured"])
            row["heads_pca_guarded_worse_shift"] = sum(1 for e in heads_t if e["points"][str(bits)]["pca"]["guarded_shift_measured"] > e["points"][str(bits)]["flat"]["shift_measured"])
            row["predicted_pca"] = float(sum(e["points"][str(bits)]["pca"]["predicted"] * fits[(t, e["layer"], e["head"])].energy for e in heads_t)
                                         / sum(fits[(t, e["layer"], e["head"])].energy for e in heads_t))
            row["predicted_flat"] = float(np.mean([e["points"][str(bits)]["flat"]["predicted"] for e in result_heads[t]]))
            o["points"][str(bits)] = rnd(row)
            for variant in ("pca", "pca_no1bit"):
                curve = {}
                for b in sweep_budgets:
                    err = sum(sweep[(variant, t, l, h, b)][0] for (l, h) in heads)
                    energy = sum(sweep[(variant, t, l, h, b)][1] for (l, h) in heads)
                    curve[b] = err / energy
                need = needed_budget(curve, row["flat"])
                o["needed_bits"][f"{variant}@{bits}"] = None if need is None else rnd(need * GROUP / d)
                pred_curve = {}
                for b in sweep_budgets:
                    num = sum(predicted_nmse(fits[(t, l, h)].band_var, fits[(t, l, h)].energy, allocs[(t, l, h, b, variant)][0], g) * fits[(t, l, h)].energy for (l, h) in heads)
                    pred_curve[b] = num / sum(fits[(t, l, h)].energy for (l, h) in heads)
                need = needed_budget(pred_curve, row["predicted_flat"])
                o.setdefault("needed_bits_predicted", {})[f"{variant}@{bits}"] = None if need is None else rnd(need * GROUP / d)
        overall[t] = o

    # Attention errors with the queries of the same forward pass (test text), at every operating
    # point: keys post-RoPE flat / PCA, keys PCA fitted pre-RoPE (RoPE applied after decoding), values
    # flat / PCA.
    attention = {}
    if not args.no_attention:
        key_schemes = {"flat": ("flat", "k_post"), "pca_post": ("pca", "k_post"), "pca_pre": ("pca", "k_pre"),
                       "pca_no1bit_post": ("pca_no1bit", "k_post"), "pca_guarded_post": ("pca_guarded", "k_post")}
        value_scheme = {"flat": "flat", "pca_post": "pca", "pca_pre": "pca", "pca_no1bit_post": "pca_no1bit",
                        "pca_guarded_post": "pca_guarded"}
        for t in ("k_post", "v"):
            for (l, h) in heads:
                for bits in OPERATING_POINTS:
                    use_pca = vector_errors[("test", "pca", t, l, h, bits)] < vector_errors[("test", "flat", t, l, h, bits)]
                    recon[("test", "pca_guarded", t, l, h, bits)] = np.where(use_pca[:, None], recon[("test", "pca", t, l, h, bits)],
                                                                             recon[("test", "flat", t, l, h, bits)])
        W = len(windows["test"])
        q_per_kv = min(rep, 2)  # at most two query heads per KV head: the attention check stays cheap
        for bits in spec["attention_bits"]:
            for scheme, (variant, tensor) in key_schemes.items():
                acc = {}
                for layer in range(L):
                    for kv in range(KV):
                        k_hat = recon[("test", variant, tensor, layer, kv, bits)].reshape(W, T, d)
                        if tensor == "k_pre":
                            k_hat = collect.rope_numpy(k_hat, theta)
                        v_hat = recon[("test", value_scheme[scheme], "v", layer, kv, bits)].reshape(W, T, d)
                        for qh in range(kv * rep, kv * rep + q_per_kv):
                            for w in range(W):
                                add_into(acc, attention_errors(data["test"]["q"][layer, qh, w], data["test"]["k_post"][layer, kv, w],
                                                               data["test"]["v"][layer, kv, w], k_hat[w], v_hat[w]))
                attention.setdefault(str(bits), {})[scheme] = rnd(summarize_attention(acc))
            log(f"{name}: attention at {bits} bits done ({time.time() - t0:.0f}s)")

    return {
        "shape": shape,
        "tokens_per_window": T,
        "attention_query_heads_per_kv_head": None if args.no_attention else min(rep, 2),
        "windows": {k: len(v) for k, v in windows.items()},
        "text": {"calib": "sotu train split (speeches 40.., 150..)", "test": "sotu held-out split (speeches 3.., 14..)",
                 "shift": "uniformly random token ids (seed 26)", "calib_random": "other uniformly random token ids (seed 27)"},
        "mean_loss_nats": {k: rnd(float(np.mean(v))) for k, v in losses.items()},
        "sweep_budgets_bits_per_dim": [b * GROUP / d for b in sweep_budgets],
        "overall": overall,
        "heads": result_heads,
        "attention": attention,
        "seconds": round(time.time() - t0, 1),
    }


def ratios_at_d128(results):
    """Long-context ratio at head_dim 128 (8 KV heads, page layout of src/format/layout.ts, no eviction)
    of the flat K2V2/K3V3 formats and of the PCA scheme at the code bits it needs to match them, per
    model (rounded up to whole bands of 1 bit/dim at head_dim 128, i.e. 16 bits)."""
    rows = [{"name": "flat K2V2", "keyCodeBits": 256, "valueCodeBits": 256},
            {"name": "flat K3V3", "keyCodeBits": 384, "valueCodeBits": 384}]
    for model, r in results.items():
        for bits, label in ((2.0, "K2V2"), (3.0, "K3V3")):
            for variant, key_tensor in (("pca", "k_post"), ("pca_no1bit", "k_post"), ("pca", "k_pre")):
                kb = r["overall"][key_tensor]["needed_bits"].get(f"{variant}@{bits}")
                vb = r["overall"]["v"]["needed_bits"].get(f"{variant}@{bits}")
                if kb is None or vb is None:
                    continue
                rows.append({"name": f"{model} {variant} (keys {key_tensor}) at flat {label}'s NMSE",
                             "keyCodeBits": 16 * math.ceil(128 * kb / 16 - 1e-9),
                             "valueCodeBits": 16 * math.ceil(128 * vb / 16 - 1e-9),
                             "keyBitsPerDim": kb, "valueBitsPerDim": vb})
    return ratio_query(128, 8, rows)


def environment():
    import torch
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).stdout.strip()
        except OSError:
            return None
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cpu": cpu, "cores": os.cpu_count(), "git_commit": run(["git", "rev-parse", "HEAD"]),
            "git_dirty": bool(run(["git", "status", "--porcelain"])), "load_at_start": os.getloadavg()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random-dir", required=True, help="where random-models.ts wrote the random-weight models")
    ap.add_argument("--out", required=True, help="output path prefix (writes PREFIX.json)")
    ap.add_argument("--models", default="sotu-llama,built-demo,random-1b-shape,random-8b-shape")
    ap.add_argument("--tokens", type=int, default=2048, help="tokens per window")
    ap.add_argument("--no-attention", action="store_true")
    ap.add_argument("--rho", choices=("energy", "whitened"), default="energy",
                    help="the shared per-vector scale: coded energy over its calibrated expectation (default), or RMS of "
                         "the whitened coded coefficients (fragile where test data has energy in bands calibrated as empty)")
    ap.add_argument("--beside", default="", help="what else ran on the machine (recorded in the JSON)")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    started = time.time()

    def log(msg):
        print(f"[{time.time() - started:7.1f}s] {msg}", flush=True)

    specs = {
        "sotu-llama": {"dir": os.path.join(REPO, "models", "sotu-llama"), "tokens": "bpe", "windows": 2, "attention_bits": OPERATING_POINTS},
        "built-demo": {"dir": os.path.join(args.random_dir, "built-demo"), "tokens": "bytes", "windows": 2, "attention_bits": OPERATING_POINTS},
        "random-1b-shape": {"dir": os.path.join(args.random_dir, "random-1b-shape"), "tokens": "bytes", "windows": 1, "attention_bits": (2.0,)},
        "random-8b-shape": {"dir": os.path.join(args.random_dir, "random-8b-shape"), "tokens": "bytes", "windows": 1, "attention_bits": (2.0,)},
    }
    env = environment()
    workdir = tempfile.mkdtemp(prefix="nq-transform-")
    try:
        codec = Codec(workdir)
        curves = {}
        results = {}
        for name in args.models.split(","):
            d = collect.shape_of(json.load(open(os.path.join(specs[name]["dir"], "config.json"))))["head_dim"]
            if d not in curves:
                curves[d] = gaussian_curve(codec, d)
                log(f"Gaussian per-group NMSE at head_dim {d}: {curves[d][0]} (plain codec: {curves[d][1]})")
            results[name] = study_model(name, specs[name], codec, curves[d][0], args, log)
        ratio = ratios_at_d128(results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = {
        "what": "issue 26 part 1: predicted and simulated gain of a calibrated PCA basis + reverse water-filling over the E8 codes vs today's Hadamard + flat bits",
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["/usr/bin/python3"] + sys.argv),
        "machine": env,
        "beside": args.beside,
        "seconds": round(time.time() - started, 1),
        "load_at_end": os.getloadavg(),
        "codec_calls": codec.calls,
        "codec_elements": codec.elements,
        "scale_clamped": {"band_sets": codec.scale_clamped, "of": codec.scale_vectors},
        "rho": args.rho,
        "assumptions": {
            "operating_points_code_bits_per_dim": list(OPERATING_POINTS),
            "bits_per_element_incl_scale": {"64": [b + 16 / 64 for b in OPERATING_POINTS], "128": [b + 16 / 128 for b in OPERATING_POINTS]},
            "one_bit_code": "ASSUMED sign code per coefficient after the in-band Hadamard (reconstruction sqrt(2/pi)·scale), simulated in numpy; the E8 codec has 2, 3 and 4 bits only. Variant pca_no1bit uses {0,2,3,4} only: buildable with today's codebooks.",
            "flat_1.25": "2-bit E8 groups and 1-bit sign groups time-shared after a Hadamard rotation (no flat 1.25-bit E8 code exists)",
            "scale": "one FP16 scale per vector in both schemes; PCA bands are scaled by their calibrated RMS (profile constants, not stored per vector) times the vector's rho (see 'rho'); the strongest band may have its own 1-byte scale, paid from the code budget",
            "nmse": "sum ||x - x_hat||^2 / sum ||x||^2 over all test vectors (mean included in the energy)",
            "calibration": "mean and covariance per (tensor, layer, KV head) on the calibration windows; tested on different text",
        },
        "gaussian_group_nmse": {str(d): {"simulated": rnd({str(k): v for k, v in c[0].items()}), "plain_codec": rnd({str(k): v for k, v in c[1].items()})} for d, c in curves.items()},
        "ratio_at_head_dim_128": ratio,
        "models": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(out, f, separators=(",", ":"))  # compact: ~1 MB with every spectrum and sweep
    log(f"wrote {args.out}.json")


if __name__ == "__main__":
    main()
