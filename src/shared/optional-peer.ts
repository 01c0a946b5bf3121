import { NexusQuantError } from "../errors.js";

/**
 * Imports an optional peer dependency (onnxruntime-node, redis) when a feature first needs it, so
 * that the package loads with its production dependencies alone. When it is missing, the error is
 * BACKEND_UNAVAILABLE: what could not be loaded and why, then `remedy` (how to install it).
 */
export async function importOptionalPeer<T>(name: string, what: string, remedy: string): Promise<T> {
  try {
    // A variable specifier: neither TypeScript nor a bundler resolves it ahead of time.
    const specifier = name;
    return (await import(specifier)) as T;
  } catch (e) {
    throw new NexusQuantError("BACKEND_UNAVAILABLE", `${what} could not be loaded (${e instanceof Error ? e.message : String(e)}). ${remedy}`, { package: name });
  }
}
