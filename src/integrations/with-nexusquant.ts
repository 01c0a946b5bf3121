import { NexusQuantError, describeValue } from "../errors.js";
import { resolveOptions, resolveOptionsForState, type NexusQuantOptions } from "./options.js";
import { decodeConversationState } from "./conversation-state.js";
import { importOptionalPeer } from "../shared/optional-peer.js";
import { NexusQuantSession, isOrtSession, type OrtModuleLike, type OrtSessionLike } from "./ort-session.js";
import { TransformersJsHandle, isTransformersJsModel, type TransformersJsModelLike } from "./transformers-js.js";
import { NativeModelSession, type OrtRuntimeLike } from "./native-model.js";
import { isLlamaModel, type LlamaModel } from "../model/model-dir.js";
import { importOnnxRuntime } from "./onnxruntime.js";

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
 * With `{ state }` (saveState()'s bytes) the handle resumes that conversation: preset and schedule
 * come from the state, and the model must be the one that saved it (docs/state.md).
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
  // A state is decoded (and refused if corrupt) before anything is built.
  const saved = options?.state === undefined ? undefined : decodeConversationState(options.state);
  const resolved = saved === undefined ? resolveOptions(options) : resolveOptionsForState(options, saved);
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
  if (saved !== undefined) {
    if (wrapped instanceof TransformersJsHandle) {
      wrapped.dispose();
      throw new NexusQuantError("UNSUPPORTED", "options.state resumes a conversation on the native path (loadModel(dir)) or an onnxruntime-node session; a transformers.js model keeps its own past.");
    }
    try {
      await wrapped.restoreState(options.state!);
    } catch (e) {
      await wrapped[Symbol.asyncDispose]();
      throw e;
    }
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
  // An optional peer dependency: only the native path and ORT sessions need it; which copy, and the
  // version clash with @huggingface/transformers' own, is onnxruntime.ts's job.
  return (await importOnnxRuntime()) as OrtModuleLike;
}
