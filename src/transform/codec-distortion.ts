/**
 * What the E8 codec costs, per 8-dim lattice group, at each rate: the one table the bit allocation
 * and the guard read. Measured with the real codec on Gaussian data at head_dim 128
 * (bench/results/transform-study.json, `gaussian_group_nmse["128"].plain_codec`); the head_dim 64
 * figures differ by < 3%, too little to change an allocation.
 */

/** Bits per element of one 8-dim group (a group at R bits takes R bytes); 0 = not coded, decodes to 0. */
export type TransformRate = 0 | 1 | 2 | 3 | 4;

/**
 * The rates a band may take in a profile (the format, the native and CUDA codecs): the E8 codebooks'
 * 2, 3 and 4 bits, 1 bit (the E8 lattice's 240 roots and the origin, kernels/nq_e8_root.h; transform
 * bands only) and 0.
 */
export const TRANSFORM_RATES: readonly TransformRate[] = Object.freeze([0, 1, 2, 3, 4] as const);

/**
 * The rates the calibration allocates from: without 1. Allowed, the 1-bit code was chosen for weak
 * bands on the predicted gain and lost in practice (bench/results/transform-rate1.md: on
 * models/sotu-llama K2V1's KL 0.0030 → 0.0047, K2V2 and K3V2 unchanged; on syntheticKV's drifting
 * values a predicted +0.9 dB became −1.0 dB on later tokens): a fixed-gain code of 241 points is
 * fragile where a band's scale moves away from its calibrated σ.
 */
export const ALLOCATION_RATES: readonly TransformRate[] = Object.freeze([0, 2, 3, 4] as const);

/**
 * The bit budgets (bits per element over a whole head vector) a profile carries an allocation for:
 * the flat code's 2, 3 and 4, and 1, which only a calibrated transform can reach (there is no flat
 * 1-bit code).
 */
export type TransformBudget = 1 | 2 | 3 | 4;
export const TRANSFORM_BUDGETS: readonly TransformBudget[] = Object.freeze([1, 2, 3, 4] as const);

/**
 * Normalized MSE (‖y − ŷ‖² / ‖y‖²) of one group coded at each rate. Rate 0 decodes to zero, so its
 * error is the group's whole energy. Rate 1 (the roots code at its scale factor 1.65):
 * bench/transform/rate1-scale.py, 400,000 Gaussian groups.
 */
export const GROUP_NMSE: Readonly<Record<TransformRate, number>> = Object.freeze({ 0: 1, 1: 0.3204, 2: 0.0899, 3: 0.0254, 4: 0.00734 });
