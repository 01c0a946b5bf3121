#!/usr/bin/env node
import { runCli } from "./run.js";

const io = {
  stdout: (text: string) => void process.stdout.write(text),
  stderr: (text: string) => void process.stderr.write(text),
};

// exitCode rather than exit(): lets stdout drain when piped.
process.exitCode = await runCli(process.argv.slice(2), io);
