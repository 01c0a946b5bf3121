/**
 * The native path refuses a prompt whose KV cache cannot fit before it runs any of it: a prefill that
 * fails halfway (the allocator's OUT_OF_MEMORY at chunk 40 of 60) has spent minutes and left layers
 * with different lengths. What the cache holds after the prompt is exact (compressedLayout: the
 * allocator holds the same bytes after compress()); on top of it comes an upper bound of what a chunk
 * needs while it waits in FP16 and is compressed (the working set verifyCompression also plans with).
 */
import { NexusQuantError } from "../errors.js";
import { compressedLayout, fp16BytesPerTokenLayer, type CompressionSpec } from "../format/index.js";
import { backendInfo, hostMemoryLimit, memoryStats } from "../runtime/index.js";
import { compressScratchBytes } from "../runtime/working-set.js";
import { availableMemory } from "../runtime/available-memory.js";

export interface PrefillPlan {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** The spec of the cache; undefined for preset "none" (FP16, no eviction). */
  spec: CompressionSpec | undefined;
  /** True length of each row after the step. */
  tokensAfter: number[];
  /** Tokens of each row's longest prefill chunk in this step. */
  chunkTokens: number;
  /** Bytes the conversation's cache holds now (0 before its first step). */
  heldBytes: number;
  /** The conversation's own limit (options.memoryLimitBytes; 0: none). */
  memoryLimitBytes: number;
  preset: string;
}

export interface PrefillBytes {
  /** What the cache holds once the step's prompt is in and compressed. */
  heldAfterBytes: number;
  /** Up to this much more while a chunk waits in FP16 (residual growth of a quarter included). */
  transientBytes: number;
  neededBytes: number;
}

export function prefillBytes(plan: PrefillPlan): PrefillBytes {
  const row = plan.layers * fp16BytesPerTokenLayer(plan.kvHeads, plan.headDim);
  const heldAfterBytes =
    plan.spec === undefined
      ? plan.tokensAfter.reduce((a, t) => a + t, 0) * row
      : compressedLayout({ layers: plan.layers, kvHeads: plan.kvHeads, headDim: plan.headDim, tokens: plan.tokensAfter }, plan.spec).bytes.total;
  let transientBytes: number;
  if (plan.spec === undefined) {
    // Uncompressed ("none"): the whole FP16 residual grows by a quarter.
    transientBytes = plan.tokensAfter.reduce((a, t) => a + Math.ceil(t / 4), 0) * row;
  } else {
    // Before its compress() a chunk waits in the FP16 residual of every layer (grown by a quarter);
    // compress() then works one (sequence, layer) at a time: its scratch, and the new pages of that
    // layer while the old ones are still held.
    const longest = Math.max(...plan.tokensAfter);
    const { kvHeads, headDim, spec } = plan;
    transientBytes =
      plan.tokensAfter.length * Math.ceil(1.25 * plan.chunkTokens) * row +
      compressScratchBytes(kvHeads, headDim, longest, spec, backendInfo().cpu.threads) +
      compressedLayout({ layers: 1, kvHeads, headDim, tokens: longest }, spec).bytes.total;
  }
  return { heldAfterBytes, transientBytes, neededBytes: heldAfterBytes + transientBytes };
}

/** OUT_OF_MEMORY, before anything runs, when the step's cache cannot fit a limit it is held to. */
export function checkPrefillFits(plan: PrefillPlan): PrefillBytes {
  const need = prefillBytes(plan);
  const growth = need.neededBytes - plan.heldBytes;
  const bounds: { availableBytes: number; source: string }[] = [];
  if (plan.memoryLimitBytes > 0) bounds.push({ availableBytes: plan.memoryLimitBytes - plan.heldBytes, source: "options.memoryLimitBytes" });
  const hostLimit = hostMemoryLimit();
  if (hostLimit !== null) bounds.push({ availableBytes: hostLimit - memoryStats().host.totalBytes, source: "setHostMemoryLimit" });
  const machine = availableMemory();
  bounds.push({ availableBytes: machine.bytes, source: machine.source });
  const tightest = bounds.sort((a, b) => a.availableBytes - b.availableBytes)[0]!;
  if (growth <= tightest.availableBytes) return need;
  const tokens = plan.tokensAfter.reduce((a, t) => a + t, 0);
  throw new NexusQuantError(
    "OUT_OF_MEMORY",
    `This prompt needs ${need.neededBytes} bytes of KV cache (${tokens} tokens, preset ${plan.preset}: ${need.heldAfterBytes} held once it is in and compressed + up to ` +
      `${need.transientBytes} while a ${plan.chunkTokens}-token chunk waits in FP16) but ${plan.heldBytes + Math.max(0, tightest.availableBytes)} bytes are available ` +
      `(${tightest.source}${plan.heldBytes > 0 ? `, ${plan.heldBytes} of them held already` : ""}). Nothing was run: use a shorter prompt, a stronger preset or a smaller prefillChunk, or raise the limit.`,
    { neededBytes: need.neededBytes, heldAfterBytes: need.heldAfterBytes, transientBytes: need.transientBytes, heldBytes: plan.heldBytes, availableBytes: tightest.availableBytes, source: tightest.source },
  );
}
