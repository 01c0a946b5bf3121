import { NexusQuantError, invalidArgument } from "../../src/errors.js";
import { Mulberry32, deriveSeed } from "../../src/shared/prng.js";

/**
 * Synthetic retrieval samples: a fact (a 5-digit pass key, or a secret word for a named thing) stated
 * once at a chosen depth of a long filler passage of real speeches, then asked for at the end. This is
 * what token eviction endangers. The same generator, ported line for line to bench/model/passkey.py,
 * makes the ~5% of training rows that teach the model to retrieve and the report's passkey accuracy;
 * a parity test keeps the two identical.
 *
 * Sample layout (prompt, then the expected continuation):
 *
 *     <sentences…> <needle> <sentences…>\n\n<question><answer>
 *
 *     passkey: needle   "The pass key is 48213. Remember it."
 *              question "What is the pass key? The pass key is"          answer " 48213"
 *     fact:    needle   "The secret word for the red door is pelican."
 *              question "What is the secret word for the red door? The secret word for the red door is"
 *                                                                          answer " pelican"
 *
 * The needle is inserted at the sentence boundary nearest to `depth` × the filler's length in
 * characters (character depth stands in for token depth: they differ by the tokenizer's variation in
 * characters per token over the passage). The answer never appears in the filler, so it occurs in the
 * prompt exactly once. Lengths are measured by the caller's `countTokens`, so the harness can size
 * prompts in tokens of the model's own tokenizer; the prompt is the longest that fits `targetTokens`.
 * Offsets are in UTF-16 code units, which equal Python's code points on this (BMP-only) corpus.
 */
export type RetrievalKind = "passkey" | "fact";
export type CountTokens = (text: string) => number;

export const RETRIEVAL_KINDS: readonly RetrievalKind[] = ["passkey", "fact"];
export const RETRIEVAL_DEPTHS: readonly number[] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
export const RETRIEVAL_CONTEXTS: readonly number[] = [1024, 2048, 4096];

/** Names and words for fact samples; words were picked to be absent from (almost all) speeches. */
export const FACT_KEYS: readonly string[] = [
  "red door", "old mill", "north tower", "blue lantern", "silver key", "stone bridge", "iron gate",
  "east garden", "copper kettle", "glass house", "quiet harbor", "hidden valley", "green bottle",
  "west wing", "small boat", "broken clock",
];
export const FACT_WORDS: readonly string[] = [
  "pineapple", "saxophone", "kangaroo", "marmalade", "trombone", "flamingo", "avocado", "origami",
  "zeppelin", "giraffe", "harmonica", "octopus", "tangerine", "cinnamon", "pelican", "butterscotch",
  "walrus", "accordion", "papaya", "meteorite", "lemonade", "porcupine", "xylophone", "hedgehog",
  "caramel", "penguin", "pistachio", "koala", "tambourine", "nectarine", "gazelle", "platypus",
];

export interface RetrievalSampleOptions {
  seed: number;
  /** Filler speech texts (train split for training, held-out split for evaluation). */
  filler: readonly string[];
  /** Upper bound on countTokens(prompt); leave room for the answer within the model's context. */
  targetTokens: number;
  /** Where the needle goes, as a fraction of the filler in [0, 1]. */
  depth: number;
  kind: RetrievalKind;
  countTokens?: CountTokens;
}

export interface RetrievalSample {
  kind: RetrievalKind;
  seed: number;
  prompt: string;
  /** The expected continuation of the prompt, with its leading space. */
  answer: string;
  /** The answer without the space: the pass key digits or the secret word. */
  value: string;
  /** The thing named in a fact sample ("red door"); null for pass keys. */
  key: string | null;
  needle: string;
  question: string;
  depth: number;
  /** Character offset of the needle in the prompt. */
  needleOffset: number;
  /** needleOffset / length of the passage (the prompt before "\n\n" and the question). */
  needleDepth: number;
  targetTokens: number;
  promptTokens: number;
  /** Index (into `filler`) of the speech the passage starts in, and the sentence it starts at. */
  sourceIndex: number;
  sourceSentence: number;
  fillerSentences: number;
}

/** A tokenizer-free stand-in (≈ characters per token of a small English BPE); identical in passkey.py. */
export function approxTokenCount(text: string): number {
  return Math.ceil(text.length / 4);
}

/** Sentences split after . ! or ? followed by spaces (the same regular expression as passkey.py). */
export function splitSentences(text: string): string[] {
  return text.split(/(?<=[.!?]) +/).filter((s) => s.length > 0);
}

export function makeRetrievalSample(options: RetrievalSampleOptions): RetrievalSample {
  const { seed, filler, targetTokens, depth, kind } = options;
  const countTokens = options.countTokens ?? approxTokenCount;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw invalidArgument("seed", "an integer in [0, 2^32)", seed);
  if (!Array.isArray(filler) || filler.length === 0 || filler.some((t) => typeof t !== "string" || t.length === 0)) {
    throw invalidArgument("filler", "a non-empty array of non-empty strings", filler);
  }
  if (!Number.isInteger(targetTokens) || targetTokens < 1) throw invalidArgument("targetTokens", "a positive integer", targetTokens);
  if (typeof depth !== "number" || !(depth >= 0 && depth <= 1)) throw invalidArgument("depth", "a number in [0, 1]", depth);
  if (kind !== "passkey" && kind !== "fact") throw invalidArgument("kind", '"passkey" or "fact"', kind);
  if (typeof countTokens !== "function") throw invalidArgument("countTokens", "a function", countTokens);

  const rng = new Mulberry32(seed);
  const sourceIndex = rng.nextInt(filler.length);
  const sourceSentence = rng.nextInt(Math.max(1, splitSentences(filler[sourceIndex]).length));

  // A pool of consecutive sentences (continuing into the next speeches) longer than the target.
  let budgetChars = targetTokens * 8;
  let pool: string[];
  for (;;) {
    const collected = collectSentences(filler, sourceIndex, sourceSentence, budgetChars);
    pool = collected.sentences;
    if (countTokens(pool.join(" ")) > targetTokens) break;
    if (collected.exhausted) {
      throw new NexusQuantError("INVALID_ARGUMENT", `The filler speeches are too short for a ${targetTokens}-token prompt; pass more filler or a smaller targetTokens.`);
    }
    budgetChars *= 2;
  }

  const poolText = pool.join(" ");
  const poolLower = poolText.toLowerCase();
  let value = "";
  let key: string | null = null;
  for (let attempt = 0; ; attempt++) {
    if (attempt === 100) throw new NexusQuantError("INVALID_DATA", "Could not draw an answer absent from the filler in 100 tries.");
    if (kind === "passkey") {
      value = String(10000 + rng.nextInt(90000));
      if (!poolText.includes(value)) break;
    } else {
      key = FACT_KEYS[rng.nextInt(FACT_KEYS.length)];
      value = FACT_WORDS[rng.nextInt(FACT_WORDS.length)];
      if (!poolLower.includes(value)) break;
    }
  }
  const needle = kind === "passkey" ? `The pass key is ${value}. Remember it.` : `The secret word for the ${key} is ${value}.`;
  const question =
    kind === "passkey"
      ? "What is the pass key? The pass key is"
      : `What is the secret word for the ${key}? The secret word for the ${key} is`;

  const build = (k: number) => buildPassage(pool.slice(0, k), needle, question, depth);
  const shortest = build(0);
  const shortestTokens = countTokens(shortest.prompt);
  if (shortestTokens > targetTokens) {
    throw invalidArgument("targetTokens", `at least ${shortestTokens} (the needle and question alone)`, targetTokens);
  }
  // The longest prefix of the pool whose prompt fits: token counts grow with k.
  let lo = 0;
  let hi = pool.length;
  let loTokens = shortestTokens;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    const tokens = countTokens(build(mid).prompt);
    if (tokens <= targetTokens) {
      lo = mid;
      loTokens = tokens;
    } else {
      hi = mid - 1;
    }
  }
  const best = build(lo);
  return {
    kind, seed, prompt: best.prompt, answer: ` ${value}`, value, key, needle, question, depth,
    needleOffset: best.needleOffset, needleDepth: best.needleOffset / best.passageLength,
    targetTokens, promptTokens: loTokens, sourceIndex, sourceSentence, fillerSentences: lo,
  };
}

export interface RetrievalSuiteOptions {
  seed: number;
  filler: readonly string[];
  contexts?: readonly number[];
  depths?: readonly number[];
  samplesPerCell: number;
  /** Kinds alternate within a cell: sample i of a cell has kind kinds[i % kinds.length]. */
  kinds?: readonly RetrievalKind[];
  countTokens?: CountTokens;
  /** Tokens kept free for the answer: the prompt bound is context − answerReserve. */
  answerReserve?: number;
}

/** Samples for every context × depth cell; sample n of the suite uses deriveSeed(seed, n). */
export function makeRetrievalSuite(options: RetrievalSuiteOptions): RetrievalSample[] {
  const contexts = options.contexts ?? RETRIEVAL_CONTEXTS;
  const depths = options.depths ?? RETRIEVAL_DEPTHS;
  const kinds = options.kinds ?? RETRIEVAL_KINDS;
  const reserve = options.answerReserve ?? 16;
  if (!Number.isInteger(options.samplesPerCell) || options.samplesPerCell < 1) {
    throw invalidArgument("samplesPerCell", "a positive integer", options.samplesPerCell);
  }
  if (kinds.length === 0) throw invalidArgument("kinds", "a non-empty list", kinds);
  if (!Number.isInteger(reserve) || reserve < 0) throw invalidArgument("answerReserve", "a non-negative integer", reserve);
  const samples: RetrievalSample[] = [];
  let n = 0;
  for (const context of contexts) {
    for (const depth of depths) {
      for (let i = 0; i < options.samplesPerCell; i++) {
        samples.push(
          makeRetrievalSample({
            seed: deriveSeed(options.seed, n++), filler: options.filler, targetTokens: context - reserve,
            depth, kind: kinds[i % kinds.length], countTokens: options.countTokens,
          }),
        );
      }
    }
  }
  return samples;
}

/** True when a model's continuation starts with the answer (leading whitespace ignored) as a whole word. */
export function isCorrectCompletion(sample: RetrievalSample, completion: string): boolean {
  const text = completion.trimStart();
  return text.startsWith(sample.value) && !/^[\p{L}\p{N}]/u.test(text.slice(sample.value.length));
}

function collectSentences(filler: readonly string[], speech: number, sentence: number, budgetChars: number) {
  const sentences: string[] = [];
  let chars = 0;
  let i = speech;
  let j = sentence;
  let current = splitSentences(filler[i]);
  while (chars < budgetChars) {
    if (j < current.length) {
      sentences.push(current[j]);
      chars += current[j].length + 1;
      j++;
    } else {
      i = (i + 1) % filler.length;
      j = 0;
      current = splitSentences(filler[i]);
    }
    if (i === speech && j === sentence) return { sentences, exhausted: true };
  }
  return { sentences, exhausted: false };
}

function buildPassage(sentences: readonly string[], needle: string, question: string, depth: number) {
  // boundaries[j] is the needle's offset when it goes before sentence j.
  const boundaries = [0];
  let offset = 0;
  for (const s of sentences) {
    offset += s.length + 1;
    boundaries.push(offset);
  }
  const fillerChars = sentences.length > 0 ? offset - 1 : 0;
  const wanted = depth * fillerChars;
  let j = 0;
  for (let c = 1; c < boundaries.length; c++) {
    if (Math.abs(boundaries[c] - wanted) < Math.abs(boundaries[j] - wanted)) j = c;
  }
  const passage = [...sentences.slice(0, j), needle, ...sentences.slice(j)].join(" ");
  return { prompt: `${passage}\n\n${question}`, needleOffset: boundaries[j], passageLength: passage.length };
}

/** Two facts in one passage, asked one after the other in later turns of one conversation. */
export interface TwoFactSample {
  seed: number;
  /** The passage alone (no question): a pass key at `depths[0]`, a secret word at `depths[1]`. */
  passage: string;
  /** The facts in the order they are asked. */
  facts: [RetrievalSample, RetrievalSample];
  depths: [number, number];
  passageTokens: number;
}

/**
 * A passage with two needles (a pass key, then a secret word inserted at the sentence boundary nearest
 * the second depth), for the harness's two-question mode. The second fact comes from its own small
 * sample (only its needle, question and answer are used), redrawn until its answer is absent from the
 * passage. TypeScript only: no training row uses it, so passkey.py has no twin.
 */
export function makeTwoFactSample(options: Omit<RetrievalSampleOptions, "depth" | "kind"> & { depths: [number, number] }): TwoFactSample {
  const countTokens = options.countTokens ?? approxTokenCount;
  const [d1, d2] = options.depths;
  if (!(d2 >= 0 && d2 <= 1)) throw invalidArgument("depths[1]", "a number in [0, 1]", d2);
  // Room for the second needle (about 15 tokens of a BPE, 60 bytes) inside the same bound.
  const first = makeRetrievalSample({ ...options, targetTokens: options.targetTokens - countTokens("The secret word for the copper kettle is butterscotch. "), depth: d1, kind: "passkey", countTokens });
  const passage1 = first.prompt.slice(0, first.prompt.lastIndexOf("\n\n"));
  let second: RetrievalSample | undefined;
  for (let i = 1; second === undefined; i++) {
    if (i > 100) throw new NexusQuantError("INVALID_DATA", "Could not draw a second fact absent from the passage in 100 tries.");
    const s = makeRetrievalSample({ seed: deriveSeed(options.seed, i), filler: options.filler, targetTokens: 512, depth: 0.5, kind: "fact", countTokens });
    if (!passage1.toLowerCase().includes(s.value) && s.value !== first.value) second = s;
  }
  const sentences = splitSentences(passage1);
  const at = Math.round(d2 * sentences.length);
  const passage = [...sentences.slice(0, at), second.needle, ...sentences.slice(at)].join(" ");
  return { seed: options.seed, passage, facts: [first, second], depths: [d1, d2], passageTokens: countTokens(passage) };
}
