/** The analytic estimator: pure TypeScript, no addon. Compressed sizes come from src/format. */
export * from "./architecture.js";
export * from "./architectures.js";
export * from "./hf-config.js";
export * from "./gpus.js";
export * from "./precision.js";
export * from "./kv.js";
export * from "./capacity.js";
export * from "./units.js";
export { closestIds, editDistance } from "./closest.js";
