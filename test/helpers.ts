import { expect } from "vitest";
import { NexusQuantError } from "../src/errors.js";

/**
 * How much slower than an idle machine tests may run: NEXUSQUANT_TEST_TIMEOUT_SCALE (.ci/run sets 3
 * for CI, which may share its machine; .ci/sanitize multiplies it by 4 for ASan). Timeouts and
 * wall-clock bounds ("refused at once") are multiplied by it: they catch hangs and runaway work, not
 * a slow machine. vitest.config.ts scales its default timeouts the same way.
 */
export const TIME_SCALE = Math.max(1, Number(process.env.NEXUSQUANT_TEST_TIMEOUT_SCALE ?? 1) || 1);

/** Awaits a promise that must reject with a NexusQuantError, and returns the error. */
export async function rejectionOf(promise: Promise<unknown>): Promise<NexusQuantError> {
  const e = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(NexusQuantError);
  return e as NexusQuantError;
}

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

/** Normalized squared error ‖got − want‖² / ‖want‖², the codec tests' distortion. */
export function nmse(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i]! - want[i]!) ** 2;
    den += want[i]! ** 2;
  }
  return num / den;
}
