/**
 * A minimal ONNX graph builder on top of onnx-proto's generated protobuf classes: unique value
 * names, typed initializers (raw little-endian bytes), node attributes from plain JS values. It knows
 * nothing about Llama; onnx-builder.ts does.
 */
import onnxProto from "onnx-proto";

// onnx-proto is CommonJS whose only ESM-visible export is the default (module.exports = { onnx }).
export const { onnx } = onnxProto;

export const DataType = {
  FLOAT: onnx.TensorProto.DataType.FLOAT,
  FLOAT16: onnx.TensorProto.DataType.FLOAT16,
  INT64: onnx.TensorProto.DataType.INT64,
  BOOL: onnx.TensorProto.DataType.BOOL,
} as const;
export type ElemType = (typeof DataType)[keyof typeof DataType];

/** An attribute value: int, float, ints or floats (what the standard ops we emit need). */
export type AttrValue = number | number[] | { float: number } | { floats: number[] };

/** Symbolic (string) or fixed (number) dimension of a graph input/output. */
export type Dim = string | number;

export class GraphBuilder {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  initializerBytes = 0;

  /** A fresh value name; readable prefixes make ORT errors and Netron views point at the right layer. */
  name(prefix: string): string {
    let candidate = prefix;
    for (let i = 1; this.used.has(candidate); i++) candidate = `${prefix}_${i}`;
    this.used.add(candidate);
    return candidate;
  }

  input(name: string, elemType: ElemType, dims: Dim[]): string {
    this.used.add(name);
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Declares `value` as graph output `name` (through an Identity when the names differ). */
  output(name: string, value: string, elemType: ElemType, dims: Dim[]): void {
    if (value !== name) {
      this.used.add(name);
      this.nodes.push(onnx.NodeProto.create({ opType: "Identity", input: [value], output: [name], name: `${name}/Identity` }));
    }
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  initializer(prefix: string, elemType: ElemType, dims: number[], data: Float32Array | Uint16Array | BigInt64Array | Uint8Array): string {
    const name = this.name(prefix);
    const rawData = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.initializerBytes += rawData.byteLength;
    this.initializers.push(onnx.TensorProto.create({ name, dataType: elemType, dims, rawData }));
    return name;
  }

  /** int64 constant (shapes, axes, indices), shared between uses. `[]` dims makes a scalar. */
  int64(values: number[], scalar = false): string {
    const key = `i64:${scalar ? "s" : "v"}:${values.join(",")}`;
    let name = this.constCache.get(key);
    if (name === undefined) {
      name = this.initializer("const_i64", DataType.INT64, scalar ? [] : [values.length], BigInt64Array.from(values.map(BigInt)));
      this.constCache.set(key, name);
    }
    return name;
  }

  /** float32 constant, shared between uses. */
  float(values: number[], scalar = false): string {
    const key = `f32:${scalar ? "s" : "v"}:${values.join(",")}`;
    let name = this.constCache.get(key);
    if (name === undefined) {
      name = this.initializer("const_f32", DataType.FLOAT, scalar ? [] : [values.length], Float32Array.from(values));
      this.constCache.set(key, name);
    }
    return name;
  }

  /** Adds a node and returns its output names. */
  opN(opType: string, inputs: string[], outputCount: number, attrs: Record<string, AttrValue> = {}, prefix = opType): string[] {
    const outputs = Array.from({ length: outputCount }, () => this.name(prefix));
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: inputs,
        output: outputs,
        name: `${outputs[0]}/${opType}`,
        attribute: Object.entries(attrs).map(([key, value]) => attribute(key, value)),
      }),
    );
    return outputs;
  }

  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, prefix = opType): string {
    return this.opN(opType, inputs, 1, attrs, prefix)[0];
  }

  graph(name: string): InstanceType<typeof onnx.GraphProto> {
    return onnx.GraphProto.create({
      name,
      node: this.nodes,
      initializer: this.initializers,
      input: this.inputs,
      output: this.outputs,
    });
  }
}

function valueInfo(name: string, elemType: ElemType, dims: Dim[]): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === "string" ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
}

function attribute(name: string, value: AttrValue): InstanceType<typeof onnx.AttributeProto> {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === "number") return onnx.AttributeProto.create({ name, type: T.INT, i: value });
  if (Array.isArray(value)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: value });
  if ("float" in value) return onnx.AttributeProto.create({ name, type: T.FLOAT, f: value.float });
  return onnx.AttributeProto.create({ name, type: T.FLOATS, floats: value.floats });
}
