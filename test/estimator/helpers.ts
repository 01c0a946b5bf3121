import { readFileSync } from "node:fs";
import { NexusQuantError } from "../../src/errors.js";

export function fixture(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), "utf8")) as Record<string, unknown>;
}

/** Runs fn and returns the NexusQuantError it throws (fails the test if it throws nothing else). */
export function thrown(fn: () => unknown): NexusQuantError {
  try {
    fn();
  } catch (e) {
    if (e instanceof NexusQuantError) return e;
    throw e;
  }
  throw new Error("expected a NexusQuantError, but nothing was thrown");
}
