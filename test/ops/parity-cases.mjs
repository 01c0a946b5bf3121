// CUDA-vs-CPU parity cases, as data, shared by test/cuda/parity.test.ts and test/native/cpu-ops.test.ts
// (vitest, TypeScript modules) and bench/gpu/parity.mjs (the GPU machine: the same modules compiled
// into .gpu/js by bench/gpu/pack.sh, no node_modules). The caller injects `api` (see
// parity-cases.d.mts), so this file imports nothing.
//
// Oracles: the CPU ops (test/ops/cpu.ts: cpuEncode/cpuDecode byte- and bit-identical, cpuScore,
// cpuSelect exact, cpuAttention on the same options object as cudaAttention), the CPU cache's
// attention end to end (CompressedKVCache on backend "cpu"), and a float64 reference for dense FP16
// attention, which has no CPU op. The float64/JS references of the other ops stay here as the CPU
// ops' own check (runCpuCase, run on every machine by test/native/cpu-ops.test.ts). Fresh random
// inputs per case.

const HEAD_DIMS = [64, 96, 128, 256];
const BITS = [2, 3, 4];
const BATCHES = [1, 4];
const LENGTHS = [17, 31, 33, 97];

/** A seeded PRNG (mulberry32) and a roughly Gaussian sample (sum of uniforms). */
export function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const gauss = () => (next() + next() + next() + next() - 2) * 1.7320508;
  return { next, gauss };
}

function randomFloats(r, n, scale = 1) {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = r.gauss() * scale;
  return x;
}

function relError(out, ref) {
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  if (!Number.isFinite(num)) return Infinity;
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

function allFinite(a) {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}

/** Every case, as plain data: kind, shape, and the bound it must meet. */
export function parityCases() {
  const cases = [];
  let seed = 1;
  for (const headDim of HEAD_DIMS)
    for (const bits of BITS)
      for (const batch of BATCHES)
        for (const length of LENGTHS) {
          const dtype = (length + bits) % 2 === 0 ? "f16" : "f32";
          cases.push({ kind: "codec", name: `codec d=${headDim} b=${bits} ${batch}x${length} ${dtype}`, headDim, bits, vectors: batch * length, dtype, seed: seed++, bound: 0 });
        }
  cases.push({ kind: "nonfinite", name: "codec refuses NaN like the CPU", headDim: 128, bits: 2, vectors: 9, bad: 5, seed: seed++, bound: 0 });
  const rates = [[2, 2], [3, 2], [3, 3], [4, 4], [2, 4]];
  for (const headDim of HEAD_DIMS)
    for (const [keyBits, valueBits] of rates)
      for (const batch of BATCHES) {
        const lengths = Array.from({ length: batch }, (_, i) => LENGTHS[(i + keyBits + headDim / 32) % LENGTHS.length]);
        const residual = (headDim + keyBits) % 3 === 0 ? 0 : 5;
        cases.push({
          kind: "attention-cache",
          name: `attention vs CPU op d=${headDim} K${keyBits}V${valueBits} batch=${batch} lengths=${lengths.join("/")} residual=${residual}`,
          headDim, keyBits, valueBits, kvHeads: 2, queryHeads: 8, lengths, residual, seed: seed++, bound: 1e-3,
        });
      }
  for (const headDim of [64, 128])
    for (const [keyBits, valueBits] of [[2, 2], [3, 2], [4, 4]])
      cases.push({
        kind: "attention-evicted",
        name: `attention evicted+masked+accumulated d=${headDim} K${keyBits}V${valueBits} nq=3`,
        headDim, keyBits, valueBits, kvHeads: 2, queryHeads: 6, lengths: [97, 33], residual: 7, nq: 3, seed: seed++, bound: 1e-3,
      });
  cases.push({ kind: "attention-split", name: "attention split-K with 32-token chunks d=128 K2V2 (many splits)", headDim: 128, keyBits: 2, valueBits: 2, kvHeads: 1, queryHeads: 4, lengths: [97], residual: 3, splitTokens: 32, seed: seed++, bound: 1e-3 });
  for (const headDim of HEAD_DIMS)
    cases.push({ kind: "dense", name: `dense FP16 attention d=${headDim} batch=4 lengths 17/31/33/97`, headDim, kvHeads: 2, queryHeads: 8, lengths: [17, 31, 33, 97], seed: seed++, bound: 1e-3 });
  for (const scorer of ["keynorm", "key-key", "observed"])
    for (const tokens of [17, 97])
      cases.push({ kind: "score", name: `score ${scorer} tokens=${tokens}`, scorer, headDim: 64, kvHeads: 2, queryHeads: 4, tokens, window: 8, pool: 5, seed: seed++, bound: 1e-4 });
  for (const [tokens, target] of [[97, 40], [33, 33], [31, 3], [1000, 250]])
    cases.push({ kind: "select", name: `select tokens=${tokens} target=${target}`, kvHeads: 3, tokens, target, sinkTokens: 4, recentWindow: 8, seed: seed++, bound: 0 });
  // Calibrated transforms (issue 26): per-band rates, calibrated and flat heads side by side, 1-bit budgets.
  for (const headDim of [64, 128])
    for (const [keyBits, valueBits] of [[2, 2], [1, 2], [3, 1]])
      for (const kv of [0, 1]) {
        const dtype = (headDim / 64 + kv + keyBits) % 2 === 0 ? "f16" : "f32";
        cases.push({
          kind: "transform-codec", name: `transform codec d=${headDim} K${keyBits}V${valueBits} ${kv === 0 ? "keys" : "values"} ${dtype}`,
          headDim, keyBits, valueBits, kv, kvHeads: 2, vectors: 97, dtype, seed: seed++, bound: 0,
        });
      }
  for (const headDim of [64, 128])
    for (const [keyBits, valueBits] of [[2, 2], [1, 2], [3, 1], [4, 4]])
      cases.push({
        kind: "transform-attention", name: `transform attention d=${headDim} K${keyBits}V${valueBits} batch=2 lengths=97/33 residual=5${keyBits === 2 ? " accumulated" : ""}`,
        headDim, keyBits, valueBits, kvHeads: 2, queryHeads: 8, lengths: [97, 33], residual: 5, accumulate: keyBits === 2, seed: seed++, bound: 1e-3,
      });
  return cases;
}

// ---- float64 references -------------------------------------------------------------------------

// softmax attention of one query over rows [0, n) of K/V (Float32Array rows of d), visible(t) filter.
function attendRef(q, K, V, n, d, scale, visible) {
  const logits = new Float64Array(n);
  let mx = -Infinity;
  for (let t = 0; t < n; t++) {
    if (!visible(t)) { logits[t] = -Infinity; continue; }
    let s = 0;
    for (let i = 0; i < d; i++) s += q[i] * K[t * d + i];
    logits[t] = s * scale;
    if (logits[t] > mx) mx = logits[t];
  }
  const out = new Float64Array(d);
  const p = new Float64Array(n);
  if (mx === -Infinity) return { out, p };
  let sum = 0;
  for (let t = 0; t < n; t++) { p[t] = logits[t] === -Infinity ? 0 : Math.exp(logits[t] - mx); sum += p[t]; }
  for (let t = 0; t < n; t++) {
    p[t] /= sum;
    if (p[t] !== 0) for (let i = 0; i < d; i++) out[i] += p[t] * V[t * d + i];
  }
  return { out, p };
}

function softmaxMassRef(qRows, keys, T, d, limits, out) {
  const scale = 1 / Math.sqrt(d);
  qRows.forEach((q, j) => {
    const limit = limits[j];
    const l = new Float64Array(limit);
    let mx = -Infinity;
    for (let i = 0; i < limit; i++) {
      let s = 0;
      for (let e = 0; e < d; e++) s += q[e] * keys[i * d + e];
      l[i] = s * scale;
      mx = Math.max(mx, l[i]);
    }
    let sum = 0;
    for (let i = 0; i < limit; i++) { l[i] = Math.exp(l[i] - mx); sum += l[i]; }
    for (let i = 0; i < limit; i++) out[i] += l[i] / sum;
  });
}

export function scoreRef(c, keys, queries) {
  const { kvHeads: H, tokens: T, headDim: d, window: w0, pool } = c;
  const out = new Float64Array(H * T);
  for (let h = 0; h < H; h++) {
    const kh = keys.subarray(h * T * d, (h + 1) * T * d);
    const row = out.subarray(h * T, (h + 1) * T);
    if (c.scorer === "keynorm") {
      for (let t = 0; t < T; t++) { let s = 0; for (let e = 0; e < d; e++) s += kh[t * d + e] ** 2; row[t] = -Math.sqrt(s); }
      continue;
    }
    if (c.scorer === "key-key") {
      const w = Math.min(w0, T);
      const qs = [], limits = [];
      for (let j = T - w; j < T; j++) { qs.push(kh.subarray(j * d, (j + 1) * d)); limits.push(j + 1); }
      softmaxMassRef(qs, kh, T, d, limits, row);
      continue;
    }
    const group = c.queryHeads / H;
    for (let g = 0; g < group; g++) {
      const qh = h * group + g;
      const qs = [], limits = [];
      for (let j = 0; j < w0; j++) {
        qs.push(queries.subarray((qh * w0 + j) * d, (qh * w0 + j + 1) * d));
        limits.push(T >= w0 ? T - w0 + j + 1 : Math.min(T, j + 1));
      }
      softmaxMassRef(qs, kh, T, d, limits, row);
    }
    if (pool > 1) {
      const copy = Float64Array.from(row), half = Math.floor(pool / 2);
      for (let t = 0; t < T; t++) {
        let m = -Infinity;
        for (let x = Math.max(0, t - half); x < Math.min(T, t + half + 1); x++) m = Math.max(m, copy[x]);
        row[t] = m;
      }
    }
  }
  return out;
}

// compress()'s selection (native/cpu/ops/eviction_ops.cc cpuSelect), in JS.
export function selectRef(c, scores, positions) {
  const { kvHeads: H, tokens: T, target } = c;
  const kept = new Uint32Array(H * target);
  const recentStart = T > c.recentWindow ? T - c.recentWindow : 0;
  for (let h = 0; h < H; h++) {
    const prot = [], cand = [];
    for (let t = 0; t < T; t++) (positions[h * T + t] < c.sinkTokens || t >= recentStart ? prot : cand).push(t);
    const want = Math.max(0, target - prot.length);
    const sc = (t) => scores[h * T + t] + 0;
    cand.sort((a, b) => (sc(a) !== sc(b) ? sc(b) - sc(a) : a - b));
    const keep = prot.slice(0, target).concat(cand.slice(0, want)).sort((a, b) => a - b);
    kept.set(keep, h * target);
  }
  return kept;
}

// ---- cases ----------------------------------------------------------------------------------------

function codecCase(api, c) {
  const r = rng(c.seed);
  const n = c.vectors * c.headDim;
  const f32 = randomFloats(r, n, 3);
  for (let i = 0; i < n; i += 97) f32[i] *= 40;  // a few outliers, as real keys have
  const data = c.dtype === "f16" ? api.floatsToHalfBits(f32) : f32;
  const opts = { headDim: c.headDim, bits: c.bits, rotate: true, seed: c.seed * 2654435761 >>> 0 };
  const cpu = api.cpuEncode(data, opts);
  const gpu = api.cudaEncode(data, opts);
  const cb = (c.headDim / 8) * c.bits;
  let groupMismatch = 0, scaleMismatch = 0;
  for (let v = 0; v < c.vectors; v++) {
    if (cpu.scales[v] !== gpu.scales[v]) scaleMismatch++;
    for (let g = 0; g < c.headDim / 8; g++)
      for (let b = 0; b < c.bits; b++) {
        const i = v * cb + g * c.bits + b;
        if (cpu.codes[i] !== gpu.codes[i]) { groupMismatch++; break; }
      }
  }
  // Decode: GPU decode of the CPU codes must equal the CPU decode bit for bit (f32 and f16).
  const cpuF32 = api.cpuDecode(cpu.codes, cpu.scales, { ...opts, out: new Float32Array(n).fill(NaN) });
  const gpuF32 = api.cudaDecode(cpu.codes, cpu.scales, { ...opts, out: new Float32Array(n).fill(NaN) });
  const cpuF16 = api.cpuDecode(cpu.codes, cpu.scales, { ...opts, out: new Uint16Array(n).fill(0x7e00) });
  const gpuF16 = api.cudaDecode(cpu.codes, cpu.scales, { ...opts, out: new Uint16Array(n).fill(0x7e00) });
  let decodeMismatch = 0;
  const b32 = new Uint32Array(cpuF32.buffer, cpuF32.byteOffset, n), g32 = new Uint32Array(gpuF32.buffer, gpuF32.byteOffset, n);
  for (let i = 0; i < n; i++) if (b32[i] !== g32[i] || cpuF16[i] !== gpuF16[i]) decodeMismatch++;
  const groups = c.vectors * (c.headDim / 8);
  return {
    ok: groupMismatch === 0 && scaleMismatch === 0 && decodeMismatch === 0,
    metric: groupMismatch / groups,
    detail: `groups differing ${groupMismatch}/${groups}, scales differing ${scaleMismatch}/${c.vectors}, decoded elements differing ${decodeMismatch}/${n}`,
  };
}

function nonFiniteCase(api, c) {
  const r = rng(c.seed);
  const data = randomFloats(r, c.vectors * c.headDim);
  data[c.bad * c.headDim + 3] = NaN;
  try {
    api.cudaEncode(data, { headDim: c.headDim, bits: c.bits });
    return { ok: false, metric: 1, detail: "no error was thrown" };
  } catch (err) {
    const ok = err?.code === "INVALID_DATA" && err?.details?.badVector === c.bad;
    return { ok, metric: ok ? 0 : 1, detail: `${err?.code}: ${err?.message}` };
  }
}

// Builds per-sequence FP16 K/V, encodes the compressed part with the CPU codec (what the CPU cache
// stores), and returns everything both sides need.
function makeSequences(api, c) {
  const r = rng(c.seed);
  const { kvHeads: H, headDim: d } = c;
  const seed = (c.seed * 40503) >>> 0;
  return c.lengths.map((n) => {
    const res = c.residual;
    const k = api.floatsToHalfBits(randomFloats(r, H * n * d, 2));
    const v = api.floatsToHalfBits(randomFloats(r, H * n * d, 1));
    const rk = api.floatsToHalfBits(randomFloats(r, H * res * d, 2));
    const rv = api.floatsToHalfBits(randomFloats(r, H * res * d, 1));
    const kq = api.quantizeSync(k, { headDim: d, bits: c.keyBits, rotate: true, seed });
    const vq = api.quantizeSync(v, { headDim: d, bits: c.valueBits, rotate: true, seed });
    return { n, res, k, v, rk, rv, kq, vq, seed };
  });
}

// The codes as plain arrays, the options object cudaAttention and cpuAttention both take.
function cacheAttentionOptions(c, seqs, queries, pageTokens) {
  const { kvHeads: H, queryHeads: QH, headDim: d } = c;
  return {
    kvHeads: H, queryHeads: QH, headDim: d, keyBits: c.keyBits, valueBits: c.valueBits, seed: seqs[0].seed, splitTokens: c.splitTokens, pageTokens,
    sequences: seqs.map((s, b) => ({
      compressed: s.n, keyCodes: s.kq.codes, keyScales: s.kq.scales, valueCodes: s.vq.codes, valueScales: s.vq.scales,
      residual: s.res, residualKeys: s.rk, residualValues: s.rv, firstResidualPos: s.n,
      queries: queries[b], queryPositions: Int32Array.of(s.n + s.res - 1),
    })),
  };
}

// GPU vs the CPU op on the same options. (Against the CPU cache itself, a short sequence whose pages
// would cost more than its FP16 rows stays in FP16 there (format pagingPays), not in codes.)
function attentionCacheCase(api, c) {
  const seqs = makeSequences(api, c);
  const r = rng(c.seed + 7);
  const queries = seqs.map(() => randomFloats(r, c.queryHeads * c.headDim));
  const gpu = api.cudaAttention(cacheAttentionOptions(c, seqs, queries, 64));
  const cpu = api.cpuAttention(cacheAttentionOptions(c, seqs, queries, 64));
  const errs = gpu.map((g, b) => (allFinite(g) ? relError(g, cpu[b]) : Infinity));
  const worst = Math.max(...errs);
  return { ok: worst <= c.bound, metric: worst, detail: `rel. error per sequence ${errs.map((e) => e.toExponential(2)).join(", ")}` };
}

// Evicted (positions with gaps), masked (queries at earlier positions), nq > 1, accumulated mass:
// inputs, and the options object cudaAttention and cpuAttention both take (a fresh copy of the
// accumulated mass each time, since the op adds into it).
function evictedInputs(api, c) {
  const { kvHeads: H, queryHeads: QH, headDim: d, nq } = c;
  const seqs = makeSequences(api, c);
  const r = rng(c.seed + 11);
  const inputs = seqs.map((s) => {
    // Positions: strictly increasing with random gaps (as after eviction), per head.
    const positions = new Int32Array(H * s.n);
    let last = 0;
    for (let h = 0; h < H; h++) {
      let p = 0;
      for (let t = 0; t < s.n; t++) { p += 1 + Math.floor(r.next() * 3); positions[h * s.n + t] = p; }
      last = Math.max(last, p);
    }
    const first = last + 1;
    const qpos = Int32Array.from({ length: nq }, (_, j) => (j === nq - 1 ? first + s.res - 1 : Math.floor(first * (0.3 + 0.3 * j))));
    const accStart = randomFloats(r, H * (s.n + s.res)).map(Math.abs);
    return { positions, first, qpos, queries: randomFloats(r, QH * nq * d), accStart };
  });
  const options = () => {
    const accumulated = inputs.map((x) => Float32Array.from(x.accStart));
    return {
      accumulated,
      options: {
        kvHeads: H, queryHeads: QH, headDim: d, nq, keyBits: c.keyBits, valueBits: c.valueBits, seed: seqs[0].seed,
        sequences: seqs.map((s, b) => ({
          compressed: s.n, keyCodes: s.kq.codes, keyScales: s.kq.scales, valueCodes: s.vq.codes, valueScales: s.vq.scales, positions: inputs[b].positions,
          residual: s.res, residualKeys: s.rk, residualValues: s.rv, firstResidualPos: inputs[b].first,
          queries: inputs[b].queries, queryPositions: inputs[b].qpos, accumulated: accumulated[b],
        })),
      },
    };
  };
  return { seqs, inputs, options };
}

// Float64 attention over the CPU-decoded keys/values, and the accumulated mass it adds.
function evictedRef(api, c, seqs, inputs) {
  const { kvHeads: H, queryHeads: QH, headDim: d, nq } = c;
  const group = QH / H;
  return seqs.map((s, b) => {
    const K = api.dequantizeSync(s.kq), V = api.dequantizeSync(s.vq);
    const RK = api.halfBitsToFloats(s.rk), RV = api.halfBitsToFloats(s.rv);
    const { positions, first, qpos, queries, accStart } = inputs[b];
    const n = s.n + s.res;
    const acc = Float64Array.from(accStart);
    const out = new Float64Array(QH * nq * d);
    for (let h = 0; h < H; h++) {
      const Kh = new Float32Array(n * d), Vh = new Float32Array(n * d);
      Kh.set(K.subarray(h * s.n * d, (h + 1) * s.n * d));
      Kh.set(RK.subarray(h * s.res * d, (h + 1) * s.res * d), s.n * d);
      Vh.set(V.subarray(h * s.n * d, (h + 1) * s.n * d));
      Vh.set(RV.subarray(h * s.res * d, (h + 1) * s.res * d), s.n * d);
      const pos = (t) => (t < s.n ? positions[h * s.n + t] : first + (t - s.n));
      for (let g = 0; g < group; g++)
        for (let j = 0; j < nq; j++) {
          const qh = h * group + g;
          const q = queries.subarray((qh * nq + j) * d, (qh * nq + j + 1) * d);
          const { out: o, p } = attendRef(q, Kh, Vh, n, d, 1 / Math.sqrt(d), (t) => pos(t) <= qpos[j]);
          out.set(o, (qh * nq + j) * d);
          for (let t = 0; t < n; t++) acc[h * n + t] += p[t];
        }
    }
    return { out, acc };
  });
}

// Worst rel. error of outputs and accumulated mass against the expected ones, per sequence.
function compareAttention(outs, accs, want, bound) {
  let worst = 0, worstAcc = 0;
  outs.forEach((o, b) => {
    worst = Math.max(worst, allFinite(o) ? relError(o, want[b].out) : Infinity);
    worstAcc = Math.max(worstAcc, allFinite(accs[b]) ? relError(accs[b], want[b].acc) : Infinity);
  });
  const m = Math.max(worst, worstAcc);
  return { ok: m <= bound, metric: m, detail: `output rel. error ${worst.toExponential(2)}, accumulated mass rel. error ${worstAcc.toExponential(2)}` };
}

// GPU vs the CPU op, same options.
function attentionEvictedCase(api, c) {
  const { options } = evictedInputs(api, c);
  const gpuRun = options();
  const gpu = api.cudaAttention(gpuRun.options);
  const cpuRun = options();
  const cpu = api.cpuAttention(cpuRun.options);
  return compareAttention(gpu, gpuRun.accumulated, cpu.map((out, b) => ({ out, acc: cpuRun.accumulated[b] })), c.bound);
}

function denseCase(api, c) {
  const { kvHeads: H, queryHeads: QH, headDim: d, lengths } = c;
  const r = rng(c.seed);
  const B = lengths.length, T = Math.max(...lengths);
  const keys = api.floatsToHalfBits(randomFloats(r, B * H * T * d, 2));
  const values = api.floatsToHalfBits(randomFloats(r, B * H * T * d, 1));
  const queries = randomFloats(r, B * QH * d);
  const out = api.cudaDenseAttention({ batch: B, kvHeads: H, queryHeads: QH, headDim: d, maxTokens: T, keys, values, lengths: Int32Array.from(lengths), queries });
  const K = api.halfBitsToFloats(keys), V = api.halfBitsToFloats(values);
  const ref = new Float64Array(B * QH * d);
  for (let b = 0; b < B; b++)
    for (let qh = 0; qh < QH; qh++) {
      const h = Math.floor(qh / (QH / H));
      const base = (b * H + h) * T * d;
      const { out: o } = attendRef(queries.subarray((b * QH + qh) * d, (b * QH + qh + 1) * d), K.subarray(base, base + T * d), V.subarray(base, base + T * d), lengths[b], d, 1 / Math.sqrt(d), () => true);
      ref.set(o, (b * QH + qh) * d);
    }
  const e = allFinite(out) ? relError(out, ref) : Infinity;
  return { ok: e <= c.bound, metric: e, detail: `rel. error ${e.toExponential(2)}` };
}

// The op options of a score case (its extra fields, e.g. kind/name/bound/seed, are not options).
function scoreOptions(c, keys, queries) {
  const { scorer, kvHeads, tokens, headDim, queryHeads, window, pool } = c;
  return { scorer, kvHeads, tokens, headDim, queryHeads, window, pool, keys, queries: scorer === "observed" ? queries : undefined };
}

function selectOptions(c, scores, positions) {
  const { kvHeads, tokens, target, sinkTokens, recentWindow } = c;
  return { kvHeads, tokens, target, sinkTokens, recentWindow, scores, positions };
}

function scoreInputs(c) {
  const r = rng(c.seed);
  const keys = randomFloats(r, c.kvHeads * c.tokens * c.headDim);
  const queries = randomFloats(r, c.queryHeads * c.window * c.headDim);
  return { keys, queries };
}

function selectInputs(c) {
  const r = rng(c.seed);
  const n = c.kvHeads * c.tokens;
  // Scores with deliberate ties (quantized) and -0/+0, to exercise the tie rule.
  const scores = Float32Array.from({ length: n }, () => Math.round(r.gauss() * 4) / 4);
  scores[1] = -0;
  scores[2] = 0;
  const positions = Int32Array.from({ length: n }, (_, i) => (i % c.tokens) * 2);
  return { scores, positions };
}

function scoreCase(api, c) {
  const { keys, queries } = scoreInputs(c);
  const gpu = api.cudaScore(scoreOptions(c, keys, queries));
  const cpu = api.cpuScore(scoreOptions(c, keys, queries));
  const e = allFinite(gpu) ? relError(gpu, cpu) : Infinity;
  return { ok: e <= c.bound, metric: e, detail: `rel. error ${e.toExponential(2)}` };
}

function selectCase(api, c) {
  const { scores, positions } = selectInputs(c);
  const gpu = api.cudaSelect(selectOptions(c, scores, positions));
  const cpu = api.cpuSelect(selectOptions(c, scores, positions));
  let diff = 0;
  for (let i = 0; i < cpu.length; i++) if (gpu[i] !== cpu[i]) diff++;
  return { ok: diff === 0, metric: diff, detail: `kept indices differing ${diff}/${cpu.length}` };
}

// ---- calibrated transforms (issue 26) --------------------------------------------------------------
// The tables come from api.transformTablesFor and the data from api.transformTestKV
// (test/ops/transform-fixture.ts): a profile fitted on syntheticKV, and later tokens of its streams.

const transformShape = (c) => ({ layers: 1, kvHeads: c.kvHeads, headDim: c.headDim });

// Head h's rows of K (kv 0) or V (kv 1) from the fixture's stream, f32 or FP16 bits.
function transformRows(api, c, kv, h, tokens, start) {
  const { keys, values } = api.transformTestKV(transformShape(c), 0, tokens, undefined, start);
  const rows = (kv === 0 ? keys : values).subarray(h * tokens * c.headDim, (h + 1) * tokens * c.headDim);
  return c.dtype === "f16" ? api.floatsToHalfBits(rows) : rows;
}

function transformCodecOptions(api, c, h) {
  const tables = api.transformTablesFor(transformShape(c), c.keyBits, c.valueBits);
  // The seed is the cache's default (0x5eed): a head the profile leaves flat codes with the rotation.
  return { headDim: c.headDim, bits: c.kv === 0 ? c.keyBits : c.valueBits, seed: 0x5eed, transform: { tables, kvHeads: c.kvHeads, layer: 0, kv: c.kv, head: h } };
}

function bitsOf(a) {
  return a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a;
}

// GPU encode and decode against the CPU op, head by head: bytes and decoded bits identical.
function transformCodecCase(api, c) {
  let codeDiff = 0, decodeDiff = 0, bytes = 0, elements = 0;
  for (let h = 0; h < c.kvHeads; h++) {
    const data = transformRows(api, c, c.kv, h, c.vectors);
    const opts = transformCodecOptions(api, c, h);
    const cpu = api.cpuEncode(data, opts);
    const gpu = api.cudaEncode(data, opts);
    for (let i = 0; i < cpu.codes.length; i++) if (cpu.codes[i] !== gpu.codes[i]) codeDiff++;
    for (let i = 0; i < cpu.scales.length; i++) if (cpu.scales[i] !== gpu.scales[i]) codeDiff++;
    bytes += cpu.codes.length + 2 * cpu.scales.length;
    const n = c.vectors * c.headDim;
    for (const out of [() => new Float32Array(n).fill(NaN), () => new Uint16Array(n).fill(0x7e00)]) {
      const a = bitsOf(api.cpuDecode(cpu.codes, cpu.scales, { ...opts, out: out() }));
      const b = bitsOf(api.cudaDecode(cpu.codes, cpu.scales, { ...opts, out: out() }));
      for (let i = 0; i < n; i++) if (a[i] !== b[i]) decodeDiff++;
      elements += n;
    }
  }
  return {
    ok: codeDiff === 0 && decodeDiff === 0,
    metric: codeDiff + decodeDiff,
    detail: `code/scale values differing ${codeDiff} (of ${bytes} bytes), decoded elements differing ${decodeDiff}/${elements}`,
  };
}

// Sequences coded by the CPU op under the fixture's transform (keys entry kv 0, values kv 1), as the
// CPU cache codes its FP16 residual rows, and the options object both attention ops take.
function transformAttentionInputs(api, c) {
  const { kvHeads: H, queryHeads: QH, headDim: d } = c;
  const r = rng(c.seed);
  const f16 = { ...c, dtype: "f16" };
  const seqs = c.lengths.map((n, b) => {
    const start = 4096 + 1000 * b, res = c.residual;
    const code = (kv) => {
      const codes = [], scales = [];
      for (let h = 0; h < H; h++) {
        const e = api.cpuEncode(transformRows(api, f16, kv, h, n, start), transformCodecOptions(api, { ...c, kv }, h));
        codes.push(e.codes);
        scales.push(e.scales);
      }
      return { codes: concat(Uint8Array, codes), scales: concat(Uint16Array, scales) };
    };
    const residual = (kv) => concat(Uint16Array, Array.from({ length: H }, (_, h) => transformRows(api, f16, kv, h, res, start + n)));
    return { n, res, k: code(0), v: code(1), rk: residual(0), rv: residual(1), queries: randomFloats(r, QH * d, 0.5) };
  });
  const tables = api.transformTablesFor(transformShape(c), c.keyBits, c.valueBits);
  const options = () => {
    const accumulated = seqs.map((s) => (c.accumulate ? new Float32Array(H * (s.n + s.res)) : undefined));
    return {
      accumulated,
      options: {
        kvHeads: H, queryHeads: QH, headDim: d, keyBits: c.keyBits, valueBits: c.valueBits, seed: 0x5eed, transform: tables, transformLayer: 0,
        sequences: seqs.map((s, b) => ({
          compressed: s.n, keyCodes: s.k.codes, keyScales: s.k.scales, valueCodes: s.v.codes, valueScales: s.v.scales,
          residual: s.res, residualKeys: s.rk, residualValues: s.rv, firstResidualPos: s.n,
          queries: s.queries, queryPositions: Int32Array.of(s.n + s.res - 1), ...(c.accumulate ? { accumulated: accumulated[b] } : {}),
        })),
      },
    };
  };
  return { seqs, options };
}

function concat(Type, parts) {
  const out = new Type(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function transformAttentionCase(api, c) {
  const { options } = transformAttentionInputs(api, c);
  const gpuRun = options(), cpuRun = options();
  const gpu = api.cudaAttention(gpuRun.options);
  const cpu = api.cpuAttention(cpuRun.options);
  const accOf = (run, b) => run.accumulated[b] ?? new Float32Array(0);
  return compareAttention(gpu, gpu.map((_, b) => accOf(gpuRun, b)), cpu.map((out, b) => ({ out, acc: accOf(cpuRun, b) })), c.bound);
}

const RUNNERS = {
  "transform-codec": transformCodecCase,
  "transform-attention": transformAttentionCase,
  codec: codecCase,
  nonfinite: nonFiniteCase,
  "attention-cache": attentionCacheCase,
  "attention-split": attentionCacheCase,
  "attention-evicted": attentionEvictedCase,
  dense: denseCase,
  score: scoreCase,
  select: selectCase,
};

/** Runs one case; never throws (an exception is a failed case with its message). */
export function runCase(api, c) {
  const start = Date.now();
  try {
    const r = RUNNERS[c.kind](api, c);
    return { name: c.name, kind: c.kind, bound: c.bound, ...r, ms: Date.now() - start };
  } catch (err) {
    return { name: c.name, kind: c.kind, bound: c.bound, ok: false, metric: Infinity, detail: `threw ${err?.code ?? ""} ${err?.message ?? err}`, ms: Date.now() - start };
  }
}

// ---- the CPU ops against the references (no GPU needed) --------------------------------------------

function cpuCodecCase(api, c) {
  const r = rng(c.seed);
  const n = c.vectors * c.headDim;
  const f32 = randomFloats(r, n, 3);
  const data = c.dtype === "f16" ? api.floatsToHalfBits(f32) : f32;
  const opts = { headDim: c.headDim, bits: c.bits, rotate: true, seed: c.seed * 2654435761 >>> 0 };
  const op = api.cpuEncode(data, opts);
  const q = api.quantizeSync(data, opts);
  let diff = 0;
  for (let i = 0; i < q.codes.length; i++) if (op.codes[i] !== q.codes[i]) diff++;
  for (let i = 0; i < q.scales.length; i++) if (op.scales[i] !== q.scales[i]) diff++;
  const dec = api.cpuDecode(op.codes, op.scales, { ...opts, out: new Float32Array(n).fill(NaN) });
  const ref = api.dequantizeSync(q, { dtype: "f32" });
  for (let i = 0; i < n; i++) if (!Object.is(dec[i], ref[i])) diff++;
  return { ok: diff === 0, metric: diff, detail: `bytes or decoded elements differing from quantize/dequantize: ${diff}` };
}

function cpuScoreCase(api, c) {
  const { keys, queries } = scoreInputs(c);
  const cpu = api.cpuScore(scoreOptions(c, keys, queries));
  const e = allFinite(cpu) ? relError(cpu, scoreRef(c, keys, queries)) : Infinity;
  return { ok: e <= c.bound, metric: e, detail: `rel. error vs float64 ${e.toExponential(2)}` };
}

function cpuSelectCase(api, c) {
  const { scores, positions } = selectInputs(c);
  const cpu = api.cpuSelect(selectOptions(c, scores, positions));
  const ref = selectRef(c, scores, positions);
  let diff = 0;
  for (let i = 0; i < ref.length; i++) if (cpu[i] !== ref[i]) diff++;
  return { ok: diff === 0, metric: diff, detail: `kept indices differing ${diff}/${ref.length}` };
}

function cpuAttentionEvictedCase(api, c) {
  const { seqs, inputs, options } = evictedInputs(api, c);
  const run = options();
  const cpu = api.cpuAttention(run.options);
  return compareAttention(cpu, run.accumulated, evictedRef(api, c, seqs, inputs), c.bound);
}

// The CPU op against the CPU cache on the same codes: the cache runs the same op on its own pages.
// Pages of 16 tokens, so that paging pays for every sequence (format pagingPays) and the cache holds
// them all as codes.
function cpuAttentionCacheCase(api, c) {
  const { kvHeads: H, queryHeads: QH, headDim: d } = c;
  const seqs = makeSequences(api, c);
  const r = rng(c.seed + 7);
  const cache = new api.CompressedKVCache({
    layers: 1, kvHeads: H, headDim: d, batch: seqs.length, queryHeads: QH, backend: "cpu", seed: seqs[0].seed,
    spec: { keyBits: c.keyBits, valueBits: c.valueBits, evictFraction: 0, residualWindow: 16, pageTokens: 16 },
  });
  try {
    seqs.forEach((s, b) => cache.append(0, s.k, s.v, { sequence: b }));
    cache.compressSync();
    seqs.forEach((s, b) => { if (s.res > 0) cache.append(0, s.rk, s.rv, { sequence: b }); });
    const paged = seqs.every((s, b) => cache.tokens(0, b).compressed === s.n);
    const queries = seqs.map(() => randomFloats(r, QH * d));
    const want = queries.map((q, b) => cache.attention(0, q, { sequence: b }));
    const got = api.cpuAttention(cacheAttentionOptions(c, seqs, queries, 16));
    const errs = got.map((g, b) => (allFinite(g) ? relError(g, want[b]) : Infinity));
    const worst = Math.max(...errs);
    return { ok: paged && worst <= c.bound, metric: worst, detail: `${paged ? "" : "the cache did not page every sequence; "}rel. error per sequence ${errs.map((e) => e.toExponential(2)).join(", ")}` };
  } finally {
    cache.dispose();
  }
}

// The CPU op under a transform against the CPU cache with the same profile: the cache codes its FP16
// rows with the same tables, so op decode(encode(rows)) must equal the cache's materialized rows.
function cpuTransformCodecCase(api, c) {
  const { kvHeads: H, headDim: d } = c;
  const cache = new api.CompressedKVCache({
    layers: 1, kvHeads: H, headDim: d, backend: "cpu", seed: 0x5eed, profile: api.transformProfileFor(transformShape(c)),
    spec: { keyBits: c.keyBits, valueBits: c.valueBits, evictFraction: 0, residualWindow: 16, pageTokens: 16 },
  });
  try {
    const { keys, values } = api.transformTestKV(transformShape(c), 0, c.vectors);
    cache.append(0, keys, values);
    cache.compressSync();
    const paged = cache.tokens(0).compressed === c.vectors;
    const m = cache.materialize(0);
    const held = c.kv === 0 ? m.keys : m.values;
    let diff = 0;
    const n = c.vectors * d;
    for (let h = 0; h < H; h++) {
      const opts = transformCodecOptions(api, c, h);
      const e = api.cpuEncode(transformRows(api, { ...c, dtype: "f16" }, c.kv, h, c.vectors), opts);
      const dec = api.cpuDecode(e.codes, e.scales, { ...opts, out: new Float32Array(n).fill(NaN) });
      for (let i = 0; i < n; i++) if (!Object.is(dec[i], held[h * n + i])) diff++;
    }
    return { ok: paged && diff === 0, metric: diff, detail: `${paged ? "" : "the cache did not code every token; "}decoded elements differing from the cache's ${diff}/${H * n}` };
  } finally {
    cache.dispose();
  }
}

// The CPU op under a transform against float64 attention over its own decoded keys and values.
function cpuTransformAttentionCase(api, c) {
  const { kvHeads: H, queryHeads: QH, headDim: d } = c;
  const group = QH / H;
  const { seqs, options } = transformAttentionInputs(api, c);
  const run = options();
  const got = api.cpuAttention(run.options);
  const want = seqs.map((s) => {
    const n = s.n + s.res;
    const out = new Float64Array(QH * d), acc = new Float64Array(H * n);
    const decode = (kv, part, h) => {
      const opts = transformCodecOptions(api, { ...c, kv }, h);
      const cb = part.codes.length / H;
      return api.cpuDecode(part.codes.subarray(h * cb, (h + 1) * cb), part.scales.subarray(h * s.n, (h + 1) * s.n), { ...opts, out: new Float32Array(s.n * d) });
    };
    const RK = api.halfBitsToFloats(s.rk), RV = api.halfBitsToFloats(s.rv);
    for (let h = 0; h < H; h++) {
      const Kh = new Float32Array(n * d), Vh = new Float32Array(n * d);
      Kh.set(decode(0, s.k, h));
      Kh.set(RK.subarray(h * s.res * d, (h + 1) * s.res * d), s.n * d);
      Vh.set(decode(1, s.v, h));
      Vh.set(RV.subarray(h * s.res * d, (h + 1) * s.res * d), s.n * d);
      for (let g = 0; g < group; g++) {
        const qh = h * group + g;
        const { out: o, p } = attendRef(s.queries.subarray(qh * d, (qh + 1) * d), Kh, Vh, n, d, 1 / Math.sqrt(d), () => true);
        out.set(o, qh * d);
        for (let t = 0; t < n; t++) acc[h * n + t] += p[t];
      }
    }
    return { out, acc: c.accumulate ? acc : new Float64Array(0) };
  });
  return compareAttention(got, got.map((_, b) => run.accumulated[b] ?? new Float32Array(0)), want, c.bound);
}

const CPU_RUNNERS = {
  "transform-codec": cpuTransformCodecCase,
  "transform-attention": cpuTransformAttentionCase,
  codec: cpuCodecCase,
  score: cpuScoreCase,
  select: cpuSelectCase,
  "attention-evicted": cpuAttentionEvictedCase,
  "attention-cache": cpuAttentionCacheCase,
};

/** The cases whose CPU op has a reference of its own here (no GPU involved), with the CPU's bound. */
export function cpuCases() {
  // Same codes and the same kernel as the cache: the CPU op equals the cache's attention to rounding.
  const cpuBound = { "attention-cache": 1e-6, "transform-attention": 1e-4 };
  return parityCases()
    .filter((c) => c.kind in CPU_RUNNERS)
    .map((c) => ({ ...c, bound: cpuBound[c.kind] ?? c.bound }));
}

/** Runs one CPU case; never throws. */
export function runCpuCase(api, c) {
  const start = Date.now();
  try {
    const r = CPU_RUNNERS[c.kind](api, c);
    return { name: c.name, kind: c.kind, bound: c.bound, ...r, ms: Date.now() - start };
  } catch (err) {
    return { name: c.name, kind: c.kind, bound: c.bound, ok: false, metric: Infinity, detail: `threw ${err?.code ?? ""} ${err?.message ?? err}`, ms: Date.now() - start };
  }
}
