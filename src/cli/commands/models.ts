import { ARCHITECTURES, kvBytesPerToken, type Architecture } from "../../estimator/index.js";
import { parseFlags } from "../args.js";
import { formatInt, renderTable, toJson } from "../table.js";
import type { CliCommand } from "../types.js";

export function describeAttention(a: Architecture): string {
  if (a.mla) return `MLA (${a.mla.kvLoraRank}+${a.mla.qkRopeHeadDim} latent)`;
  const kind = a.attention.toUpperCase();
  return a.slidingWindow ? `${kind}, ${a.slidingWindow.layers}/${a.layers} layers window ${formatInt(a.slidingWindow.window)}` : kind;
}

export const modelsCommand: CliCommand = {
  name: "models",
  summary: "list the built-in model architectures",
  usage: `Usage: nexusquant models [--json]

Lists the architectures the estimator knows, read from each model's published config.json:
layers, KV heads, head_dim, attention kind (GQA/MHA/MQA, sliding windows, MLA), FP16 KV bytes
per token and parameters. Use an id with \`nexusquant estimate --model ID\`.

Options:
  --json   print a JSON array of Architecture objects (with fp16KvBytesPerToken)
  --help   this text
`,
  async run(args, io) {
    const { values } = parseFlags(args, { json: { type: "boolean" } });
    const archs = Object.values(ARCHITECTURES);
    if (values.json) {
      io.stdout(toJson(archs.map((a) => ({ ...a, fp16KvBytesPerToken: kvBytesPerToken(a, "fp16") }))));
      return 0;
    }
    io.stdout(
      renderTable(
        ["id", "layers", "KV heads", "head_dim", "attention", "fp16 B/token", "max context", "params", "source"],
        archs.map((a) => [
          a.id,
          String(a.layers),
          String(a.kvHeads),
          String(a.headDim),
          describeAttention(a),
          formatInt(kvBytesPerToken(a, "fp16")),
          a.maxContext === undefined ? "" : formatInt(a.maxContext),
          a.parameters === undefined ? "" : `${+(a.parameters / 1e9).toPrecision(4)}B`,
          a.source.split(" ")[0]!,
        ]),
        ["left", "right", "right", "right", "left", "right", "right", "right", "left"],
      ),
    );
    return 0;
  },
};
