import { PRESETS, PRESET_ALIASES, presetRatio, type Preset } from "../../format/index.js";
import { parseFlags } from "../args.js";
import { formatRatio, renderTable, toJson } from "../table.js";
import type { CliCommand } from "../types.js";

interface PresetRow {
  name: string;
  keyBits: number;
  valueBits: number;
  evictFraction: number;
  /** Long-context ratio against FP16 at head_dim 128, computed by src/format's layout. */
  ratioHeadDim128: number;
  /** For the tier aliases S/M/L/XL: the published ratio the tier stands for. */
  tierTarget?: number;
  description: string;
}

function row(p: Preset, tierTarget?: number): PresetRow {
  const r: PresetRow = {
    name: p.name,
    keyBits: p.spec.keyBits,
    valueBits: p.spec.valueBits,
    evictFraction: p.spec.evictFraction,
    ratioHeadDim128: presetRatio(p.name, 128),
    description: p.description,
  };
  if (tierTarget !== undefined) r.tierTarget = tierTarget;
  return r;
}

export function presetRows(): PresetRow[] {
  return [
    ...Object.values(PRESETS).map((p) => row(p)),
    ...Object.values(PRESET_ALIASES).map((a) => row(a.preset, a.target)),
  ];
}

export const presetsCommand: CliCommand = {
  name: "presets",
  summary: "list the compression presets with their computed ratios",
  usage: `Usage: nexusquant presets [--json]

Lists every compression preset: key/value bits per element, the fraction of evictable tokens
evicted, and the long-context compression ratio against FP16 at head_dim 128, computed by the
layout code (src/format), never typed in. S, M, L and XL are the published ~5x/10x/17x/33x tiers.

Options:
  --json   print a JSON array
  --help   this text
`,
  async run(args, io) {
    const { values } = parseFlags(args, { json: { type: "boolean" } });
    const rows = presetRows();
    if (values.json) {
      io.stdout(toJson(rows));
      return 0;
    }
    io.stdout(
      renderTable(
        ["preset", "K bits", "V bits", "evicted", "ratio @ head_dim 128", "tier", "description"],
        rows.map((r) => [
          r.name,
          String(r.keyBits),
          String(r.valueBits),
          `${Math.round(r.evictFraction * 100)}%`,
          formatRatio(r.ratioHeadDim128),
          r.tierTarget === undefined ? "" : `~${r.tierTarget}x`,
          r.description,
        ]),
        ["left", "right", "right", "right", "right", "right", "left"],
      ),
    );
    return 0;
  },
};
