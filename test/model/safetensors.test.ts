import { describe, expect, it } from "vitest";
import { NexusQuantError } from "../../src/errors.js";
import {
  bf16ArrayToF32,
  decodeSafetensors,
  encodeSafetensors,
  f16ArrayToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  type WeightMap,
} from "../../src/model/index.js";

function sample(): WeightMap {
  const tensors: WeightMap = new Map();
  tensors.set("a.f32", { dtype: "F32", shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 1e-30, -0, 65504]) });
  tensors.set("b.f16", { dtype: "F16", shape: [3], data: Uint16Array.from([0x3c00, 0xc000, 0x0001]) });
  tensors.set("c.bf16", { dtype: "BF16", shape: [1, 2], data: Uint16Array.from([0x3f80, 0xff80]) });
  tensors.set("d.scalar", { dtype: "F32", shape: [], data: Float32Array.from([7]) });
  tensors.set("e.empty", { dtype: "F16", shape: [0, 4], data: new Uint16Array(0) });
  return tensors;
}

/** Builds a file from a header object and data bytes, bypassing the encoder's checks. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: number): Uint8Array {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function expectError(fn: () => unknown, code: string, message: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(NexusQuantError);
  expect((thrown as NexusQuantError).code).toBe(code);
  expect((thrown as NexusQuantError).message).toMatch(message);
}

describe("safetensors", () => {
  it("round-trips F32, F16, BF16, scalars and empty tensors bit for bit, with metadata", () => {
    const tensors = sample();
    const bytes = encodeSafetensors(tensors, { format: "pt", note: "x" });
    const decoded = decodeSafetensors(bytes);
    expect(decoded.metadata).toEqual({ format: "pt", note: "x" });
    expect([...decoded.tensors.keys()]).toEqual([...tensors.keys()]);
    for (const [name, tensor] of tensors) {
      const back = decoded.tensors.get(name)!;
      expect(back.dtype).toBe(tensor.dtype);
      expect(back.shape).toEqual(tensor.shape);
      expect(back.data.constructor).toBe(tensor.data.constructor);
      expect(Buffer.from(back.data.buffer, back.data.byteOffset, back.data.byteLength)).toEqual(
        Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength),
      );
    }
    // Re-encoding what we decoded gives the same file.
    expect(Buffer.from(encodeSafetensors(decoded.tensors, decoded.metadata))).toEqual(Buffer.from(bytes));
  });

  it("writes the documented layout: LE u64 header length, space-padded JSON, data at 8-byte alignment", () => {
    const bytes = encodeSafetensors(new Map([["w", { dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) }]]));
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString());
    expect(header).toEqual({ w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });
    expect(Array.from(new Float32Array(bytes.slice(8 + n).buffer))).toEqual([1, 2]);
  });

  it("decodes from an unaligned view of a larger buffer", () => {
    const bytes = encodeSafetensors(sample());
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    const decoded = decodeSafetensors(shifted.subarray(3));
    expect(Array.from(decoded.tensors.get("a.f32")!.data)).toEqual(Array.from(sample().get("a.f32")!.data));
  });

  it("refuses data whose size does not match the shape when encoding", () => {
    const bad: WeightMap = new Map([["w", { dtype: "F32", shape: [3], data: new Float32Array(2) }]]);
    expectError(() => encodeSafetensors(bad), "INVALID_ARGUMENT", /12 bytes for tensor "w"/);
  });

  const f32x2 = new Uint8Array(8);
  const malformed: { name: string; file: () => Uint8Array; code?: string; message: RegExp }[] = [
    { name: "shorter than 8 bytes", file: () => new Uint8Array(5), message: /shorter than the 8-byte header length/ },
    { name: "header length beyond the file", file: () => rawFile({}, new Uint8Array(0), 1000), message: /exceeds/ },
    { name: "header that is not JSON", file: () => rawFile("{nope"), message: /not valid JSON/ },
    { name: "header that is an array", file: () => rawFile([]), message: /not a JSON object/ },
    { name: "entry without dtype", file: () => rawFile({ w: { shape: [2], data_offsets: [0, 8] } }, f32x2), message: /no dtype/ },
    { name: "unsupported dtype", file: () => rawFile({ w: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, f32x2), code: "UNSUPPORTED", message: /dtype I64/ },
    { name: "negative dimension", file: () => rawFile({ w: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, f32x2), message: /invalid shape/ },
    { name: "offsets out of order", file: () => rawFile({ w: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, f32x2), message: /invalid data_offsets/ },
    { name: "span that disagrees with the shape", file: () => rawFile({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, f32x2), message: /needs 12/ },
    { name: "truncated data", file: () => rawFile({ w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, new Uint8Array(6)), message: /truncated or trailing/ },
    { name: "trailing bytes", file: () => rawFile({ w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, new Uint8Array(12)), message: /truncated or trailing/ },
    {
      name: "a gap between tensors",
      file: () => rawFile({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] }, b: { dtype: "F32", shape: [1], data_offsets: [8, 12] } }, new Uint8Array(12)),
      message: /"b" starts at byte 8; expected 4/,
    },
    {
      name: "overlapping tensors",
      file: () => rawFile({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, f32x2),
      message: /gap or overlap/,
    },
    { name: "metadata value that is not a string", file: () => rawFile({ __metadata__: { n: 1 } }), message: /"__metadata__.n" is not a string/ },
  ];
  it.each(malformed)("rejects a file with $name", ({ file, code, message }) => {
    expectError(() => decodeSafetensors(file()), code ?? "CORRUPT_DATA", message);
  });
});

describe("FP16 / BF16 conversion", () => {
  it("encodes FP16 with round-to-nearest-even, subnormals, overflow and NaN", () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff], // largest finite
      [65520, 0x7c00], // rounds up to Inf (tie goes to even = overflow)
      [65519, 0x7bff],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie between 0 and 2^-24 -> even (0)
      [1.5 * 2 ** -25, 0x0001],
      [1 + 2 ** -11, 0x3c00], // tie -> even
      [1 + 3 * 2 ** -11, 0x3c02], // tie -> even (up)
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -25, 0x0400], // rounds up from the subnormal range into the normal range
      [-0, 0x8000],
      [Infinity, 0x7c00],
    ];
    for (const [value, bits] of cases) expect([value, f32ArrayToF16([value])[0]]).toEqual([value, bits]);
    expect(Number.isNaN(f16ArrayToF32(f32ArrayToF16([NaN]))[0])).toBe(true);
  });

  it("round-trips every finite FP16 value exactly", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i).filter((b) => (b & 0x7c00) !== 0x7c00);
    expect(Array.from(f32ArrayToF16(f16ArrayToF32(all)))).toEqual(Array.from(all));
  });

  it("converts BF16 with round-to-nearest-even", () => {
    expect(Array.from(f32ArrayToBf16([1, -2, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -7]))).toEqual([0x3f80, 0xc000, 0x3f80, 0x3f82, 0x3f81]);
    expect(Array.from(bf16ArrayToF32(Uint16Array.from([0x3f80, 0xc000, 0x3f81])))).toEqual([1, -2, 1 + 2 ** -7]);
    expect(Number.isNaN(bf16ArrayToF32(f32ArrayToBf16([NaN]))[0])).toBe(true);
  });
});
