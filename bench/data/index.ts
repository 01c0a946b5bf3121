export * from "./sotu.js";
export * from "./corpus-file.js";
export * from "./passkey.js";
export { Mulberry32, deriveSeed } from "../../src/shared/prng.js";
export { hasXz, xzCompress, xzDecompress } from "./xz.js";
