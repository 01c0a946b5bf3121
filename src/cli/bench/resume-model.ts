/**
 * The model `nexusquant bench resume` runs, the same in the coordinator and every worker: the trained
 * reference model shipped in the package (models/sotu-llama), a tiny random-weight Llama built on the
 * spot, or a checkpoint directory.
 */
import { builtNativeModel, nativeModelFromDir, REFERENCE_MODEL_DIR, type NativeDemoModel } from "../demo-model.js";

/** How long a replaced state's chunks stay for readers (the workers' RedisStateStore readGraceMs); the coordinator waits past it before reading Redis's memory. */
export const BENCH_READ_GRACE_MS = 500;

/** "sotu" (models/sotu-llama), "built" (random weights), or a checkpoint directory. */
export type ResumeModelChoice = string;

export async function loadResumeModel(choice: ResumeModelChoice): Promise<NativeDemoModel> {
  if (choice === "sotu") return nativeModelFromDir(REFERENCE_MODEL_DIR, "models/sotu-llama (trained, 2.9M parameters)");
  if (choice === "built") return builtNativeModel();
  return nativeModelFromDir(choice);
}
