/**
 * The ranges the compressed format supports: every numeric option is checked against these in
 * TypeScript before it crosses into native code, so no value can wrap, truncate or overflow there
 * (the binding reads 32-bit fields; positions are int32). One definition: validators, error
 * messages and docs read them from here.
 */
export const FORMAT_LIMITS = Object.freeze({
  /** Head vector length: a multiple of 8 up to format::kMaxHeadDim (kernels/nq_format.h). */
  maxHeadDim: 8192,
  /** KV heads, and query heads, per layer. Real models have at most a few hundred. */
  maxHeads: 4096,
  maxLayers: 4096,
  /** Independent sequences of one cache. */
  maxBatch: 4096,
  /**
   * Tokens per sequence: positions are int32, so at most 2^31 − 1. Also bounds sinkTokens +
   * recentWindow and budgetTokens.
   */
  maxSequenceTokens: 2 ** 31 - 1,
  /** sinkTokens and recentWindow each (format::kMaxWindowTokens: their sum fits an int32). */
  maxWindowTokens: 2 ** 30,
  /**
   * Tokens per storage page. A page is allocated whole, so a huge page wastes memory on a short
   * sequence (2^26 tokens per page held 3.2 GB for 200 tokens).
   */
  maxPageTokens: 4096,
  /** The FP16 residual window (allocated per sequence and layer). */
  maxResidualWindow: 65536,
  /** Observation window of the key-key and observed scorers. */
  maxScorerWindow: 65536,
  /** Max-pool width of the observed scorer (odd). */
  maxPoolKernel: 255,
  /** Largest magnitude of a K/V element: caches and scales are FP16. */
  maxAbsValue: 65504,
});
