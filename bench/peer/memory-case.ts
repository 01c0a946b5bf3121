/**
 * The llama.cpp cases of `nexusquant bench memory` (lab only: node-llama-cpp is a devDependency), one
 * child process per case like the product's cases (src/cli/bench/memory-case.ts), with the same spec,
 * result and prompt: the bench model (same seed, same weights rounded to F16 as a GGUF holds them)
 * converted to GGUF, loaded without mmap (weights resident before the peak mark is reset, as the other
 * cases' are), then a context of the case's KV type for prompt + decode tokens (llama.cpp allocates
 * every cell of it up front: the held KV bytes), the prompt evaluated in batches of `chunk` tokens,
 * and `decode` greedy tokens one at a time, on `threads` threads.
 * Invoked by the bench as `node --import tsx bench/peer/memory-case.ts '<json spec>'`.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fp16BytesPerTokenLayer } from "../../src/format/index.js";
import { caseResult, promptIds, resetPeakRss, runCaseProcess, type MemoryCaseResult, type MemoryCaseSpec } from "../../src/cli/bench/memory-case.js";
import { createTinyLlama } from "../../src/model/index.js";
import { writeLlamaGguf } from "./gguf-convert.js";
import { LlamaCppPeer, PEER_MEMORY_CASES } from "./llama-cpp.js";

export async function runPeerMemoryCase(spec: MemoryCaseSpec): Promise<MemoryCaseResult> {
  const kv = PEER_MEMORY_CASES[spec.case];
  if (kv === undefined) throw new Error(`unknown llama.cpp memory case ${JSON.stringify(spec.case)} (known: ${Object.keys(PEER_MEMORY_CASES).join(", ")})`);
  const model = createTinyLlama(spec.model);
  const c = model.config;
  const ids = promptIds(spec.prompt, c.vocabSize);
  const cells = spec.prompt + spec.decode;
  const work = await mkdtemp(join(tmpdir(), "nq-peer-memory-"));
  try {
    const gguf = join(work, "model.gguf");
    // Positions past the built model's 4K are fine for RoPE; llama.cpp only warns about them, so say the context is long enough.
    await writeLlamaGguf({ ...model, config: { ...c, maxPositionEmbeddings: Math.max(c.maxPositionEmbeddings, cells) } }, gguf);
    model.weights.clear();
    const peer = await LlamaCppPeer.load(gguf, { ...(spec.threads !== undefined ? { threads: spec.threads } : {}), useMmap: false });
    try {
      const resetDone = resetPeakRss();
      const session = await peer.open(kv, cells, { batchSize: spec.chunk });
      let t = performance.now();
      let next = await session.next(ids);
      const prefillSeconds = (performance.now() - t) / 1000;
      const tokens: number[] = [];
      t = performance.now();
      for (let i = 0; i < spec.decode; i++) {
        tokens.push(next);
        next = await session.next([next]);
      }
      const decodeSeconds = (performance.now() - t) / 1000;
      const result = caseResult(spec, {
        resetDone,
        allocatorPeakBytes: null,
        heldKvBytes: session.allocatedKvBytes(),
        fp16KvBytes: cells * c.numLayers * fp16BytesPerTokenLayer(c.numKvHeads, c.headDim),
        prefillSeconds,
        decodeSeconds,
        tokens,
      });
      await session.dispose();
      return result;
    } finally {
      await peer.dispose();
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) runCaseProcess(runPeerMemoryCase);
