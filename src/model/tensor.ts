/**
 * The in-memory weight tensor shared by the safetensors reader/writer, the ONNX builder and the
 * reference forward pass. Half-precision data stays as raw bits (Uint16Array) until someone needs
 * numbers, so a file read and written back is bit-identical.
 */
import { invalidArgument } from "../errors.js";
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from "../shared/half.js";

export type WeightDtype = "F32" | "F16" | "BF16";

export type WeightTensor =
  | { dtype: "F32"; shape: number[]; data: Float32Array }
  | { dtype: "F16" | "BF16"; shape: number[]; data: Uint16Array };

/** Tensors by Hugging Face parameter name (`model.layers.0.self_attn.q_proj.weight`, ...). */
export type WeightMap = Map<string, WeightTensor>;

export const BYTES_PER_ELEMENT: Record<WeightDtype, number> = { F32: 4, F16: 2, BF16: 2 };

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Values as FP32 (a copy for F16/BF16; the same array for F32). */
export function toFloat32(tensor: WeightTensor): Float32Array {
  switch (tensor.dtype) {
    case "F32":
      return tensor.data;
    case "F16":
      return f16ArrayToF32(tensor.data);
    case "BF16":
      return bf16ArrayToF32(tensor.data);
  }
}

/** Checks that a weight exists with exactly the expected shape (the usual way a wrong config shows). */
export function requireWeight(weights: WeightMap, name: string, shape: readonly number[]): WeightTensor {
  const tensor = weights.get(name);
  if (tensor === undefined) throw invalidArgument(`weights["${name}"]`, `a tensor of shape [${shape.join(", ")}]`, undefined);
  if (tensor.shape.length !== shape.length || tensor.shape.some((d, i) => d !== shape[i])) {
    throw invalidArgument(
      `weights["${name}"].shape`,
      `[${shape.join(", ")}] (from config.json)`,
      `[${tensor.shape.join(", ")}]`,
    );
  }
  if (tensor.data.length !== elementCount(shape)) {
    throw invalidArgument(`weights["${name}"].data`, `${elementCount(shape)} elements`, tensor.data);
  }
  return tensor;
}

/** Re-encodes every tensor to `dtype` (round to nearest-even); tensors already in it are shared, not copied. */
export function convertWeights(weights: WeightMap, dtype: WeightDtype): WeightMap {
  const out: WeightMap = new Map();
  for (const [name, tensor] of weights) {
    if (tensor.dtype === dtype) {
      out.set(name, tensor);
      continue;
    }
    const values = toFloat32(tensor);
    out.set(
      name,
      dtype === "F32"
        ? { dtype, shape: [...tensor.shape], data: values }
        : { dtype, shape: [...tensor.shape], data: dtype === "F16" ? f32ArrayToF16(values) : f32ArrayToBf16(values) },
    );
  }
  return out;
}
