/**
 * The text the shipped profile of models/sotu-llama is calibrated on: the last speeches of the SOTU
 * *train* split (the retrieval and perplexity benches read the held-out split), about 46K characters.
 *
 *   npx tsx bench/transform/calibration-text.ts /tmp/sotu-train-tail.txt
 *   npx nexusquant calibrate models/sotu-llama --text /tmp/sotu-train-tail.txt
 */
import { writeFileSync } from "node:fs";
import { trainSpeeches } from "../data/index.js";

const CHARACTERS = 40_000;
const out = process.argv[2];
if (out === undefined) throw new Error("usage: calibration-text.ts OUT_FILE");
const speeches = trainSpeeches();
let text = "";
for (let i = speeches.length - 1; i >= 0 && text.length < CHARACTERS; i--) text = `${speeches[i]!.text}\n\n${text}`;
writeFileSync(out, text);
console.log(`${out}: ${text.length} characters`);
