/**
 * A byte-level BPE tokenizer (GPT-2 style) read from a Hugging Face tokenizer.json, with no
 * dependency: the trained reference model's tokenizer is of this kind (bench/model/bpe.py writes it),
 * and the demo of an installed package must read it without the optional @huggingface/transformers.
 * `byteLevelBpe()` returns undefined for any tokenizer.json it does not fully understand (a normalizer,
 * another pre-tokenizer or model type, dropout, byte fallback...), so the caller can fall back to
 * transformers.js rather than tokenize differently from it. test/model/byte-level-bpe.test.ts checks
 * it against transformers.js on real text.
 */
import { NexusQuantError } from "../errors.js";

interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
}

interface TokenizerJson {
  normalizer?: unknown;
  pre_tokenizer?: { type?: string; add_prefix_space?: boolean; use_regex?: boolean } | null;
  decoder?: { type?: string } | null;
  added_tokens?: AddedToken[];
  model?: {
    type?: string;
    dropout?: unknown;
    byte_fallback?: boolean;
    continuing_subword_prefix?: string | null;
    end_of_word_suffix?: string | null;
    vocab?: Record<string, number>;
    merges?: (string | [string, string])[];
  };
}

export interface ByteLevelBpe {
  vocabSize: number;
  tokenId(token: string): number | undefined;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

// GPT-2's pre-tokenizer: contractions, letter runs, digit runs, other symbols, whitespace.
const PRE_TOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/**
 * GPT-2's reversible byte -> printable character map (bytes that print stand for themselves): the
 * alphabet of every byte-level BPE vocabulary (exported for the lab's GGUF converter).
 */
export function byteToChar(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const map = new Array<string>(256);
  let next = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + next++);
  return map;
}

export function byteLevelBpe(json: unknown): ByteLevelBpe | undefined {
  const t = json as TokenizerJson;
  const m = t?.model;
  const pre = t?.pre_tokenizer;
  if (!m || m.type !== "BPE" || !m.vocab || !Array.isArray(m.merges)) return undefined;
  if (m.dropout != null || m.byte_fallback || m.continuing_subword_prefix || m.end_of_word_suffix) return undefined;
  if (t.normalizer != null || pre?.type !== "ByteLevel" || pre.add_prefix_space || pre.use_regex === false) return undefined;
  if (t.decoder != null && t.decoder.type !== "ByteLevel") return undefined;

  const vocab = new Map(Object.entries(m.vocab));
  const ranks = new Map<string, number>();
  m.merges.forEach((merge, rank) => {
    const [a, b] = typeof merge === "string" ? merge.split(" ") : merge;
    ranks.set(`${a} ${b}`, rank);
  });
  const toChar = byteToChar();
  const fromChar = new Map(toChar.map((c, b) => [c, b]));
  const idToToken = new Map<number, string>();
  for (const [token, id] of vocab) idToToken.set(id, token);
  const added = (t.added_tokens ?? []).filter((a) => a.content.length > 0);
  for (const a of added) idToToken.set(a.id, a.content);
  const special = new Set(added.filter((a) => a.special).map((a) => a.id));
  const addedPattern = added.length
    ? new RegExp(`(${added.map((a) => a.content.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`)
    : null;
  const cache = new Map<string, number[]>();
  const utf8 = new TextEncoder();

  /** BPE of one pre-token (already mapped to byte characters): lowest-rank merge first, as HF does. */
  function bpe(word: string): number[] {
    const hit = cache.get(word);
    if (hit) return hit;
    let parts = Array.from(word);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < parts.length; i++) {
        const rank = ranks.get(`${parts[i]} ${parts[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const left = parts[best]!;
      const right = parts[best + 1]!;
      const next: string[] = [];
      for (let i = 0; i < parts.length; i++) {
        if (i + 1 < parts.length && parts[i] === left && parts[i + 1] === right) {
          next.push(left + right);
          i++;
        } else {
          next.push(parts[i]!);
        }
      }
      parts = next;
    }
    const ids = parts.map((p) => {
      const id = vocab.get(p);
      if (id === undefined) {
        throw new NexusQuantError("CONFIG_ERROR", `tokenizer.json is inconsistent: the BPE piece ${JSON.stringify(p)} is not in its vocabulary (every byte and every merge result must be); re-export the tokenizer.`);
      }
      return id;
    });
    cache.set(word, ids);
    return ids;
  }

  function encodePlain(text: string, out: number[]): void {
    for (const match of text.matchAll(PRE_TOKENIZE)) {
      let word = "";
      for (const byte of utf8.encode(match[0])) word += toChar[byte];
      out.push(...bpe(word));
    }
  }

  return {
    vocabSize: idToToken.size,
    tokenId: (token) => vocab.get(token) ?? added.find((a) => a.content === token)?.id,
    encode(text) {
      const out: number[] = [];
      const pieces = addedPattern ? text.split(addedPattern) : [text];
      pieces.forEach((piece, i) => {
        if (i % 2 === 1) out.push(added.find((a) => a.content === piece)!.id);
        else if (piece.length > 0) encodePlain(piece, out);
      });
      return out;
    },
    decode(ids) {
      const bytes: number[] = [];
      for (const id of ids) {
        if (special.has(id)) continue;
        const token = idToToken.get(id);
        if (token === undefined) continue;
        for (const ch of token) {
          const b = fromChar.get(ch);
          if (b !== undefined) bytes.push(b);
          else bytes.push(...utf8.encode(ch)); // an added token's plain text
        }
      }
      return new TextDecoder("utf-8").decode(new Uint8Array(bytes));
    },
  };
}
