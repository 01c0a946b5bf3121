import { expect } from "vitest";
import { NexusQuantError } from "../src/errors.js";

/** Asserts that fn throws a NexusQuantError with this code (and a message matching `message`). */
export function expectCode(fn: () => unknown, code: string, message?: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NexusQuantError);
    expect((e as NexusQuantError).code).toBe(code);
    if (message) expect((e as Error).message).toMatch(message);
    return;
  }
  throw new Error(`expected a NexusQuantError with code ${code}`);
}
