// One definition of the cache tests' bookkeeping: every cache a test makes is disposed after it, so
// a failing assertion never leaves native memory held for the next test's accounting checks.
import { afterEach } from "vitest";
import { CompressedKVCache } from "../../src/runtime/index.js";

export type CacheOptions = ConstructorParameters<typeof CompressedKVCache>[0];

export interface TrackedCaches {
  /** A new cache, disposed after the current test. */
  (opts: CacheOptions): CompressedKVCache;
  /** Disposes a cache made elsewhere (deserialize, restore) after the current test; returns it. */
  track(c: CompressedKVCache): CompressedKVCache;
}

/** Registers the afterEach disposal in the calling test file and returns the factory it covers. */
export function trackedCaches(): TrackedCaches {
  const live: CompressedKVCache[] = [];
  afterEach(() => {
    for (const c of live.splice(0)) c.dispose();
  });
  const track = (c: CompressedKVCache): CompressedKVCache => {
    live.push(c);
    return c;
  };
  return Object.assign((opts: CacheOptions) => track(new CompressedKVCache(opts)), { track });
}
