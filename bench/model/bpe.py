"""A byte-level BPE tokenizer in pure Python: training, encoding, decoding and the Hugging Face
tokenizer.json it is saved as (read by `tokenizers`, transformers and transformers.js alike).

Why our own: the machines that train the reference model may lack the `tokenizers` package (the CPU
box has only Debian's PyTorch). The format is GPT-2's: the text is split into pre-tokens by GPT-2's
regex, each pre-token's UTF-8 bytes are mapped to printable characters (bytes_to_unicode), and merges
are applied lowest rank first. Training counts pre-tokens once (a word-frequency table) and updates
pair counts incrementally, so ~4K merges over the SOTU train split take well under a minute.

Id 0 is <|endoftext|> (an added special token), ids 1..256 the byte alphabet, then one id per merge.
"""
import json
import re
from collections import defaultdict

EOT = "<|endoftext|>"

# GPT-2's pre-tokenizer regex, as the ByteLevel pre-tokenizer of `tokenizers` applies it. Python's `re`
# has no \p{L}/\p{N}: [^\W\d_] is "letter" and \d|other numerics "number"; identical on the corpus's text
# (test/quality/reference-tokenizer.test.ts encodes held-out text in Node and compares ids).
_LETTER = r"[^\W\d_]"
_NUMBER = r"\d"
PRETOKEN = re.compile(
    rf"""'s|'t|'re|'ve|'m|'ll|'d| ?{_LETTER}+| ?{_NUMBER}+| ?(?:(?!{_LETTER}|{_NUMBER})[^\s])+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def pretokenize(text):
    """Pre-tokens of `text`, each as its byte-level string."""
    return ["".join(BYTE_TO_CHAR[b] for b in piece.encode("utf-8")) for piece in PRETOKEN.findall(text)]


def train_bpe(texts, vocab_size, min_frequency=2):
    """Merges (list of (a, b)) learned on `texts`, up to vocab_size - 257 of them."""
    counts = defaultdict(int)
    for text in texts:
        for w in pretokenize(text):
            counts[w] += 1
    words = [list(w) for w in counts]
    freqs = list(counts.values())
    pair_counts = defaultdict(int)
    pair_words = defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_counts[a, b] += freqs[i]
            pair_words[a, b].add(i)
    merges = []
    target = vocab_size - 1 - 256
    while len(merges) < target and pair_counts:
        # Highest count first; ties broken by the pair itself so that training is deterministic.
        best = max(pair_counts.items(), key=lambda kv: (kv[1], kv[0]))
        (a, b), count = best
        if count < min_frequency:
            break
        merges.append((a, b))
        merged = a + b
        for i in list(pair_words.pop((a, b), ())):
            w, f = words[i], freqs[i]
            for x, y in zip(w, w[1:]):  # remove this word's old pairs
                pair_counts[x, y] -= f
                if pair_counts[x, y] <= 0:
                    del pair_counts[x, y]
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for x, y in zip(out, out[1:]):
                pair_counts[x, y] += f
                pair_words[x, y].add(i)
        pair_counts.pop((a, b), None)
    return merges


class ByteLevelBPE:
    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.ranks = {m: r for r, m in enumerate(self.merges)}
        alphabet = [BYTE_TO_CHAR[b] for b in range(256)]
        self.vocab = {EOT: 0}
        for c in alphabet:
            self.vocab[c] = len(self.vocab)
        for a, b in self.merges:
            self.vocab.setdefault(a + b, len(self.vocab))
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self._cache = {}

    def vocab_size(self):
        return len(self.vocab)

    def token_to_id(self, token):
        return self.vocab.get(token)

    def _bpe(self, word):
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = -1, None
            for j in range(len(parts) - 1):
                r = self.ranks.get((parts[j], parts[j + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = j, r
            if best < 0:
                break
            a, b = parts[best], parts[best + 1]
            out, j = [], 0
            while j < len(parts):  # merge every occurrence of the best pair, left to right
                if j + 1 < len(parts) and parts[j] == a and parts[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(parts[j])
                    j += 1
            parts = out
        ids = [self.vocab[p] for p in parts]
        if len(self._cache) < 500_000:
            self._cache[word] = ids
        return ids

    def encode(self, text):
        ids = []
        for w in pretokenize(text):
            ids.extend(self._bpe(w))
        return ids

    def decode(self, ids):
        chars = "".join(self.id_to_token[i] for i in ids if i != 0)
        return bytes(CHAR_TO_BYTE[c] for c in chars).decode("utf-8", errors="replace")

    def to_json(self):
        """tokenizer.json in the `tokenizers` format (merges as "a b" strings, the long-standing form)."""
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [{"id": 0, "content": EOT, "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": True}],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": self.vocab, "merges": [f"{a} {b}" for a, b in self.merges]},
        }

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
        return cls(merges)


if __name__ == "__main__":
    import os
    import sys
    import time
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import corpus
    here = os.path.dirname(os.path.abspath(__file__))
    texts = [s["text"] for s in corpus.read_corpus(os.path.join(here, "data", "sotu-train.txt.xz"))]
    t0 = time.time()
    merges = train_bpe(texts, int(sys.argv[1]) if len(sys.argv) > 1 else 4096)
    tok = ByteLevelBPE(merges)
    t1 = time.time()
    n = sum(len(tok.encode(t)) for t in texts)
    print(f"{tok.vocab_size()} tokens, trained in {t1 - t0:.1f}s, encoded train in {time.time() - t1:.1f}s: "
          f"{n:,} tokens, {sum(map(len, texts)) / n:.2f} chars/token")
