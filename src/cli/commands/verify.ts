import { PRESET_NAMES } from "../../format/index.js";
import { verifyCompression, type VerifyResult } from "../../verify.js";
import { readProfile } from "../../transform/index.js";
import type { BackendRequest } from "../../runtime/backend.js";
import { invalidArgument } from "../../errors.js";
import { parseBytes, parseContext, parseFlags, parsePositiveInt } from "../args.js";
import { resolveModelFlags } from "../model-arg.js";
import { progressBar } from "../progress.js";
import { formatInt, formatRatio, renderTable, toJson } from "../table.js";
import type { CliCommand } from "../types.js";

const USAGE = `Usage: nexusquant verify (--model ID | --config PATH) --context N --preset NAME[,NAME...] [options]

Builds a compressed KV cache of the model's shape, fills it with synthetic KV of realistic statistics
(RoPE'd keys with outlier channels, smoother values; see docs/verification.md), compresses it with
the preset, and compares the bytes the accounting allocator holds with the layout estimate.
Measured and estimated bytes must be equal; the command exits 1 when they are not.

Options:
  --model ID          a registry id (nexusquant models)
  --config PATH       a Hugging Face config.json
  --context N         tokens per sequence: an integer, or 32k / 128k (x1024), 1m (x1024^2)
  --preset NAMES      one or more presets, comma-separated (${PRESET_NAMES.join(", ")})
  --batch N           sequences (default 1)
  --backend B         auto (default: backendInfo().auto, today the CPU), cpu or cuda
  --seed N            synthetic data seed (default 1)
  --memory-limit B    refuse a run whose peak would pass B bytes (4GiB, 512MiB, 8GB); default: the
                      memory available (MemAvailable and the cgroup's memory.max)
  --profile FILE      code with a calibrated transform profile (nexusquant calibrate; docs/transform.md),
                      made for this model's shape; its tables count in both totals
  --json              print a JSON array of results
  --help              this text

Memory: the CPU backend holds one layer in FP16 while it compresses it (layers are filled and
compressed one at a time), so the peak is one FP16 layer plus the compressed cache. That peak is
computed before anything is allocated; a run that would not fit fails at once with OUT_OF_MEMORY,
naming the bytes it needs and the largest context that fits. Progress goes to stderr (a bar on a
terminal, plain lines otherwise).
`;

export const verifyCommand: CliCommand = {
  name: "verify",
  summary: "measure a compressed cache's allocated bytes against the layout estimate",
  usage: USAGE,
  async run(args, io) {
    const { values: v } = parseFlags(args, {
      model: { type: "string" },
      config: { type: "string" },
      context: { type: "string" },
      preset: { type: "string" },
      batch: { type: "string" },
      backend: { type: "string" },
      seed: { type: "string" },
      "memory-limit": { type: "string" },
      profile: { type: "string" },
      json: { type: "boolean" },
    });
    const arch = await resolveModelFlags(v.model, v.config);
    if (v.context === undefined) throw invalidArgument("--context", "a context length such as 32k", undefined);
    if (v.preset === undefined) throw invalidArgument("--preset", `one or more of ${PRESET_NAMES.join(", ")}`, undefined);
    const context = parseContext("--context", v.context);
    const batch = v.batch === undefined ? 1 : parsePositiveInt("--batch", v.batch);
    const seed = v.seed === undefined ? 1 : parsePositiveInt("--seed", v.seed);
    const memoryLimit = v["memory-limit"] === undefined ? undefined : parseBytes("--memory-limit", v["memory-limit"]);
    const backend = (v.backend ?? "auto") as BackendRequest;
    if (!["auto", "cpu", "cuda"].includes(backend)) throw invalidArgument("--backend", "auto, cpu or cuda", v.backend);
    for (const w of arch.warnings ?? []) io.stderr(`nexusquant verify: warning: ${w}\n`);
    const profile = v.profile === undefined ? undefined : await readProfile(v.profile);
    const results: VerifyResult[] = [];
    for (const preset of v.preset.split(",").map((p) => p.trim())) {
      const onProgress = progressBar(io, `${preset}: layers`);
      results.push(await verifyCompression({ model: arch, context, preset, batch, backend, seed, onProgress, ...(memoryLimit === undefined ? {} : { memoryLimitBytes: memoryLimit }), ...(profile === undefined ? {} : { profile }) }));
    }
    if (v.json) {
      io.stdout(toJson(results));
    } else {
      const r0 = results[0]!;
      io.stdout(
        `${arch.id}: ${r0.shape.layers} layers x ${r0.shape.kvHeads} KV heads x head_dim ${r0.shape.headDim}, ` +
          `${formatInt(context)} tokens x batch ${batch}, backend ${r0.backend}${r0.transform ? `, calibrated transform profile (tables ${formatInt(r0.components.measured.transform)} B)` : ""}\n` +
          `FP16 baseline: ${formatInt(r0.baselineBytes)} B\n\n`,
      );
      io.stdout(
        renderTable(
          ["preset", "estimated B", "measured B", "equal", "estimated ratio", "measured ratio", "codes B", "scales B", "positions B", "residual B", "seconds"],
          results.map((r) => [
            r.preset,
            formatInt(r.estimatedBytes),
            formatInt(r.measuredBytes),
            r.exact ? "yes" : "NO",
            formatRatio(r.estimatedRatio),
            formatRatio(r.measuredRatio),
            formatInt(r.components.measured.codes),
            formatInt(r.components.measured.scales),
            formatInt(r.components.measured.positions),
            formatInt(r.components.measured.residual),
            r.seconds.toFixed(1),
          ]),
          ["left", "right", "right", "left", "right", "right", "right", "right", "right", "right", "right"],
        ),
      );
      io.stdout("\nMeasured = bytes held by the accounting allocator after compression; estimated = src/format compressedLayout.\n");
    }
    return results.every((r) => r.exact) ? 0 : 1;
  },
};
