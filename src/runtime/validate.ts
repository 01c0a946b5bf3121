/**
 * The validators live in src/validate.ts (beside errors.ts, so that src/format can use them too);
 * this path stays so that runtime and integration modules keep importing "./validate.js".
 */
export * from "../validate.js";
