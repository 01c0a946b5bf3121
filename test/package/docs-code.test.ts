/**
 * Every code block of README.md and docs/*.md is checked, so that an example cannot stop working
 * unnoticed: TypeScript and JavaScript blocks are type-checked against the sources (one tsc program,
 * `nexusquant` and its subpaths mapped to src/) and run (each in its own Node process, through tsx
 * for TypeScript); JavaScript blocks must also parse on plain Node with no syntax Node 20 lacks
 * (`await using` is a SyntaxError there). JSON blocks must parse. Shell and output blocks are skipped
 * by their fence language, and every block needs one.
 *
 * Markers, in the fence's info string after the language (each needs its reason):
 *   ```ts no-run: needs a Hugging Face checkpoint    type-checked, not run (what CI lacks: a GPU, a download)
 *   ```ts no-check: <reason>                          neither (e.g. a deliberately incomplete fragment)
 * A block may start from a prelude the reader is assumed to bring (their prompt ids, a session), in
 * an HTML comment right above the fence: <!-- prelude: const promptIds = [1, 2, 3]; -->. It is
 * prepended when checking and running.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { TIME_SCALE } from "../helpers.js";

const run = promisify(execFile);
const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface CodeBlock {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  marker?: { kind: "no-run" | "no-check"; reason: string };
  prelude: string;
  code: string;
}

const SKIPPED = new Set(["sh", "bash", "shell", "console", "text", "txt", "output"]);
const CODE = new Set(["ts", "js"]);

/** The fenced blocks of one Markdown file, with their language, marker and prelude. */
export function extractBlocks(text: string, file: string): CodeBlock[] {
  const lines = text.split("\n");
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^\s*(`{3,}|~{3,})(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[1]!;
    const info = open[2]!.trim();
    const lang = info.split(/\s+/)[0] ?? "";
    const m = /\b(no-run|no-check):\s*(.*)$/.exec(info);
    let end = i + 1;
    while (end < lines.length && !new RegExp(`^\\s*${fence[0]}{${fence.length},}\\s*$`).test(lines[end]!)) end++;
    // A prelude comment ends on the line above the fence (blank lines aside).
    let prelude = "";
    let j = i - 1;
    while (j >= 0 && lines[j]!.trim() === "") j--;
    if (j >= 0 && lines[j]!.trim().endsWith("-->")) {
      let k = j;
      while (k >= 0 && !lines[k]!.includes("<!--")) k--;
      const comment = lines.slice(k, j + 1).join("\n");
      const p = /<!--\s*prelude:([\s\S]*?)-->/.exec(comment);
      if (p) prelude = p[1]!.trim();
    }
    blocks.push({
      file,
      line: i + 1,
      lang,
      ...(m ? { marker: { kind: m[1] as "no-run" | "no-check", reason: m[2]!.trim() } } : {}),
      prelude,
      code: lines.slice(i + 1, end).join("\n"),
    });
    i = end;
  }
  return blocks;
}

const docs = ["README.md", ...readdirSync(join(repo, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
const blocks = docs.flatMap((f) => extractBlocks(readFileSync(join(repo, f), "utf8"), f));
const where = (b: CodeBlock) => `${b.file}:${b.line}`;
const checked = blocks.filter((b) => CODE.has(b.lang) && b.marker?.kind !== "no-check");
const runnable = checked.filter((b) => b.marker?.kind !== "no-run");

// The blocks as module files in a scratch project: node_modules is the repository's, `nexusquant`
// resolves to src/ (tsconfig paths, which tsc and tsx both honour), so the sources are what is checked.
const scratch = mkdtempSync(join(tmpdir(), "nq-docs-code-"));
symlinkSync(join(repo, "node_modules"), join(scratch, "node_modules"), "dir");
writeFileSync(
  join(scratch, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      lib: ["ES2023", "esnext.disposable"],
      types: ["node"],
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      allowJs: true,
      checkJs: true,
      resolveJsonModule: true,
      baseUrl: ".",
      paths: { nexusquant: [join(repo, "src", "index.ts")], "nexusquant/*": [join(repo, "src", "*", "index.ts")] },
    },
    include: ["*.ts", "*.mjs"],
  }),
);
writeFileSync(join(scratch, "package.json"), JSON.stringify({ name: "docs-code", private: true, type: "module" }));
const fileOf = new Map<CodeBlock, string>();
checked.forEach((b, n) => {
  const name = `${b.file.replace(/[^A-Za-z0-9]+/g, "_")}_${b.line}_${n}.${b.lang === "ts" ? "ts" : "mjs"}`;
  // `export {}` makes every block a module (top-level await, its own scope).
  writeFileSync(join(scratch, name), `${b.prelude}\n${b.code}\nexport {};\n`);
  fileOf.set(b, name);
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("README.md and docs/*.md code blocks", () => {
  it("every block has a fence language, and every opt-out marker a reason", () => {
    const unlabeled = blocks.filter((b) => !SKIPPED.has(b.lang) && !CODE.has(b.lang) && b.lang !== "json").map((b) => `${where(b)} (${JSON.stringify(b.lang)})`);
    expect(unlabeled, "use ts, js, json, sh or text").toEqual([]);
    const noReason = blocks.filter((b) => b.marker && b.marker.reason.length < 8).map(where);
    expect(noReason, "a no-run/no-check marker needs its reason").toEqual([]);
    expect(checked.length).toBeGreaterThan(5);
  });

  it("JSON blocks parse", () => {
    for (const b of blocks.filter((x) => x.lang === "json")) expect(() => JSON.parse(b.code), where(b)).not.toThrow();
  });

  it("JavaScript blocks parse on plain Node, with no syntax Node 20 lacks", async () => {
    for (const b of checked.filter((x) => x.lang === "js")) {
      expect(/^\s*(await\s+)?using\s+[\w$]+\s*=/m.test(b.code), `${where(b)}: \`await using\` is a SyntaxError on Node 20`).toBe(false);
      await expect(run(process.execPath, ["--check", join(scratch, fileOf.get(b)!)]), where(b)).resolves.toBeDefined();
    }
  });

  it(
    "TypeScript and JavaScript blocks type-check against the sources",
    async () => {
      const tsc = join(repo, "node_modules", "typescript", "bin", "tsc");
      const out = await run(process.execPath, [tsc, "-p", join(scratch, "tsconfig.json"), "--pretty", "false"], { cwd: scratch }).then(
        () => "",
        (e: { stdout?: string }) => e.stdout ?? String(e),
      );
      // Name the block (Markdown file and line) rather than the scratch file.
      const named = out.replace(/^(\S+?)\((\d+),(\d+)\)/gm, (all, f: string, l: string) => {
        const b = [...fileOf].find(([, name]) => f.endsWith(name))?.[0];
        if (b === undefined) return all;
        const line = Number(l) - (b.prelude ? b.prelude.split("\n").length : 1);
        return `${where(b)} (${line > 0 ? `block line ${line}` : "its prelude"})`;
      });
      expect(named).toBe("");
    },
    120_000 * TIME_SCALE,
  );

  it.each(runnable.map((b) => [where(b), b] as const))(
    "%s runs",
    async (_where, b) => {
      const result = await run(process.execPath, ["--import", "tsx", fileOf.get(b)!], { cwd: scratch, timeout: 90_000 * TIME_SCALE, env: { ...process.env, NODE_NO_WARNINGS: "1" } }).then(
        () => "ok",
        (e: { stderr?: string; message?: string }) => (e.stderr || e.message || String(e)).split("\n").slice(0, 12).join("\n"),
      );
      expect(result).toBe("ok");
    },
    120_000 * TIME_SCALE,
  );
});
