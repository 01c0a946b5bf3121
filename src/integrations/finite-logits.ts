/**
 * No token comes out of NaN/Inf logits. A checkpoint with NaN in a weight that acts after the last
 * attention (model.norm.weight, the last layer's mlp.down_proj) gives finite K/V, so the cache's own
 * checks (INVALID_DATA on NaN keys/values) never see it: every logit is NaN and argmax returns token 0
 * forever. Every wrapper checks the logits of each step here before anything samples from them.
 */
import { NexusQuantError } from "../errors.js";

/** Where the logits came from, for the message, and which of them can be sampled. */
export interface LogitsSource {
  wrapper: string;
  /** Step of the conversation (the first is 1); omitted where the wrapper does not count steps. */
  step?: number;
  /**
   * Real (not padding) columns of each row: its last `realColumns(row)` columns (rows are left-padded;
   * a finished row of a batch gets none). Padding slots are never sampled, and a model may well give
   * NaN there (a fully masked softmax). Default: every column.
   */
  realColumns?: (row: number) => number;
  /** True position of the token at (row, column), when the wrapper knows it. */
  position?: (row: number, column: number) => number | undefined;
}

const FP16_EXPONENT = 0x7c00;

/**
 * Throws MODEL_OUTPUT when the real columns of `logits` ([batch, tokens, vocab]: float32, or FP16
 * bits) hold a NaN or an infinity, naming the step, row, position and how many entries are bad.
 */
export function checkFiniteLogits(logits: ArrayLike<number>, dims: readonly number[], source: LogitsSource): void {
  const half = logits instanceof Uint16Array;
  const bad = (x: number) => (half ? (x & FP16_EXPONENT) === FP16_EXPONENT : !Number.isFinite(x));
  const [batch = 1, tokens = 1, vocab = logits.length] = dims;
  let first: { row: number; column: number } | undefined;
  let count = 0;
  for (let row = 0; row < batch; row++) {
    const real = Math.min(tokens, source.realColumns?.(row) ?? tokens);
    const from = (row * tokens + tokens - real) * vocab;
    const to = (row + 1) * tokens * vocab;
    for (let i = from; i < to; i++) {
      if (!bad(logits[i]!)) continue;
      // Counting the rest is only paid on the way to an error.
      count++;
      first ??= { row, column: Math.floor(i / vocab) % tokens };
    }
  }
  if (first === undefined) return;
  const { row, column } = first;
  const position = source.position?.(row, column);
  const step = source.step !== undefined ? `step ${source.step} of the conversation` : "a forward() step";
  const where = `${step} (row ${row}${position !== undefined && position >= 0 ? `, position ${position}` : ""})`;
  throw new NexusQuantError(
    "MODEL_OUTPUT",
    `Expected finite logits from the model but received ${count} NaN/Inf (${source.wrapper}, ${where}); no token was sampled from them. ` +
      "The checkpoint's weights are likely broken: look for NaN/Inf in the tensors after the last attention (model.norm.weight, the last layer's mlp.down_proj.weight, lm_head.weight).",
    { ...(source.step !== undefined ? { step: source.step } : {}), row, column, ...(position !== undefined ? { position } : {}), nonFinite: count, wrapper: source.wrapper },
  );
}
