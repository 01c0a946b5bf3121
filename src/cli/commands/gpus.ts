import { GPUS } from "../../estimator/index.js";
import { parseFlags } from "../args.js";
import { formatInt, renderTable, toJson } from "../table.js";
import type { CliCommand } from "../types.js";

export const gpusCommand: CliCommand = {
  name: "gpus",
  summary: "list the built-in GPUs (memory, bandwidth)",
  usage: `Usage: nexusquant gpus [--json]

Lists the GPUs the estimator knows, with memory as the vendor states it (decimal GB, 1e9 bytes)
and peak memory bandwidth (GB/s). Use an id or alias with \`nexusquant estimate --gpu ID\`.

Options:
  --json   print a JSON array
  --help   this text
`,
  async run(args, io) {
    const { values } = parseFlags(args, { json: { type: "boolean" } });
    const gpus = Object.values(GPUS);
    if (values.json) {
      io.stdout(toJson(gpus));
      return 0;
    }
    io.stdout(
      renderTable(
        ["id", "aliases", "name", "memory GB", "type", "bandwidth GB/s", "source"],
        gpus.map((g) => [g.id, g.aliases.join(", "), g.name, String(g.memoryGb), g.memoryType, formatInt(g.bandwidthGbPerSecond), g.source]),
        ["left", "left", "left", "right", "left", "right", "left"],
      ),
    );
    return 0;
  },
};
