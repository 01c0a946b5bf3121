/**
 * The step adapter's contract without a model: padding, true positions, masks over held + new slots,
 * present → state; and DecodeHandle's generate()/BUSY/dispose over a scripted StepEngine (what the
 * native path implements).
 */
import { describe, expect, it } from "vitest";
import { DecodeHandle } from "../../src/integrations/decode-handle.js";
import { emptyKvStats, type CompressExtras, type KvStats } from "../../src/integrations/conversation-cache.js";
import { createKvState, type KvLayout } from "../../src/integrations/kv-state.js";
import { resolveOptions } from "../../src/integrations/options.js";
import { absorbPresent, padTokenRows, planStep, runStateStep, stepFeeds, stepResult, zeroTimings, type StepEngine, type StepResult, type TokenRows } from "../../src/integrations/step-adapter.js";

const layout: KvLayout = { layers: 1, kvHeads: 1, headDim: 8, batch: 2, dtype: "float32" };

/** What a model would return as present: past slots then n new slots, each slot filled with `fill`. */
function present(pastSlots: number, n: number, pastKeys: Float32Array, fill: number): Record<string, { data: Float32Array }> {
  const slots = pastSlots + n;
  const k = new Float32Array(layout.batch * slots * layout.headDim).fill(fill);
  for (let b = 0; b < layout.batch; b++) k.set(pastKeys.subarray(b * pastSlots * 8, (b + 1) * pastSlots * 8), b * slots * 8);
  return { "present.0.key": { data: k }, "present.0.value": { data: k.slice() } };
}

describe("step adapter", () => {
  it("left-pads rows, counts true positions past padding and masks held + new slots", () => {
    const tokens = padTokenRows([[5, 6, 7], [8]], 9);
    expect(Array.from(tokens.ids, Number)).toEqual([5, 6, 7, 9, 9, 8]);
    expect(Array.from(tokens.newMask)).toEqual([1, 1, 1, 0, 0, 1]);

    const state = createKvState(layout, resolveOptions({ preset: "none" }));
    const first = planStep(state, tokens.newMask, tokens.n);
    expect(Array.from(first.positionIds, Number)).toEqual([0, 1, 2, 1, 1, 0]);
    expect(Array.from(first.attentionMask, Number)).toEqual([1, 1, 1, 0, 0, 1]);
    const feeds = stepFeeds(state.layout, first, tokens.ids, (type, data, dims) => ({ type, data, dims }));
    expect(Object.keys(feeds)).toEqual(["input_ids", "attention_mask", "position_ids", "past_key_values.0.key", "past_key_values.0.value"]);
    expect(feeds["past_key_values.0.key"]!.dims).toEqual([2, 1, 0, 8]);

    absorbPresent(state, first, present(0, 3, new Float32Array(0), 1));
    expect([state.realTokens(0), state.realTokens(1)]).toEqual([3, 1]);
    const second = planStep(state, new Uint8Array([1, 1]), 1);
    expect(Array.from(second.positionIds, Number)).toEqual([3, 1]);
    expect(Array.from(second.attentionMask, Number)).toEqual([1, 1, 1, 1, 0, 0, 1, 1]);
    expect(second.past.slots).toBe(3);
  });

  it("a compressed state feeds back what it holds, with one mask per row after eviction", async () => {
    const state = createKvState({ ...layout, batch: 1 }, resolveOptions({ preset: "quant" }));
    try {
      const plan = planStep(state, new Uint8Array(40).fill(1), 40);
      const out = present(0, 40, new Float32Array(0), 0.5);
      // Batch 1 here: only the first row of the two-row helper output.
      absorbPresent(state, plan, { "present.0.key": { data: out["present.0.key"]!.data.subarray(0, 40 * 8) }, "present.0.value": { data: out["present.0.value"]!.data.subarray(0, 40 * 8) } });
      await state.compressIfDue(40);
      const next = planStep(state, new Uint8Array([1]), 1);
      expect(next.past.slots).toBe(40);
      expect(Array.from(next.positionIds, Number)).toEqual([40]);
      expect(next.attentionMask.length).toBe(41);
      expect(state.stats().compressions).toBe(1);
    } finally {
      state.dispose();
    }
  });
});

describe("runStateStep (the one step loop of the wrappers and the quality harness)", () => {
  const tensor = (type: string, data: unknown, dims: number[]) => ({ type, data, dims });
  const logits = { data: new Float32Array(2 * 2 * 4), dims: [2, 2, 4] };

  it("runs the plan's feeds, absorbs present, then compresses with what the hook read off the outputs", async () => {
    const state = createKvState(layout, resolveOptions({ preset: "none" }));
    const calls: string[] = [];
    const compressIfDue = state.compressIfDue.bind(state);
    let given: CompressExtras | undefined;
    state.compressIfDue = async (n, extras) => {
      calls.push(`compress ${n}`);
      given = extras;
      return compressIfDue(n, extras);
    };
    const extras: CompressExtras = { observedQueries: [[new Float32Array(8)], undefined] };
    const fed: Record<string, { dims: number[] }>[] = [];
    const timings = zeroTimings();
    const tokens = padTokenRows([[5, 6], [7]], 0);
    const out = await runStateStep(
      state,
      tokens,
      tensor,
      async (feeds) => {
        calls.push("run");
        fed.push(feeds);
        await new Promise((r) => setTimeout(r, 30));
        return { ...present(0, 2, new Float32Array(0), 1), logits, "query.0": "queries" };
      },
      {
        timings,
        extras: (outputs) => {
          calls.push(`extras after absorb: ${state.realTokens(0)}+${state.realTokens(1)}, ${String(outputs["query.0"])}`);
          return extras;
        },
      },
    );
    expect(calls).toEqual(["run", "extras after absorb: 2+1, queries", "compress 2"]);
    expect(given).toBe(extras);
    expect(out["logits"]).toBe(logits);
    expect(fed[0]!["attention_mask"]!.dims).toEqual([2, 2]);
    expect(Object.keys(fed[0]!)).toEqual(["input_ids", "attention_mask", "position_ids", "past_key_values.0.key", "past_key_values.0.value"]);
    // The phases are added; steps and totals are the caller's (ConventionStepEngine counts them).
    expect(timings.runSeconds).toBeGreaterThanOrEqual(0.025);
    expect(timings.steps).toBe(0);
    expect(timings.totalSeconds).toBe(0);
  });

  it("a present of the wrong size is MODEL_OUTPUT: nothing absorbed, no hook, no compression", async () => {
    const state = createKvState(layout, resolveOptions({ preset: "none" }));
    let hooked = false;
    const bad = runStateStep(state, padTokenRows([[5, 6], [7]], 0), tensor, async () => ({ ...present(0, 3, new Float32Array(0), 1), logits }), {
      extras: () => {
        hooked = true;
        return undefined;
      },
    });
    await expect(bad).rejects.toMatchObject({ code: "MODEL_OUTPUT" });
    expect(hooked).toBe(false);
    expect([state.realTokens(0), state.realTokens(1), state.past().slots]).toEqual([0, 0, 0]);
  });
});

/** A StepEngine that predicts (last token + 1) mod 16 and can hold a step open until released. */
class ScriptedEngine implements StepEngine {
  cache = undefined;
  batch: number | undefined;
  fed: number[][] = [];
  disposed = 0;
  gate: Promise<void> | undefined;
  #tokens = 0;

  async step(rows: TokenRows): Promise<StepResult> {
    const list = (typeof rows[0] === "number" ? [rows] : rows) as number[][];
    this.batch ??= list.length;
    this.fed.push(...list.map((r) => [...r]));
    this.#tokens += list[0]!.length;
    await this.gate;
    const logits = new Float32Array(list.length * 16);
    list.forEach((r, b) => (logits[b * 16 + ((r.at(-1)! + 1) % 16)] = 1));
    return stepResult(logits, list.length, 1, 16);
  }
  position(): number {
    return this.#tokens;
  }
  stats(): KvStats {
    return { ...emptyKvStats("scripted"), tokens: this.#tokens };
  }
  timings() {
    return zeroTimings();
  }
  reset(): void {
    this.batch = undefined;
    this.#tokens = 0;
  }
  dispose(): void {
    this.disposed += 1;
  }
}

describe("DecodeHandle over any StepEngine", () => {
  it("generate() samples from step(), stops at eos and continues a conversation with the unfed token first", async () => {
    const engine = new ScriptedEngine();
    const handle = new DecodeHandle(engine);
    const one = await handle.generate([3, 4], { maxNewTokens: 10, eos: 9 });
    expect(one.tokens).toEqual([[5, 6, 7, 8, 9]]);
    expect(engine.fed).toEqual([[3, 4], [5], [6], [7], [8]]);
    await handle.generate([1], { maxNewTokens: 1, continue: true });
    expect(engine.fed.at(-1)).toEqual([9, 1]); // eos was sampled but not fed: it leads the next turn
  });

  it("one call at a time: BUSY while a step runs; dispose() waits for it", async () => {
    const engine = new ScriptedEngine();
    const handle = new DecodeHandle(engine);
    let open!: () => void;
    engine.gate = new Promise((resolve) => (open = resolve));
    const running = handle.generate([1], { maxNewTokens: 2 });
    await expect(handle.generate([2])).rejects.toMatchObject({ code: "BUSY" });
    await expect(handle.step([2])).rejects.toMatchObject({ code: "BUSY" });
    expect(() => handle.reset()).toThrow(expect.objectContaining({ code: "BUSY" }));
    handle.dispose();
    expect(engine.disposed).toBe(0); // not under the running step
    open();
    await expect(running).rejects.toMatchObject({ code: "DISPOSED" });
    expect(engine.disposed).toBe(1);
    handle.dispose();
    expect(engine.disposed).toBe(1);
    await expect(handle.step([1])).rejects.toMatchObject({ code: "DISPOSED" });
  });
});
