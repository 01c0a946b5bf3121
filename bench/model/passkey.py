"""Synthetic retrieval samples: a line-for-line port of bench/data/passkey.ts (read its header comment for
the format). test/data/passkey-parity.test.ts runs this file against the TypeScript and requires equal
output, so change both together. Pure Python: train.py imports it on the GPU machine.

    python3 passkey.py < request.json   # {"filler": [...], "samples": [{seed, targetTokens, depth, kind}]}
prints the samples as JSON, sized with approx_token_count (the parity test's tokenizer stand-in).
"""
import json
import re
import sys

M32 = 0xFFFFFFFF

RETRIEVAL_KINDS = ("passkey", "fact")
RETRIEVAL_DEPTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RETRIEVAL_CONTEXTS = (1024, 2048, 4096)

FACT_KEYS = (
    "red door", "old mill", "north tower", "blue lantern", "silver key", "stone bridge", "iron gate",
    "east garden", "copper kettle", "glass house", "quiet harbor", "hidden valley", "green bottle",
    "west wing", "small boat", "broken clock",
)
FACT_WORDS = (
    "pineapple", "saxophone", "kangaroo", "marmalade", "trombone", "flamingo", "avocado", "origami",
    "zeppelin", "giraffe", "harmonica", "octopus", "tangerine", "cinnamon", "pelican", "butterscotch",
    "walrus", "accordion", "papaya", "meteorite", "lemonade", "porcupine", "xylophone", "hedgehog",
    "caramel", "penguin", "pistachio", "koala", "tambourine", "nectarine", "gazelle", "platypus",
)


class Mulberry32:
    """Bit-exact twin of bench/data/prng.ts."""

    def __init__(self, seed):
        if not (0 <= seed <= M32):
            raise ValueError(f"seed must be in [0, 2^32), got {seed}")
        self.state = seed

    def next_uint32(self):
        self.state = (self.state + 0x6D2B79F5) & M32
        t = self.state
        t = ((t ^ (t >> 15)) * (t | 1)) & M32
        t ^= (t + ((t ^ (t >> 7)) * (t | 61))) & M32
        return (t ^ (t >> 14)) & M32

    def next_int(self, n):
        if not (1 <= n <= 2 ** 21):
            raise ValueError(f"n must be in [1, 2^21], got {n}")
        return (self.next_uint32() * n) >> 32

    def next_float(self):
        return self.next_uint32() / 4294967296


def derive_seed(base, index):
    return Mulberry32((base ^ ((index * 0x9E3779B1) & M32)) & M32).next_uint32()


def approx_token_count(text):
    return -(-len(text) // 4)


_SENTENCE_BREAK = re.compile(r"(?<=[.!?]) +")


def split_sentences(text):
    return [s for s in _SENTENCE_BREAK.split(text) if s]


def _collect_sentences(filler, speech, sentence, budget_chars):
    sentences = []
    chars = 0
    i, j = speech, sentence
    current = split_sentences(filler[i])
    while chars < budget_chars:
        if j < len(current):
            sentences.append(current[j])
            chars += len(current[j]) + 1
            j += 1
        else:
            i = (i + 1) % len(filler)
            j = 0
            current = split_sentences(filler[i])
        if i == speech and j == sentence:
            return sentences, True
    return sentences, False


def _build_passage(sentences, needle, question, depth):
    boundaries = [0]
    offset = 0
    for s in sentences:
        offset += len(s) + 1
        boundaries.append(offset)
    filler_chars = offset - 1 if sentences else 0
    wanted = depth * filler_chars
    j = 0
    for c in range(1, len(boundaries)):
        if abs(boundaries[c] - wanted) < abs(boundaries[j] - wanted):
            j = c
    passage = " ".join(list(sentences[:j]) + [needle] + list(sentences[j:]))
    return passage + "\n\n" + question, boundaries[j], len(passage)


def make_retrieval_sample(seed, filler, target_tokens, depth, kind, count_tokens=approx_token_count):
    if not filler or any(not t for t in filler):
        raise ValueError("filler must be a non-empty list of non-empty strings")
    if target_tokens < 1 or not (0 <= depth <= 1) or kind not in RETRIEVAL_KINDS:
        raise ValueError(f"bad sample request: target_tokens={target_tokens} depth={depth} kind={kind!r}")
    rng = Mulberry32(seed)
    source_index = rng.next_int(len(filler))
    source_sentence = rng.next_int(max(1, len(split_sentences(filler[source_index]))))

    budget_chars = target_tokens * 8
    while True:
        pool, exhausted = _collect_sentences(filler, source_index, source_sentence, budget_chars)
        if count_tokens(" ".join(pool)) > target_tokens:
            break
        if exhausted:
            raise ValueError(f"the filler speeches are too short for a {target_tokens}-token prompt")
        budget_chars *= 2

    pool_text = " ".join(pool)
    pool_lower = pool_text.lower()
    key = None
    for attempt in range(101):
        if attempt == 100:
            raise ValueError("could not draw an answer absent from the filler in 100 tries")
        if kind == "passkey":
            value = str(10000 + rng.next_int(90000))
            if value not in pool_text:
                break
        else:
            key = FACT_KEYS[rng.next_int(len(FACT_KEYS))]
            value = FACT_WORDS[rng.next_int(len(FACT_WORDS))]
            if value not in pool_lower:
                break
    if kind == "passkey":
        needle = f"The pass key is {value}. Remember it."
        question = "What is the pass key? The pass key is"
    else:
        needle = f"The secret word for the {key} is {value}."
        question = f"What is the secret word for the {key}? The secret word for the {key} is"

    def build(k):
        return _build_passage(pool[:k], needle, question, depth)

    shortest_tokens = count_tokens(build(0)[0])
    if shortest_tokens > target_tokens:
        raise ValueError(f"target_tokens must be at least {shortest_tokens} (the needle and question alone)")
    lo, hi, lo_tokens = 0, len(pool), shortest_tokens
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        tokens = count_tokens(build(mid)[0])
        if tokens <= target_tokens:
            lo, lo_tokens = mid, tokens
        else:
            hi = mid - 1
    prompt, needle_offset, passage_length = build(lo)
    return {
        "kind": kind, "seed": seed, "prompt": prompt, "answer": " " + value, "value": value, "key": key,
        "needle": needle, "question": question, "depth": depth, "needleOffset": needle_offset,
        "needleDepth": needle_offset / passage_length, "targetTokens": target_tokens,
        "promptTokens": lo_tokens, "sourceIndex": source_index, "sourceSentence": source_sentence,
        "fillerSentences": lo,
    }


def make_retrieval_suite(seed, filler, samples_per_cell, contexts=RETRIEVAL_CONTEXTS, depths=RETRIEVAL_DEPTHS,
                         kinds=RETRIEVAL_KINDS, count_tokens=approx_token_count, answer_reserve=16):
    samples = []
    n = 0
    for context in contexts:
        for depth in depths:
            for i in range(samples_per_cell):
                samples.append(make_retrieval_sample(derive_seed(seed, n), filler, context - answer_reserve, depth,
                                                     kinds[i % len(kinds)], count_tokens))
                n += 1
    return samples


def make_training_sample(seed, filler, min_chars, max_chars):
    """A training row's sample (Python only): kind, depth in [0.05, 0.95] and a length in characters
    drawn from `seed`; sized by characters so that no tokenizer call is needed per try."""
    rng = Mulberry32(seed)
    kind = RETRIEVAL_KINDS[rng.next_int(len(RETRIEVAL_KINDS))]
    depth = 0.05 + 0.9 * rng.next_float()
    target_chars = min_chars + rng.next_int(max_chars - min_chars + 1)
    return make_retrieval_sample(derive_seed(seed, 1), filler, target_chars, depth, kind, count_tokens=len)


def _fact_needle(key, value):
    return (f"The secret word for the {key} is {value}.",
            f"What is the secret word for the {key}? The secret word for the {key} is")


def make_multi_needle_sample(seed, filler, min_chars, max_chars, max_needles):
    """A training row's sample with 1..max_needles needles, each asked once at the end (Python only).

    Why: a retrieval row of T tokens carries only its few answer tokens of retrieval signal, so at 1-2K
    tokens a 2048-token step saw one or two answers and the CPU run never learned to retrieve that far
    (bench/model/README.md). Extra needles have keys unlike every other needle's, so
    each question has exactly one right answer and the model must match the key, as a single-needle prompt
    (the evaluation's form) also allows; half of them are five-digit codes, because copying the pass key's digit
    tokens one by one is what a checkpoint got wrong most (first digit right, later ones not). The first needle is make_training_sample's (its depth and kind);
    the others go to random sentence boundaries. Returns {"segments": [(text, is_answer), ...], "values": [...]}:
    passage, then per needle (in random order) "\\n\\n" question and " " value."""
    rng = Mulberry32(seed)
    n = 1 + rng.next_int(max(1, max_needles))
    extra_chars = (n - 1) * 150  # room for each extra needle and its question within max_chars
    base = make_training_sample(derive_seed(seed, 2), filler, min(min_chars, max_chars - extra_chars),
                                max(1, max_chars - extra_chars))
    passage = base["prompt"][:-(len(base["question"]) + 2)]
    lower = passage.lower()
    pairs = [(base["question"], base["value"])]
    used_keys = {base["key"]} if base["key"] else set()
    used_values = {base["value"]}
    sentences = split_sentences(passage)
    for _ in range(n - 1):
        key = FACT_KEYS[rng.next_int(len(FACT_KEYS))]
        if rng.next_int(2):  # a number, like the pass key: five digit tokens to copy, the hardest answer
            value = str(10000 + rng.next_int(90000))
            needle, question = (f"The code for the {key} is {value}.",
                                f"What is the code for the {key}? The code for the {key} is")
        else:
            value = FACT_WORDS[rng.next_int(len(FACT_WORDS))]
            needle, question = _fact_needle(key, value)
        if key in used_keys or value in used_values or value.lower() in lower:
            continue  # a clash: this row gets one needle fewer (rows stay deterministic per seed)
        used_keys.add(key)
        used_values.add(value)
        sentences.insert(rng.next_int(len(sentences) + 1), needle)
        pairs.append((question, value))
    order = list(range(len(pairs)))
    for i in range(len(order) - 1, 0, -1):  # Fisher-Yates with the sample's generator
        j = rng.next_int(i + 1)
        order[i], order[j] = order[j], order[i]
    segments = []
    text = " ".join(sentences)
    for i in order:
        question, value = pairs[i]
        segments.append((text + "\n\n" + question, False))
        segments.append((" " + value, True))
        text = ""
    return {"segments": segments, "values": [pairs[i][1] for i in order]}


def is_correct_completion(sample, completion):
    text = completion.lstrip()
    rest = text[len(sample["value"]):]
    return text.startswith(sample["value"]) and not (rest[:1].isalnum())


if __name__ == "__main__":
    request = json.load(sys.stdin)
    out = {"uint32": [], "derived": [], "samples": []}
    rng = Mulberry32(request.get("prngSeed", 1))
    out["uint32"] = [rng.next_uint32() for _ in range(8)]
    out["derived"] = [derive_seed(request.get("prngSeed", 1), i) for i in range(8)]
    for spec in request["samples"]:
        out["samples"].append(make_retrieval_sample(spec["seed"], request["filler"], spec["targetTokens"],
                                                    spec["depth"], spec["kind"]))
    if "suite" in request:
        s = request["suite"]
        out["suite"] = make_retrieval_suite(s["seed"], request["filler"], s["samplesPerCell"], s["contexts"],
                                            s["depths"])
    json.dump(out, sys.stdout)
