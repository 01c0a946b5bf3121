"""Eviction study (lab): which scorer and which budget split keep a fact stated once in the prompt, on
the trained reference model, before anything is built into the native cache.

It runs the model in PyTorch the way the native path does (chunked prefill, each chunk attending to the
held cache plus itself, the cache compressed after every chunk; a decode step never compresses here
since answers are short), with an explicit per-head cache in FP32 (no quantization: eviction only), and
scores retrieval in two modes:
  (a) the question in the same prompt (prefilled with the passage, compressed with it);
  (b) the question in a later turn (the passage prefilled and compressed first, then the question).

Scorers: keykey (today's default: the last 32 keys as proxy queries), random, snap (SnapKV: the last 32
queries of the chunk), prefill-max (the max attention a token received from any prefill query, free),
kvzip (after each chunk, a teacher-forced re-read of the chunk behind a separator; the max attention a
cached token receives from the re-read queries; the re-read's K/V is dropped).
Budgets: uniform (every head of a layer keeps the same count), adakv (a layer's kept tokens spread over its
heads by score), profile (heads labelled streaming by a calibration keep only sinks + recent; what they
free goes to the other heads, over the whole model).

    /usr/bin/python3 bench/eviction/study.py models/sotu-llama --out /tmp/eviction-study.json
"""
import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))

import bpe  # noqa: E402
import corpus  # noqa: E402
import passkey  # noqa: E402
import safetensors_io  # noqa: E402
import train  # noqa: E402
from retrieval_diag import model_args  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SINKS, RECENT, WINDOW = 4, 64, 32


def kept_count(tokens, evict):
    if evict == 0:
        return tokens
    protected = min(tokens, SINKS + RECENT)
    return tokens - int((tokens - protected) * evict)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Runner:
    """The model's weights with a forward that reads and writes an explicit per-head cache."""

    def __init__(self, model, cfg):
        self.m = model
        self.L, self.H, self.QH, self.d = cfg.layers, cfg.kv_heads, cfg.heads, cfg.head_dim
        self.group = self.QH // self.H
        # RoPE for twice the trained context: a re-read sits after the context it re-reads.
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, self.d, 2, dtype=torch.float32) / self.d))
        freqs = torch.outer(torch.arange(2 * cfg.context + 512, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()

    def new_cache(self):
        z = lambda: torch.zeros(0, self.d)  # noqa: E731
        return {
            "k": [[z() for _ in range(self.H)] for _ in range(self.L)],
            "v": [[z() for _ in range(self.H)] for _ in range(self.L)],
            "pos": [[torch.zeros(0, dtype=torch.long) for _ in range(self.H)] for _ in range(self.L)],
            "score": [[torch.zeros(0) for _ in range(self.H)] for _ in range(self.L)],
            "length": 0,
        }

    def forward(self, cache, ids, positions, keep=True, capture=None, layers=None):
        """Runs ids at positions through the model. keep: append this chunk's K/V to the cache (else they are
        attended to and dropped). capture(layer, head, probs[g, w, n_cached + w], n_cached, q) sees each
        head's attention. Returns logits [w, vocab]."""
        m = self.m
        w = len(ids)
        h = m.model.embed_tokens(torch.tensor(ids))
        pos = torch.tensor(positions)
        cos, sin = self.cos[pos], self.sin[pos]
        for l, layer in enumerate(m.model.layers):
            if layers is not None and l >= layers:
                return None
            a = layer.self_attn
            x = layer.input_layernorm(h)
            q = a.q_proj(x).view(w, self.QH, self.d).transpose(0, 1)
            k = a.k_proj(x).view(w, self.H, self.d).transpose(0, 1)
            v = a.v_proj(x).view(w, self.H, self.d).transpose(0, 1)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            out = torch.zeros(self.QH, w, self.d)
            for hh in range(self.H):
                ck, cv, cp = cache["k"][l][hh], cache["v"][l][hh], cache["pos"][l][hh]
                n = ck.shape[0]
                K = torch.cat([ck, k[hh]])
                V = torch.cat([cv, v[hh]])
                P = torch.cat([cp, pos])
                qs = q[hh * self.group:(hh + 1) * self.group]  # [g, w, d]
                logits = qs @ K.T / math.sqrt(self.d)
                mask = P[None, :] > pos[:, None]  # [w, n + w]
                logits = logits.masked_fill(mask[None], float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                out[hh * self.group:(hh + 1) * self.group] = probs @ V
                if capture is not None:
                    capture(l, hh, probs, n, qs, K)
                if keep:
                    cache["k"][l][hh], cache["v"][l][hh], cache["pos"][l][hh] = K, V, P
                    cache["score"][l][hh] = torch.cat([cache["score"][l][hh], torch.zeros(w)])
            h = h + a.o_proj(out.transpose(0, 1).reshape(w, self.QH * self.d))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        if keep:
            cache["length"] += w
        return m.lm_head(m.model.norm(h))


def keykey_scores(K):
    n = K.shape[0]
    w = min(WINDOW, n)
    proxies = K[n - w:]
    logits = proxies @ K.T / math.sqrt(K.shape[1])
    qpos = torch.arange(n - w, n)
    logits = logits.masked_fill(torch.arange(n)[None, :] > qpos[:, None], float("-inf"))
    return torch.softmax(logits, dim=-1).sum(0)


class Policy:
    def __init__(self, scorer, budget, evict, streaming=(), sep=(0,), seed=1):
        self.scorer, self.budget, self.evict = scorer, budget, evict
        self.streaming = set(streaming)
        self.sep = list(sep)
        self.gen = torch.Generator().manual_seed(seed)

    def name(self):
        extra = f"+stream{len(self.streaming)}" if self.streaming else ""
        return f"{self.scorer}/{self.budget}{extra}@{self.evict:.2f}"


def prefill(runner, cache, ids, policy, chunk=256, compress=True):
    """Chunked prefill as the native path does it; compresses after every chunk. Returns the last logits."""
    last = None
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        positions = list(range(cache["length"], cache["length"] + len(part)))
        capture = None
        if policy is not None and policy.scorer in ("prefill-max", "snap"):
            capture = make_capture(cache, policy.scorer, len(part))
        with torch.no_grad():
            last = runner.forward(cache, part, positions, keep=True, capture=capture)[-1]
            if compress and policy is not None and policy.evict > 0:
                if policy.scorer.startswith("kvzip"):
                    reread(runner, cache, part, policy)
                compress_cache(runner, cache, policy)
    return last


def make_capture(cache, scorer, w):
    def capture(l, hh, probs, n, qs, K):
        # probs [g, w, n + w]; the chunk's own keys become cache entries n.. (keep=True appends after capture)
        sc = cache["score"][l][hh]
        full = torch.cat([sc, torch.zeros(w)])
        if scorer == "prefill-max":
            got = probs.amax(dim=(0, 1))
            full = torch.maximum(full, got)
        else:  # snap: the last WINDOW queries of the chunk, summed, pooled (SnapKV)
            win = min(WINDOW, probs.shape[1])
            got = probs[:, -win:, :].sum(dim=(0, 1))
            got = F.max_pool1d(got[None, None], 7, stride=1, padding=3)[0, 0]
            full = got  # SnapKV rescores every token from the current window
        # stash for forward(): it appends zeros for the chunk after capture, so store the full row now
        cache.setdefault("pending", {})[(l, hh)] = full
    return capture


def apply_pending(cache):
    for (l, hh), full in cache.pop("pending", {}).items():
        cache["score"][l][hh] = full


def reread(runner, cache, part, policy):
    """KVzip: re-read the chunk behind a separator; each cached token's score = max(old, max attention from
    the re-read queries). The re-read's own K/V are not kept. kvzip-local: the re-read sees only the sinks and
    the chunk's own first-pass K/V (work bounded by the chunk)."""
    base = cache["length"]
    ids = policy.sep + list(part)
    positions = list(range(base, base + len(ids)))
    view = cache
    sel = None
    if policy.scorer == "kvzip-local":
        first = base - len(part)
        sel = [[(cache["pos"][l][hh] >= first) | (cache["pos"][l][hh] < SINKS) for hh in range(runner.H)] for l in range(runner.L)]
        view = {name: [[cache[name][l][hh][sel[l][hh]] for hh in range(runner.H)] for l in range(runner.L)] for name in ("k", "v", "pos", "score")}
        view["length"] = base

    def capture(l, hh, probs, n, qs, K):
        got = probs[:, :, :n].amax(dim=(0, 1))
        if sel is None:
            cache["score"][l][hh] = torch.maximum(cache["score"][l][hh], got)
        else:
            row = cache["score"][l][hh]
            row[sel[l][hh]] = torch.maximum(row[sel[l][hh]], got)

    if policy.scorer == "kvzip-shallow":
        # Re-read through the lower half of the layers only; a token's score (by position) is the max
        # over those layers' heads, and every layer's heads evict by it.
        upper = max(1, runner.L // 2)
        best = {}

        def capture_shallow(l, hh, probs, n, qs, K):
            got = probs[:, :, :n].amax(dim=(0, 1))
            for p, s in zip(cache["pos"][l][hh].tolist(), got.tolist()):
                best[p] = max(best.get(p, 0.0), s)

        runner.forward(cache, ids, positions, keep=False, capture=capture_shallow, layers=upper)
        for l in range(runner.L):
            for hh in range(runner.H):
                row = cache["score"][l][hh]
                new = torch.tensor([best.get(p, 0.0) for p in cache["pos"][l][hh].tolist()])
                cache["score"][l][hh] = torch.maximum(row, new)
        return
    runner.forward(view, ids, positions, keep=False, capture=capture)


def compress_cache(runner, cache, policy):
    apply_pending(cache)
    L, H = runner.L, runner.H
    n_true = cache["length"]
    target = kept_count(n_true, policy.evict)
    scores = {}
    for l in range(L):
        for hh in range(H):
            K = cache["k"][l][hh]
            if policy.scorer == "keykey":
                s = keykey_scores(K)
            elif policy.scorer == "random":
                s = torch.rand(K.shape[0], generator=policy.gen)
            else:
                s = cache["score"][l][hh].clone()
            scores[(l, hh)] = s
    # protected slots and budgets
    keep = {}
    heads = [(l, hh) for l in range(L) for hh in range(H)]
    prot, cand = {}, {}
    for key in heads:
        l, hh = key
        P = cache["pos"][l][hh]
        n = P.shape[0]
        idx = torch.arange(n)
        p = (P < SINKS) | (idx >= n - RECENT)
        prot[key] = idx[p]
        cand[key] = idx[~p]
    if policy.budget == "duo":
        for key in heads:
            keep[key] = prot[key] if key in policy.streaming else torch.arange(cache["pos"][key[0]][key[1]].shape[0])
    elif policy.budget == "uniform" and not policy.streaming:
        for key in heads:
            want = max(0, target - len(prot[key]))
            c = cand[key]
            top = c[torch.argsort(scores[key][c], descending=True)[:want]]
            keep[key] = torch.sort(torch.cat([prot[key], top])).values
    else:
        # total budget over the pool of heads that may hold more than sinks + recent
        pool = [k for k in heads if k not in policy.streaming]
        total = sum(max(0, target - len(prot[k])) for k in heads)
        for key in heads:
            if key in policy.streaming:
                keep[key] = prot[key]
        if policy.budget == "uniform":
            per = total // max(1, len(pool))
            for key in pool:
                c = cand[key]
                top = c[torch.argsort(scores[key][c], descending=True)[:per]]
                keep[key] = torch.sort(torch.cat([prot[key], top])).values
        else:  # adakv: top `total` candidates across the pool (per layer when nothing streams)
            groups = [pool] if policy.streaming else [[k for k in pool if k[0] == l] for l in range(L)]
            for g in groups:
                budget = total if policy.streaming else sum(max(0, target - len(prot[k])) for k in g)
                allv = torch.cat([scores[k][cand[k]] for k in g]) if g else torch.zeros(0)
                owner = torch.cat([torch.full((len(cand[k]),), i) for i, k in enumerate(g)]) if g else torch.zeros(0)
                order = torch.argsort(allv, descending=True)[:budget]
                for i, k in enumerate(g):
                    mine = order[owner[order] == i]
                    offset = sum(len(cand[g[j]]) for j in range(i))
                    top = cand[k][mine - offset]
                    keep[k] = torch.sort(torch.cat([prot[k], top])).values
    for (l, hh), idx in keep.items():
        for name in ("k", "v", "pos", "score"):
            cache[name][l][hh] = cache[name][l][hh][idx]


def held_tokens(cache):
    return sum(t.shape[0] for row in cache["pos"] for t in row)


def greedy(runner, cache, logits, steps):
    out = []
    with torch.no_grad():
        for i in range(steps):
            t = int(logits.argmax())
            out.append(t)
            if i + 1 < steps:
                logits = runner.forward(cache, [t], [cache["length"]], keep=True)[-1]
    return out


def induction_profile(runner, vocab, length=128, reps=4, seed=0):
    """Per (layer, KV head): mean attention from a repeated random sequence's second copy onto the token after
    the first occurrence (the induction target), averaged over the group's query heads and `reps` draws."""
    g = torch.Generator().manual_seed(seed)
    score = torch.zeros(runner.L, runner.H)
    echo = torch.zeros(runner.L, runner.H)
    for _ in range(reps):
        r = torch.randint(1, vocab, (length,), generator=g).tolist()
        ids = [0] + r + r
        cache = runner.new_cache()

        def capture(l, hh, probs, n, qs, K):
            # query at index i (second copy, i >= length + 1) -> target i - length + 1
            w = probs.shape[1]
            qi = torch.arange(length + 2, w)
            tgt = qi - length + 1
            score[l, hh] += probs[:, qi, tgt].mean().item() / reps
            echo[l, hh] += probs[:, qi, tgt - 1].mean().item() / reps

        with torch.no_grad():
            runner.forward(cache, ids, list(range(len(ids))), keep=False, capture=capture)
    print("echo profile:", [[round(x, 3) for x in row] for row in echo.tolist()], flush=True)
    return score


def copy_profile(runner, tok, texts, span=256, gap=512, seed=0):
    """Per (layer, KV head): attention mass that queries of a repeated natural-text span put on the span's first
    occurrence, farther back than the recent window (long-range copying), averaged over texts."""
    score = torch.zeros(runner.L, runner.H)
    for i, text in enumerate(texts):
        ids = tok.encode(text)
        if len(ids) < 2 * span + gap:
            continue
        p, f = ids[:span], ids[span:span + gap]
        seq = [0] + p + f + p
        first = (1, 1 + span)
        second = 1 + span + gap

        def capture(l, hh, probs, n, qs, K):
            score[l, hh] += probs[:, second:, first[0]:first[1]].sum(-1).mean().item() / len(texts)

        with torch.no_grad():
            runner.forward(runner.new_cache(), seq, list(range(len(seq))), keep=False, capture=capture)
    return score


def correct(tok, sample, ids):
    text = tok.decode(ids).lstrip()
    v = sample["value"]
    return text.startswith(v) and not (len(text) > len(v) and text[len(v)].isalnum())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--contexts", default="1024,2048")
    p.add_argument("--depths", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    p.add_argument("--per-cell", type=int, default=2)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--policies", default="")
    p.add_argument("--modes", default="a,b")
    p.add_argument("--out", default="")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = model_args(json.load(f))
    model = train.build_model_classes(torch, nn, F)(cfg)
    weights, _ = safetensors_io.load(os.path.join(a.model, "model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(v).float() for k, v in weights.items()}, strict=False)
    model.eval()
    runner = Runner(model, cfg)
    tok = bpe.ByteLevelBPE.load(os.path.join(a.model, "tokenizer.json"))
    heldout = [s["text"] for s in corpus.read_corpus(os.path.join(HERE, "..", "model", "data", "sotu-heldout.txt.xz"))]

    prof = copy_profile(runner, tok, heldout[:6])
    print("copy profile (layer x kv head):", [[round(x, 3) for x in row] for row in prof.tolist()], flush=True)
    print("induction profile (layer x kv head):", [[round(x, 3) for x in row] for row in prof.tolist()], flush=True)
    order = sorted(((prof[l, h].item(), (l, h)) for l in range(cfg.layers) for h in range(cfg.kv_heads)), reverse=True)
    ranked = [k for _, k in order]

    count = lambda text: len(tok.encode(text))  # noqa: E731
    samples = passkey.make_retrieval_suite(a.seed, heldout, a.per_cell, contexts=[int(c) for c in a.contexts.split(",")],
                                           depths=[float(d) for d in a.depths.split(",")], count_tokens=count)
    policies = [None]
    spec = a.policies or "keykey/uniform@0.6,random/uniform@0.6,snap/uniform@0.6,prefill-max/uniform@0.6,kvzip/uniform@0.6,kvzip/adakv@0.6"
    for item in spec.split(","):
        name, frac = item.split("@")
        parts = name.split("/")
        scorer, budget = parts[0], parts[1]
        nstream = int(parts[2][6:]) if len(parts) > 2 else 0
        scorer = scorer.replace("kvzipl", "kvzip-local")
        policies.append(Policy(scorer, budget, float(frac), streaming=ranked[len(ranked) - nstream:] if nstream else ()))
    modes = a.modes.split(",")
    results = {}
    t0 = time.time()
    for pol in policies:
        pname = "fp32" if pol is None else pol.name()
        for mode in modes:
            ok = exact = 0
            ratio = 0.0
            for s in samples:
                ids = [0] + tok.encode(s["prompt"])
                passage = s["prompt"][: s["prompt"].rindex("\n\n")]
                pids = [0] + tok.encode(passage)
                split = 0
                while split < len(pids) and split < len(ids) and ids[split] == pids[split]:
                    split += 1
                split = min(split, len(ids) - 1)
                answer = tok.encode(s["answer"])
                cache = runner.new_cache()
                if mode == "a":
                    logits = prefill(runner, cache, ids, pol)
                else:
                    prefill(runner, cache, ids[:split], pol)
                    logits = prefill(runner, cache, ids[split:], pol)
                gen = greedy(runner, cache, logits, len(answer) + 1)
                ok += correct(tok, s, gen)
                exact += gen[: len(answer)] == answer
                ratio += cache["length"] * runner.L * runner.H / max(1, held_tokens(cache))
            n = len(samples)
            results[f"{pname} {mode}"] = {"recall": ok / n, "exact": exact / n, "tokenRatio": ratio / n}
            print(f"{pname:28s} mode {mode}: recall {ok}/{n} = {ok / n:.0%}, exact {exact / n:.0%}, tokens kept 1/{ratio / n:.2f}"
                  f"  [{time.time() - t0:.0f}s]", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"profile": prof.tolist(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
