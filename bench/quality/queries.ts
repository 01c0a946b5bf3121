/**
 * The "observed" scorer (SnapKV) ranks tokens by the attention the last prompt queries pay them, and
 * an exported decoder graph does not output queries. For graphs made by src/model's builder we add
 * them as extra outputs: in each layer, the query operand of the attention-score MatMul (the node
 * that feeds `layer{L}_scores`) becomes output `query.{L}`, [batch, kvHeads, groups, seq, headDim],
 * rotated. Nothing else in the graph changes, so logits and presents are the same bytes as before.
 * Any other graph is left alone and the report says that observed falls back to key-key.
 */
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

export interface QueryExposure {
  /** The graph to load (the input unchanged when queries could not be found). */
  onnx: Uint8Array;
  /** Output names `query.{L}` per layer, or null when the graph's queries were not found. */
  outputs: string[] | null;
  /** Why they are missing, for the report. */
  reason: string;
}

export const queryOutputName = (layer: number) => `query.${layer}`;

export function exposeQueries(bytes: Uint8Array, layers: number): QueryExposure {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph;
  if (graph == null) return { onnx: bytes, outputs: null, reason: "the ONNX file has no graph" };
  const producer = new Map<string, onnxProto.onnx.INodeProto>();
  for (const node of graph.node ?? []) for (const out of node.output ?? []) producer.set(out, node);
  const queries: string[] = [];
  for (let layer = 0; layer < layers; layer++) {
    // scores = Mul(MatMul(q, keyT), 1/sqrt(d)); the builder names the Mul's output layer{L}_scores_N.
    const scale = (graph.node ?? []).find((n) => n.opType === "Mul" && (n.output?.[0] ?? "").startsWith(`layer${layer}_scores`));
    const matmul = scale?.input?.[0] === undefined ? undefined : producer.get(scale.input[0]);
    const q = matmul?.opType === "MatMul" ? matmul.input?.[0] : undefined;
    if (q === undefined || q === null) {
      return { onnx: bytes, outputs: null, reason: `layer ${layer}'s attention queries were not found (not a graph from nexusquant's Llama builder)` };
    }
    queries.push(q);
  }
  const outputs = queries.map((q, layer) => {
    const name = queryOutputName(layer);
    graph.node!.push(onnx.NodeProto.create({ opType: "Identity", input: [q], output: [name], name: `${name}/Identity` }));
    graph.output!.push(
      onnx.ValueInfoProto.create({
        name,
        type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: ["batch", "kv", "groups", "sequence", "head_dim"].map((p) => ({ dimParam: p })) } } },
      }),
    );
    return name;
  });
  return { onnx: onnx.ModelProto.encode(model).finish(), outputs, reason: "" };
}

/**
 * The last `window` query rows of a [1, kvHeads, groups, seq, headDim] output, as
 * [queryHeads, window, headDim]: query head h = kvHead × groups + group, the order GQA pairs them in.
 */
export function lastQueries(data: Float32Array, queryHeads: number, seq: number, headDim: number, window: number): Float32Array {
  const w = Math.min(window, seq);
  const out = new Float32Array(queryHeads * w * headDim);
  for (let h = 0; h < queryHeads; h++) {
    const from = (h * seq + seq - w) * headDim;
    out.set(data.subarray(from, from + w * headDim), h * w * headDim);
  }
  return out;
}
