import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { NexusQuantError } from "../errors.js";
import { architectureFromHfConfig, getArchitecture, type Architecture } from "../estimator/index.js";

/** Reads a Hugging Face config.json given as --config PATH into an Architecture. */
export async function loadConfig(path: string, parameters: number | undefined): Promise<Architecture> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    // A path that does not lead to a readable file is a usage error (exit 2), like an unknown model id.
    throw new NexusQuantError("INVALID_ARGUMENT", `Cannot read --config ${path}: ${(e as Error).message}. Pass the path of a Hugging Face config.json.`, { arg: "--config" });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new NexusQuantError("CONFIG_ERROR", `--config ${path} is not valid JSON: ${(e as Error).message}`, { key: "(file)" });
  }
  const meta = { id: basename(path).replace(/\.json$/i, ""), source: path, ...(parameters === undefined ? {} : { parameters }) };
  return architectureFromHfConfig(json, meta);
}

/** --model ID or --config PATH (exactly one) to an Architecture; unknown ids list the closest ones. */
export async function resolveModelFlags(model: string | undefined, config: string | undefined): Promise<Architecture> {
  if ((model === undefined) === (config === undefined)) {
    throw new NexusQuantError("INVALID_ARGUMENT", "Give exactly one of --model ID or --config PATH", { arg: "--model" });
  }
  return model !== undefined ? getArchitecture(model) : loadConfig(config!, undefined);
}
