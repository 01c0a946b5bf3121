/**
 * FP16 <-> f32 for data crossing the JS boundary (Node 20 has no Float16Array). One implementation
 * for the whole package lives in src/shared/half.ts (round to nearest even through FP32, the same
 * rounding as kernels/nq_half.h); these are the runtime's names for it.
 */
export {
  numberToF16Bits as floatToHalfBits,
  f16BitsToNumber as halfBitsToFloat,
  f32ArrayToF16 as floatsToHalfBits,
  f16ArrayToF32 as halfBitsToFloats,
} from "../shared/half.js";
