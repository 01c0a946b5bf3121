export * from "./spec.js";
export * from "./layout.js";
export * from "./presets.js";
export * from "./limits.js";
