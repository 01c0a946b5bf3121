import { NexusQuantError, describeValue } from "../errors.js";
import { resolveOptions, type NexusQuantOptions } from "./options.js";
import { NexusQuantSession, isOrtSession, type OrtModuleLike, type OrtSessionLike } from "./ort-session.js";
import { TransformersJsHandle, isTransformersJsModel, type TransformersJsModelLike } from "./transformers-js.js";
import { NativeModelSession, type OrtRuntimeLike } from "./native-model.js";
import { isLlamaModel, type LlamaModel } from "../model/model-dir.js";

export type WrappedModel<M> = M extends LlamaModel ? NativeModelSession : M extends TransformersJsModelLike ? TransformersJsHandle<M> : NexusQuantSession;

/**
 * Wraps a model so that its KV cache is held compressed between generation steps.
 *
 * - an onnxruntime-node InferenceSession → a NexusQuantSession with generate()/step()/stats();
 * - a transformers.js causal LM → a handle; the model's own generate() now runs compressed, and
 *   dispose() restores it.
 * - a loaded checkpoint (`await loadModel(dir)`) → a NativeModelSession: the native path, where the
 *   model's attention reads the compressed cache directly (no dense past at any time).
 *
 * NexusQuantSession and NativeModelSession are both DecodeHandles (one implementation of generate,
 * step, stats, timings, reset, dispose, BUSY/DISPOSED) over different StepEngines.
 *
 * With a callback, the wrapper lives only for the callback and is disposed after it (the model is
 * restored even if the callback throws); the callback's result is returned.
 */
export async function withNexusQuant<M extends OrtSessionLike | TransformersJsModelLike | LlamaModel>(model: M, options?: NexusQuantOptions): Promise<WrappedModel<M>>;
export async function withNexusQuant<M extends OrtSessionLike | TransformersJsModelLike | LlamaModel, R>(
  model: M,
  options: NexusQuantOptions | undefined,
  scope: (wrapped: WrappedModel<M>) => Promise<R> | R,
): Promise<R>;
export async function withNexusQuant(model: unknown, options: NexusQuantOptions = {}, scope?: (wrapped: never) => unknown): Promise<unknown> {
  const resolved = resolveOptions(options);
  let wrapped: NexusQuantSession | TransformersJsHandle | NativeModelSession;
  if (isLlamaModel(model)) {
    wrapped = await NativeModelSession.create(model, resolved, (await loadOrt(resolved.ort)) as unknown as OrtRuntimeLike);
  } else if (isTransformersJsModel(model)) {
    if (resolved.eos !== undefined) {
      // Its own generate() runs, and stops where its generation_config says: an eos here would be ignored.
      throw new NexusQuantError("INVALID_ARGUMENT", "options.eos is for handles whose generate() nexusquant runs (a loaded checkpoint, an ONNX session); a transformers.js model's own generate() stops at its generation_config's eos_token_id: pass eos_token_id to generate() instead.", { arg: "options.eos" });
    }
    wrapped = new TransformersJsHandle(model, resolved);
  } else if (isOrtSession(model)) {
    wrapped = new NexusQuantSession(model, resolved, await loadOrt(resolved.ort));
  } else {
    throw new NexusQuantError(
      "UNSUPPORTED",
      `withNexusQuant wraps a loaded checkpoint (loadModel(dir)), an onnxruntime-node InferenceSession or a transformers.js causal LM (AutoModelForCausalLM); received ${describeValue(model)}.`,
    );
  }
  if (scope === undefined) return wrapped;
  try {
    return await scope(wrapped as never);
  } finally {
    wrapped.dispose();
  }
}

async function loadOrt(given: unknown): Promise<OrtModuleLike> {
  if (given !== undefined) {
    if (typeof (given as OrtModuleLike | null)?.Tensor !== "function") {
      throw new NexusQuantError("INVALID_ARGUMENT", `Expected the onnxruntime-node module (with a Tensor class) for options.ort but received ${describeValue(given)}`, { arg: "options.ort" });
    }
    return given as OrtModuleLike;
  }
  try {
    // An optional peer dependency: only users who wrap an ORT session need it.
    const specifier = "onnxruntime-node";
    return (await import(specifier)) as OrtModuleLike;
  } catch (e) {
    throw new NexusQuantError(
      "BACKEND_UNAVAILABLE",
      `onnxruntime-node could not be loaded (${e instanceof Error ? e.message : String(e)}). Install it with ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node, or pass { ort } to withNexusQuant.`,
    );
  }
}
