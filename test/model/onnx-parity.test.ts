/**
 * The built ONNX graph (run by onnxruntime-node) against the TypeScript reference forward pass, plus
 * semantic checks that hold for either implementation on its own (KV-cache decode == full prefill,
 * left padding == unpadded, eviction == masking the evicted slots). Models are built at setup time.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { LlamaReference, createTinyLlama, llamaOnnxNames, type ForwardInputs, type LlamaModel, type TinyLlamaOptions } from "../../src/model/index.js";
import { createRunner, i64, logitsRow, maxAbsDiff, outputsDiff, presentDiff, selectSlots, type GraphRunner, type OrtModule } from "./harness.js";

/** FP32 graph vs float64 reference; observed differences are ~1e-5 on logits of std ~2. */
const TOLERANCE = 1e-4;

let ort: OrtModule;
beforeAll(async () => {
  ort = await import("onnxruntime-node");
});

/** Deterministic token ids in [1, vocab) (0 is used as the padding id). */
function tokens(count: number, vocab: number, seed: number): number[] {
  let state = seed * 7919 + 17;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return 1 + (state % (vocab - 1));
  });
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const ones = (n: number) => Array<number>(n).fill(1);

function single(ids: number[], positions: number[], pastLength = 0, past?: ForwardInputs["past"], mask?: number[]): ForwardInputs {
  return {
    inputIds: i64(ids),
    positionIds: i64(positions),
    attentionMask: i64(mask ?? ones(pastLength + ids.length)),
    batch: 1,
    seq: ids.length,
    pastLength,
    past,
  };
}

interface ParityCase {
  name: string;
  options: TinyLlamaOptions;
}

// Odd sizes on purpose (vocab 97/33, intermediate 97, head_dim not hidden/heads): shape bugs show.
const CASES: ParityCase[] = [
  { name: "tied, GQA 4 heads / 2 kv", options: { seed: 1, tie: true } },
  { name: "untied, GQA 4 heads / 2 kv", options: { seed: 2, tie: false } },
  { name: "MQA 6 heads / 1 kv, head_dim 8, 3 layers", options: { seed: 3, heads: 6, kvHeads: 1, headDim: 8, hidden: 48, layers: 3, intermediate: 97, vocab: 97 } },
  { name: "MHA 4/4, head_dim 12 with hidden 40, untied", options: { seed: 4, heads: 4, kvHeads: 4, headDim: 12, hidden: 40, vocab: 33, intermediate: 64, tie: false } },
];

describe.each(CASES)("ONNX graph vs TS reference: $name", ({ options }) => {
  let model: LlamaModel;
  let graph: GraphRunner;
  let reference: LlamaReference;
  let vocab: number;

  beforeAll(async () => {
    model = createTinyLlama(options);
    graph = await createRunner(ort, model);
    reference = new LlamaReference(model.config, model.weights);
    vocab = model.config.vocabSize;
  });

  /** Runs both and asserts they agree; returns both outputs for further steps. */
  async function both(inputs: ForwardInputs, refInputs: ForwardInputs = inputs) {
    const [g, r] = [await graph.run(inputs), reference.forward(refInputs)];
    const diff = outputsDiff(g, r);
    expect(diff.logits).toBeLessThan(TOLERANCE);
    expect(diff.present).toBeLessThan(TOLERANCE);
    return { g, r };
  }

  it("declares the conventional input and output names", () => {
    const names = llamaOnnxNames(model.config);
    expect(graph.session.inputNames).toEqual(names.inputs);
    expect(graph.session.outputNames).toEqual(names.outputs);
  });

  it("prefill with an empty past (past length 0)", async () => {
    const ids = tokens(7, vocab, 1);
    const { g } = await both(single(ids, range(0, 7)));
    // Sanity: the logits are not degenerate (a graph that output zeros would otherwise pass less visibly).
    expect(Math.max(...g.logits.map(Math.abs))).toBeGreaterThan(0.5);
  });

  it("RoPE is relative: shifting every position by 100 leaves the logits unchanged", async () => {
    // A property of HF Llama that holds for neither implementation by construction of the other:
    // q·k depends only on position differences when both are rotated by the same rule.
    const ids = tokens(6, vocab, 8);
    const base = await graph.run(single(ids, range(0, 6)));
    const shifted = await both(single(ids, range(100, 106)));
    // Looser than TOLERANCE: FP32 angles at position ~100 carry ~1e-5 absolute error.
    expect(maxAbsDiff(base.logits, shifted.g.logits)).toBeLessThan(1e-3);
    // ...while the cached keys, rotated by absolute position, do change (so positions were used at all).
    expect(presentDiff(base.present, shifted.g.present)).toBeGreaterThan(1e-2);
  });

  it("prefill then decode steps, present fed back as past; equals a full prefill", async () => {
    const ids = tokens(9, vocab, 2);
    let { g, r } = await both(single(ids.slice(0, 5), range(0, 5)));
    for (let step = 5; step < 9; step++) {
      ({ g, r } = await both(single([ids[step]], [step], step, g.present), single([ids[step]], [step], step, r.present)));
    }
    const full = await graph.run(single(ids, range(0, 9)));
    expect(maxAbsDiff(g.logits, logitsRow(full.logits, 9, vocab, 0, 8))).toBeLessThan(TOLERANCE);
    expect(presentDiff(g.present, full.present)).toBeLessThan(TOLERANCE);
  });

  it("a multi-token chunk appended to a past (causal inside the chunk)", async () => {
    const ids = tokens(9, vocab, 3);
    const first = await both(single(ids.slice(0, 5), range(0, 5)));
    const { g } = await both(single(ids.slice(5), range(5, 9), 5, first.g.present), single(ids.slice(5), range(5, 9), 5, first.r.present));
    const full = await graph.run(single(ids, range(0, 9)));
    expect(maxAbsDiff(g.logits, full.logits.subarray(5 * vocab))).toBeLessThan(TOLERANCE);
  });

  it("batch 2 with left padding matches each prompt run alone, through a decode step", async () => {
    const a = tokens(6, vocab, 4);
    const b = tokens(3, vocab, 5);
    const batch: ForwardInputs = {
      inputIds: i64([...a, 0, 0, 0, ...b]),
      attentionMask: i64([...ones(6), 0, 0, 0, 1, 1, 1]),
      // HF convention: cumsum(mask) - 1 with padding slots set to 1 (their value must not matter).
      positionIds: i64([...range(0, 6), 1, 1, 1, 0, 1, 2]),
      batch: 2,
      seq: 6,
      pastLength: 0,
    };
    const prefill = await both(batch);
    const aloneA = await graph.run(single(a, range(0, 6)));
    const aloneB = await graph.run(single(b, range(0, 3)));
    expect(maxAbsDiff(prefill.g.logits.subarray(0, 6 * vocab), aloneA.logits)).toBeLessThan(TOLERANCE);
    expect(maxAbsDiff(prefill.g.logits.subarray((6 + 3) * vocab), aloneB.logits)).toBeLessThan(TOLERANCE);

    const next = tokens(2, vocab, 6);
    const decode = (past: ForwardInputs["past"]): ForwardInputs => ({
      inputIds: i64(next),
      attentionMask: i64([...ones(7), 0, 0, 0, 1, 1, 1, 1]),
      positionIds: i64([6, 3]),
      batch: 2,
      seq: 1,
      pastLength: 6,
      past,
    });
    const step = await both(decode(prefill.g.present), decode(prefill.r.present));
    const stepA = await graph.run(single([next[0]], [6], 6, aloneA.present));
    const stepB = await graph.run(single([next[1]], [3], 3, aloneB.present));
    expect(maxAbsDiff(logitsRow(step.g.logits, 1, vocab, 0, 0), stepA.logits)).toBeLessThan(TOLERANCE);
    expect(maxAbsDiff(logitsRow(step.g.logits, 1, vocab, 1, 0), stepB.logits)).toBeLessThan(TOLERANCE);
  });

  it("a past with evicted middle slots keeps true positions, and equals masking those slots", async () => {
    const { numKvHeads, headDim } = model.config;
    const ids = tokens(12, vocab, 7);
    const prefill = await both(single(ids.slice(0, 10), range(0, 10)));
    const keep = [0, 1, 4, 6, 8, 9]; // slots 2, 3, 5, 7 evicted
    const evict = (present: typeof prefill.g.present) => present.map((kv) => selectSlots(kv, 1, numKvHeads, 10, headDim, keep));
    // A two-token chunk at true positions 10 and 11 after a 6-slot past.
    const chunk = ids.slice(10);
    const evicted = await both(single(chunk, [10, 11], 6, evict(prefill.g.present)), single(chunk, [10, 11], 6, evict(prefill.r.present)));

    // Same result as keeping the full past and masking the evicted slots out.
    const masked = await graph.run(single(chunk, [10, 11], 10, prefill.g.present, [1, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1, 1]));
    expect(maxAbsDiff(evicted.g.logits, masked.logits)).toBeLessThan(TOLERANCE);
    const maskedKept = masked.present.map((kv) => selectSlots(kv, 1, numKvHeads, 12, headDim, [...keep, 10, 11]));
    expect(presentDiff(evicted.g.present, maskedKept)).toBeLessThan(TOLERANCE);

    // And the eviction and the positions really matter (so the checks above can fail).
    const unevicted = await graph.run(single(chunk, [10, 11], 10, prefill.g.present));
    expect(maxAbsDiff(evicted.g.logits, unevicted.logits)).toBeGreaterThan(1e-3);
    const wrongPositions = await graph.run(single(chunk, [6, 7], 6, evict(prefill.g.present)));
    expect(maxAbsDiff(evicted.g.logits, wrongPositions.logits)).toBeGreaterThan(1e-3);
  });
});

describe("FP16 graph (FP16 weights, FP16 past/present/logits, FP32 compute)", () => {
  // Both sides use the same FP16-rounded weights and round new K/V to FP16; what remains is FP32 vs
  // float64 arithmetic, which now and then puts a K/V element on the neighbouring FP16 value (one ulp:
  // 2^-10 for |x| in [1, 2), observed 9.8e-4), plus the FP16 rounding of the logits output (half an
  // ulp, <= 2^-9 for |logit| < 8; observed 1.1e-3). 5e-3 covers both with margin while still catching
  // any real graph error, which shows up at 1e-1 and above (see the FP32 suites).
  const LOGITS_TOLERANCE = 5e-3;
  const PRESENT_TOLERANCE = 5e-3;
  let graph: GraphRunner;
  let reference: LlamaReference;
  let model: LlamaModel;

  beforeAll(async () => {
    model = createTinyLlama({ seed: 11, tie: false, dtype: "F16" });
    graph = await createRunner(ort, model, "f16");
    reference = new LlamaReference(model.config, model.weights, { kvPrecision: "f16" });
  });

  it("declares float16 I/O", async () => {
    const out = await graph.session.run({
      input_ids: new ort.Tensor("int64", i64([5]), [1, 1]),
      attention_mask: new ort.Tensor("int64", i64([1]), [1, 1]),
      position_ids: new ort.Tensor("int64", i64([0]), [1, 1]),
      ...Object.fromEntries(
        llamaOnnxNames(model.config)
          .inputs.slice(3)
          .map((name) => [name, new ort.Tensor("float16", new Uint16Array(0), [1, model.config.numKvHeads, 0, model.config.headDim])]),
      ),
    });
    expect(out.logits.type).toBe("float16");
    expect(out["present.0.key"].type).toBe("float16");
  });

  it("prefill then decode matches the reference within the FP16 tolerance", async () => {
    const vocab = model.config.vocabSize;
    const ids = tokens(8, vocab, 12);
    let g = await graph.run(single(ids.slice(0, 5), range(0, 5)));
    let r = reference.forward(single(ids.slice(0, 5), range(0, 5)));
    for (let step = 5; step <= 8; step++) {
      const diff = outputsDiff(g, r);
      expect(Math.max(...r.logits.map(Math.abs))).toBeLessThan(8); // the tolerance above assumes it
      expect(diff.logits).toBeLessThan(LOGITS_TOLERANCE);
      expect(diff.present).toBeLessThan(PRESENT_TOLERANCE);
      if (step === 8) break;
      g = await graph.run(single([ids[step]], [step], step, g.present));
      r = reference.forward(single([ids[step]], [step], step, r.present));
    }
  });
});
