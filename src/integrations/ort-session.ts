/**
 * withNexusQuant for an onnxruntime-node InferenceSession: a generation loop that keeps the KV cache
 * compressed between steps. onnxruntime-node hands back host tensors every step (no IO binding in
 * Node), so each step materializes dense past from the cache, runs the session, and appends only the
 * new slots of `present.*` to the cache (the step adapter, step-adapter.ts).
 */
import { NexusQuantError } from "../errors.js";
import { inspectConvention, type ModelConvention, type SessionMetadataLike } from "./convention.js";
import { DecodeHandle } from "./decode-handle.js";
import type { ResolvedOptions } from "./options.js";
import { ConventionStepEngine } from "./step-adapter.js";

export type { GenerateOptions, GenerateResult } from "./decode-handle.js";
export type { StepResult, StepTimings } from "./step-adapter.js";

/** The parts of an onnxruntime-node tensor the wrapper reads. */
export interface OrtTensorLike {
  readonly dims: readonly number[];
  readonly type: string;
  readonly data: unknown;
}
/** The parts of an onnxruntime-node InferenceSession the wrapper uses. */
export interface OrtSessionLike extends SessionMetadataLike {
  run(feeds: Record<string, OrtTensorLike>): Promise<Record<string, OrtTensorLike>>;
}
/** The parts of the onnxruntime-node module the wrapper uses (its Tensor class). */
export interface OrtModuleLike {
  Tensor: new (type: string, data: unknown, dims: readonly number[]) => OrtTensorLike;
}

export function isOrtSession(model: unknown): model is OrtSessionLike {
  const m = model as Partial<OrtSessionLike> | null;
  return typeof m === "object" && m !== null && typeof m.run === "function" && Array.isArray(m.inputNames) && Array.isArray(m.outputNames);
}

export class NexusQuantSession extends DecodeHandle {
  readonly session: OrtSessionLike;
  readonly convention: ModelConvention;
  readonly options: Readonly<ResolvedOptions>;

  constructor(session: OrtSessionLike, options: ResolvedOptions, ort: OrtModuleLike) {
    const convention = inspectConvention(session);
    if (convention.extraInputs.length > 0) {
      throw new NexusQuantError(
        "UNSUPPORTED",
        `This model has inputs nexusquant does not know how to feed: ${convention.extraInputs.join(", ")}. ` +
          `It has inputs [${session.inputNames.join(", ")}]. Export it without them (e.g. a non-merged decoder), or wrap it through transformers.js.`,
        { inputs: [...session.inputNames], outputs: [...session.outputNames], extra: convention.extraInputs },
      );
    }
    const { Tensor } = ort;
    super(
      new ConventionStepEngine<OrtTensorLike>({
        convention,
        describe: { inputs: [...session.inputNames], outputs: [...session.outputNames] },
        options,
        tensor: (type, data, dims) => new Tensor(type, data, dims),
        run: (feeds) => session.run(feeds),
      }),
      "onnxruntime-node session",
      // A session carries no config: it stops where options.eos says, else only at maxNewTokens.
      options.eos ?? [],
    );
    this.session = session;
    this.convention = convention;
    this.options = options;
  }
}
