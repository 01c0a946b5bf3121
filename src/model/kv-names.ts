/**
 * The KV-cache I/O names of the export convention (Hugging Face Optimum / transformers.js), defined
 * once: the ONNX builder declares them, the integrations feed and read them, the convention check
 * looks for them. K/V layout [batch, kvHeads, sequence, headDim].
 */
export const pastKeyName = (layer: number) => `past_key_values.${layer}.key`;
export const pastValueName = (layer: number) => `past_key_values.${layer}.value`;
export const presentKeyName = (layer: number) => `present.${layer}.key`;
export const presentValueName = (layer: number) => `present.${layer}.value`;

/** What every past input and every present output name starts with. */
export const PAST_PREFIX = "past_key_values.";
export const PRESENT_PREFIX = "present.";

/** A past input name; groups: the layer, and "key" or "value". */
export const PAST_NAME = /^past_key_values\.(\d+)\.(key|value)$/;
