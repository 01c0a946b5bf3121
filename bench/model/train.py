#!/usr/bin/env python3
"""Train nexusquant's reference model: a small Llama on the State of the Union addresses.

The same script runs two recipes (--recipe; default: gpu when CUDA is available, else cpu):

    python3 bench/model/train.py --out "$OUT/sotu-llama"          # GPU: or bash bench/model/run-gpu.sh (~9 min)
    python3 bench/model/train.py --out models/sotu-llama --recipe cpu --train-seconds 3600   # 2 CPU cores
    python3 bench/model/train.py --out /tmp/smoke --smoke          # 1-minute pipeline check, CPU or GPU

Needs only PyTorch (>= 1.13) and numpy: the tokenizer (bpe.py) and the safetensors writer are our own, so
Debian's python3-torch is enough.

Steps: read data/sotu-{train,heldout}.txt.xz (written by prepare-corpus.ts; whole speeches, held-out =
years divisible by 10, never trained on) -> train a byte-level BPE tokenizer on the train split -> train
a Llama (RoPE, RMSNorm, SwiGLU, GQA) until a wall-clock budget runs out, with ~5% of rows
replaced by synthetic retrieval samples from passkey.py (the port of bench/data/passkey.ts) whose answer
tokens carry an extra loss term -> keep the weights with the best validation loss -> write, under --out:
config.json (Hugging Face LlamaForCausalLM keys), model.safetensors (fp16, HF weight names, embeddings
tied), tokenizer.json + tokenizer_config.json, training-report.json and training-report.md (validation
perplexity, passkey accuracy at 1K/2K/4K, hyper-parameters, GPU, time, command).

Token conventions (the quality harness must follow them): id 0 is <|endoftext|>; every document (speech
or retrieval sample) starts with it; the tokenizer adds no special tokens by itself.
"""
import argparse
import datetime
import json
import math
import os
import platform
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bpe  # noqa: E402  (pure Python, next to this file)
import corpus  # noqa: E402
import safetensors_io  # noqa: E402
import passkey  # noqa: E402

SCRIPT_START = time.time()
EOT = "<|endoftext|>"


def log(message):
    print(f"[{time.time() - SCRIPT_START:7.1f}s] {message}", flush=True)


# Recipes: the defaults below are the GPU one (H100/H200, ~9 minutes); the CPU one is sized for ~1 hour
# on 2 cores with OpenBLAS (~2K tokens/s): head_dim 64, 4 query / 2 KV heads, 4 layers, hidden 256,
# trained at 512 -> 1K -> 2K context so that 2K retrieval works.
# Retrieval needs copying from far back in the context. A copy warm-up on random-token rows taught only a
# positional shortcut (its repeat sat half a row back; copy_diag.py), and copies at random distances formed
# nothing in 1000 steps, so the CPU recipe warms up on retrieval samples in short rows (--warmup-rows
# retrieval), 128 -> 256 -> 512 tokens. In trials that taught retrieval within 128-256 tokens but did not yet
# carry to 1K-2K (bench/model/README.md).
CPU_RECIPE = dict(
    vocab_size=2048, hidden=256, layers=4, heads=4, kv_heads=2, head_dim=64, intermediate=512, context=2048,
    phases="1024:0.5,1536:0.2,2048:0.3", tokens_per_step=2048, lr=1e-3, beta2=0.999, warmup_steps=30, dropout=0.0,
    passkey_fraction=0.6, repeat_fraction=0.0, repeat_kind="random", repeat_span="half",
    warmup_rows="retrieval", copy_warmup_steps=3000, copy_warmup_context="128,256,512,768",
    copy_warmup_stage_steps="400,400,300,200", copy_warmup_until=0.3,
    needles_max=4, tokens_per_needle=128, answer_loss_weight=2.0,
    train_seconds=3900.0, deadline_seconds=4500.0, reserve_seconds=450.0, eval_every_seconds=60.0, eval_windows=8,
    patience_evals=1000, passkey_contexts="1024,2048", passkey_per_cell=3, final_val_windows=12,
    checkpoint_every_seconds=600.0, compile=False, threads=1, procs=2,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", choices=("auto", "gpu", "cpu"), default="auto",
                   help="default hyper-parameters: gpu (the defaults shown) or cpu (see CPU_RECIPE); "
                        "auto = gpu when CUDA is available. Explicit options override the recipe.")
    p.add_argument("--out", required=True, help="output directory (the model files land here)")
    p.add_argument("--data-dir", default=os.path.join(HERE, "data"))
    p.add_argument("--seed", type=int, default=1234)
    # Model: sized so that its KV cache looks like a real model's (head_dim 128, GQA 2 KV x 2 query heads).
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--tokenizer", default="", help="reuse this tokenizer.json (from an earlier run) instead of training one")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--intermediate", type=int, default=1024)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--rms-eps", type=float, default=1e-5)
    p.add_argument("--context", type=int, default=4096, help="longest trained context (RoPE tables, last phase)")
    p.add_argument("--phases", default="",
                   help="context curriculum 'T:share,...' (e.g. 1024:0.8,2048:0.2); default: --context throughout")
    p.add_argument("--tokens-per-step", type=int, default=0,
                   help="if > 0: batch size = this / the phase's context (constant tokens per step)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--procs", type=int, default=1,
                   help="data-parallel processes on this machine (torch.distributed, gloo), each with --threads "
                        "threads and its own rows; gradients are averaged. On the 2-core dev box one process "
                        "with 2 threads trained no faster than with 1, and two 1-thread processes trained twice the tokens")
    p.add_argument("--checkpoint-every-seconds", type=float, default=0.0,
                   help="if > 0: export the current weights this often, so that a killed run leaves a model")
    # Optimisation.
    p.add_argument("--batch-size", type=int, default=16, help="rows of --context tokens per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--dropout", type=float, default=0.1, help="residual dropout while training (not in the export)")
    p.add_argument("--passkey-fraction", type=float, default=0.05, help="share of rows that are retrieval samples")
    p.add_argument("--repeat-fraction", type=float, default=0.0,
                   help="share of rows that repeat a span of speech text (a copy task that makes induction heads, "
                        "which retrieval needs, form early)")
    p.add_argument("--repeat-kind", choices=("random", "text"), default="random",
                   help="copy rows repeat uniformly random tokens (default: forms induction heads reliably) or speech text")
    p.add_argument("--copy-warmup-steps", type=int, default=0,
                   help="the first N steps train on copy rows only (random tokens, --repeat-span): induction heads "
                        "form there before prose and retrieval rows share the batch")
    p.add_argument("--warmup-rows", choices=("copy", "retrieval"), default="copy",
                   help="what the warm-up (--copy-warmup-*) trains on: copy rows (random tokens, --repeat-span) or "
                        "retrieval samples as long as the stage's rows (loss watched: the answer loss)")
    p.add_argument("--copy-warmup-context", default="128",
                   help="row lengths of the copy warm-up's stages, e.g. 128,512: each stage lasts until the copy loss "
                        "is below --copy-warmup-until. Short rows first, because at initialisation attention spreads over "
                        "the whole row and the signal that builds an induction head shrinks with its length; then the "
                        "phase's length, because a circuit learned on 128-token rows did not carry over to 512 in a trial")
    p.add_argument("--copy-warmup-mix", action="store_true",
                   help="draw each warm-up step's row length from --copy-warmup-context at random instead of in stages "
                        "(no length shift ever happens; the warm-up ends when the moving copy loss is below --copy-warmup-until)")
    p.add_argument("--copy-warmup-until", type=float, default=0.0,
                   help="end the copy warm-up early once the copy loss (moving average over ~20 steps) is below this")
    p.add_argument("--repeat-span", default="16,0",
                   help="min,max tokens of a copy row's repeated span (max 0: half the row), or 'half': one span "
                        "of half the row written twice (the warm-up's form; the CPU recipe keeps it after the warm-up, "
                        "because mixing in 8-256-token repeats at 512 tokens undid a fresh copying circuit in a trial)")
    p.add_argument("--init", default="",
                   help="start from the weights of this model directory (its config must match; its tokenizer is used)")
    p.add_argument("--needles-max", type=int, default=1,
                   help="retrieval rows hold 1..N needles (extra ones: secret-word facts with distinct keys), each asked "
                        "at the end: N times the retrieval signal per row, which long rows lack (see make_multi_needle_sample)")
    p.add_argument("--tokens-per-needle", type=int, default=256,
                   help="a row of T tokens holds at most T / this many needles (short rows: one)")
    p.add_argument("--copy-warmup-stage-steps", default="0",
                   help="the most steps of each warm-up stage, one value for all or one per --copy-warmup-context "
                        "(0: no cap but --copy-warmup-steps): a stage that never reaches --copy-warmup-until then "
                        "does not eat the whole warm-up")
    p.add_argument("--answer-loss-weight", type=float, default=1.0,
                   help="extra loss on the answer tokens of retrieval rows (they are ~0.1%% of their row)")
    # Budget: training stops at --train-seconds, and early enough that the script ends by --deadline-seconds.
    p.add_argument("--train-seconds", type=float, default=480.0)
    p.add_argument("--deadline-seconds", type=float, default=550.0, help="wall clock for the whole script")
    p.add_argument("--reserve-seconds", type=float, default=50.0, help="kept for final evaluation and export")
    p.add_argument("--max-steps", type=int, default=0, help="if > 0: a step-based schedule and stop (deterministic)")
    p.add_argument("--eval-every-seconds", type=float, default=30.0)
    p.add_argument("--eval-windows", type=int, default=16, help="validation windows per periodic evaluation")
    p.add_argument("--final-val-windows", type=int, default=0,
                   help="windows of --context tokens for the final validation (0: all of the held-out text)")
    p.add_argument("--patience-evals", type=int, default=5, help="stop after this many evaluations without a new best")
    p.add_argument("--passkey-contexts", default="1024,2048,4096")
    p.add_argument("--passkey-per-cell", type=int, default=6, help="samples per context x depth cell")
    p.add_argument("--passkey-seed", type=int, default=2024)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--no-hf-check", dest="hf_check", action="store_false",
                   help="skip reloading the export with transformers.LlamaForCausalLM to compare logits")
    p.add_argument("--smoke", action="store_true", help="tiny model and budget: checks the pipeline in ~1 minute")
    args = p.parse_args(argv)
    if args.recipe == "auto":
        try:
            import torch
            args.recipe = "gpu" if torch.cuda.is_available() else "cpu"
        except ImportError:
            args.recipe = "gpu"
    if args.recipe == "cpu":
        p.set_defaults(**CPU_RECIPE)
        args = p.parse_args(argv)
        args.recipe = "cpu"
    if args.smoke:
        args.vocab_size, args.hidden, args.layers, args.heads, args.kv_heads = 1024, 128, 2, 2, 1
        args.head_dim, args.intermediate, args.context, args.batch_size = 64, 256, 512, 4
        args.train_seconds, args.deadline_seconds, args.reserve_seconds = 25.0, 240.0, 30.0
        args.eval_every_seconds, args.eval_windows, args.warmup_steps = 10.0, 4, 10
        args.passkey_contexts, args.passkey_per_cell, args.passkey_fraction = "256,512", 1, 0.25
        args.phases, args.tokens_per_step, args.checkpoint_every_seconds = "256:0.5,512:0.5", 2048, 15.0
    args.passkey_contexts = [int(c) for c in str(args.passkey_contexts).split(",") if c]
    if args.init and not args.tokenizer:
        args.tokenizer = os.path.join(args.init, "tokenizer.json")
    if not 0 <= args.passkey_fraction + args.repeat_fraction <= 1:
        p.error("--passkey-fraction + --repeat-fraction must be in [0, 1]")
    try:
        warmup_contexts = [int(v) for v in str(args.copy_warmup_context).split(",")]
    except ValueError:
        warmup_contexts = []
    if not warmup_contexts or min(warmup_contexts) < 8:
        p.error(f"--copy-warmup-context must be row lengths >= 8, comma-separated (got {args.copy_warmup_context!r})")
    try:
        stage_steps = [int(v) for v in str(args.copy_warmup_stage_steps).split(",")]
    except ValueError:
        stage_steps = [-1]
    if min(stage_steps) < 0 or len(stage_steps) not in (1, len(warmup_contexts)):
        p.error(f"--copy-warmup-stage-steps must be one step count or one per warm-up stage "
                f"({len(warmup_contexts)}), each >= 0 (got {args.copy_warmup_stage_steps!r})")
    args.copy_warmup_stage_steps = stage_steps * len(warmup_contexts) if len(stage_steps) == 1 else stage_steps
    if args.procs < 1:
        p.error("--procs must be >= 1")
    if args.needles_max < 1 or args.tokens_per_needle < 1:
        p.error("--needles-max and --tokens-per-needle must be >= 1")
    if args.repeat_span != "half":
        try:
            lo, hi = (int(v) for v in args.repeat_span.split(","))
        except ValueError:
            lo, hi = -1, -1
        if lo < 1 or hi < 0:
            p.error(f"--repeat-span must be 'half' or min,max tokens (max 0: half the row); got {args.repeat_span!r}")
    if args.heads % args.kv_heads:
        p.error("--heads must be a multiple of --kv-heads")
    if max(args.passkey_contexts) > args.context:
        p.error("--passkey-contexts must not exceed --context")
    try:
        args.phases = parse_phases(args.phases, args.context)
    except ValueError as e:
        p.error(str(e))
    return args


def parse_phases(text, context):
    """'1024:0.8,2048:0.2' -> [(1024, 0.8), (2048, 0.2)]: the context of each share of the training time."""
    if not text:
        return [(context, 1.0)]
    phases = []
    for part in str(text).split(","):
        t, share = part.split(":")
        phases.append((int(t), float(share)))
    if any(t > context or t < 16 for t, _ in phases) or abs(sum(s for _, s in phases) - 1) > 1e-6:
        raise ValueError(f"--phases {text!r}: contexts must be in [16, --context] and shares must sum to 1")
    return phases


def phase_at(phases, progress):
    """The context for a point of training (progress in [0, 1])."""
    edge = 0.0
    for t, share in phases:
        edge += share
        if progress < edge:
            return t
    return phases[-1][0]


# ----------------------------------------------------------------------------------------------- model

def build_model_classes(torch, nn, F):
    """Module names follow Hugging Face's LlamaForCausalLM so the state dict is already in HF naming."""

    class RMSNorm(nn.Module):
        def __init__(self, dim, eps):
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            dtype = x.dtype
            x = x.float()
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
            return self.weight * x.to(dtype)

    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    class Attention(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.heads, self.kv_heads, self.head_dim = c.heads, c.kv_heads, c.head_dim
            self.q_proj = nn.Linear(c.hidden, c.heads * c.head_dim, bias=False)
            self.k_proj = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
            self.v_proj = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
            self.o_proj = nn.Linear(c.heads * c.head_dim, c.hidden, bias=False)

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            cos, sin = cos[:t].to(q.dtype), sin[:t].to(q.dtype)
            q = q * cos + rotate_half(q) * sin  # HF's rotate-half RoPE convention
            k = k * cos + rotate_half(k) * sin
            rep = self.heads // self.kv_heads  # KV head j serves query heads j*rep .. j*rep+rep-1 (HF repeat_kv)
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            if hasattr(F, "scaled_dot_product_attention"):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # torch 1.13 (Debian's): the same maths, written out
                scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
                causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
                y = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1) @ v
            return self.o_proj(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))

    class MLP(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.gate_proj = nn.Linear(c.hidden, c.intermediate, bias=False)
            self.up_proj = nn.Linear(c.hidden, c.intermediate, bias=False)
            self.down_proj = nn.Linear(c.intermediate, c.hidden, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class DecoderLayer(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.input_layernorm = RMSNorm(c.hidden, c.rms_eps)
            self.self_attn = Attention(c)
            self.post_attention_layernorm = RMSNorm(c.hidden, c.rms_eps)
            self.mlp = MLP(c)
            self.dropout = nn.Dropout(c.dropout)

        def forward(self, x, cos, sin):
            x = x + self.dropout(self.self_attn(self.input_layernorm(x), cos, sin))
            return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))

    class Body(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden)
            self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.layers))
            self.norm = RMSNorm(c.hidden, c.rms_eps)

    class LlamaForCausalLM(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.model = Body(c)
            self.lm_head = nn.Linear(c.hidden, c.vocab_size, bias=False)
            self.lm_head.weight = self.model.embed_tokens.weight  # tied (tie_word_embeddings: true)
            inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32) / c.head_dim))
            freqs = torch.outer(torch.arange(c.context, dtype=torch.float32), inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            self.register_buffer("rope_cos", emb.cos(), persistent=False)
            self.register_buffer("rope_sin", emb.sin(), persistent=False)
            std = 0.02
            for name, prm in self.named_parameters():
                if prm.dim() == 2:
                    scale = 1 / math.sqrt(2 * c.layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 1
                    nn.init.normal_(prm, mean=0.0, std=std * scale)

        def forward(self, idx):
            h = self.model.embed_tokens(idx)
            for layer in self.model.layers:
                h = layer(h, self.rope_cos, self.rope_sin)
            return self.lm_head(self.model.norm(h))

    return LlamaForCausalLM


def expected_parameters(c):
    """Parameter count from the shapes alone (checked against the built model in main)."""
    attention = c.hidden * c.head_dim * (2 * c.heads + 2 * c.kv_heads)
    per_layer = attention + 3 * c.hidden * c.intermediate + 2 * c.hidden
    return c.vocab_size * c.hidden + c.layers * per_layer + c.hidden


def count_parameters(model, c):
    total = sum(p.numel() for p in model.parameters())  # the tied lm_head is counted once
    embedding = c.vocab_size * c.hidden
    per_layer = sum(p.numel() for p in model.model.layers[0].parameters())
    return {"total": total, "embedding": embedding, "per_layer": per_layer, "layers": per_layer * c.layers,
            "final_norm": c.hidden, "lm_head": "tied to embed_tokens"}


def hf_config(c, eot_id):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": c.vocab_size, "hidden_size": c.hidden, "intermediate_size": c.intermediate,
        "num_hidden_layers": c.layers, "num_attention_heads": c.heads, "num_key_value_heads": c.kv_heads,
        "head_dim": c.head_dim, "max_position_embeddings": c.context, "rope_theta": c.rope_theta,
        "rope_scaling": None, "rms_norm_eps": c.rms_eps, "hidden_act": "silu", "tie_word_embeddings": True,
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "initializer_range": 0.02,
        "pretraining_tp": 1, "use_cache": True, "bos_token_id": eot_id, "eos_token_id": eot_id,
        "torch_dtype": "float16",
    }


# ------------------------------------------------------------------------------------------------ data

def train_tokenizer(texts, vocab_size):
    return bpe.ByteLevelBPE(bpe.train_bpe(texts, vocab_size))


def token_stream(tok, texts, eot_id):
    ids = []
    for text in texts:
        ids.append(eot_id)
        ids.extend(tok.encode(text))
    return ids


def repeated_span_row(train_ids, length, rng, eot_id, span=(16, 0), vocab_size=0):
    """A copy-task row: a span (span[0] to span[1] tokens, or half the row) written again and again, separated by
    <eot>; returns the row and the length of its first unit. Every repeat after the first is predictable only by
    looking back, which is what passkey retrieval needs. With vocab_size > 0 the span is uniformly random tokens
    (nothing but copying predicts them, so induction heads form within a few hundred steps); otherwise it is
    speech text, which a small model predicts well enough from bigrams that the copying circuit forms late or
    not at all (two 40-50 minute CPU runs with 40% text copy rows formed none). Plain Python: the
    caller makes the tensor."""
    hi = min(span[1] or length, length // 2 - 1)
    span_len = rng.randint(min(span[0], hi), hi)
    if vocab_size:
        unit = [rng.randrange(1, vocab_size) for _ in range(span_len)] + [eot_id]
    else:
        start = rng.randrange(0, len(train_ids) - span_len)
        unit = list(train_ids[start:start + span_len]) + [eot_id]
    return (unit * (length // len(unit) + 1))[:length], len(unit)


def init_model(model, args, torch):
    """Load --init's weights (fp16 safetensors, tied lm_head left out) into the freshly built model."""
    with open(os.path.join(args.init, "config.json")) as f:
        cfg = json.load(f)
    want = {"hidden_size": args.hidden, "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
            "num_key_value_heads": args.kv_heads, "intermediate_size": args.intermediate, "vocab_size": args.vocab_size}
    wrong = {k: (cfg.get(k), v) for k, v in want.items() if cfg.get(k) != v}
    if wrong:
        raise SystemExit(f"--init {args.init}: its config differs from this run's (theirs, ours): {wrong}")
    loaded, _ = safetensors_io.load(os.path.join(args.init, "model.safetensors"))
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v).float() for k, v in loaded.items()}, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise SystemExit(f"--init {args.init}: missing {missing}, unexpected {unexpected}")
    log(f"initialized from {args.init} ({len(loaded)} tensors)")


def training_row_ids(tok, segments, eot_id):
    """<eot> segment... <eot> for a multi-needle training sample; returns the ids and the answers' [start, end)
    spans. Each segment is tokenized alone, as the evaluation tokenizes its prompt and answer."""
    ids, spans = [eot_id], []
    for text, is_answer in segments:
        part = tok.encode(text)
        if is_answer:
            spans.append((len(ids), len(ids) + len(part)))
        ids += part
    return ids + [eot_id], spans


def retrieval_row_ids(tok, sample, eot_id):
    """<eot> prompt answer <eot>; returns the ids and the answer's [start, end) positions among them."""
    prompt = tok.encode(sample["prompt"])
    answer = tok.encode(sample["answer"])
    start = 1 + len(prompt)
    return [eot_id] + prompt + answer + [eot_id], start, start + len(answer)


# ------------------------------------------------------------------------------------------------ main

def main():
    args = parse_args()
    if args.procs > 1:
        import torch.multiprocessing as mp
        port = 29500 + os.getpid() % 1000
        mp.spawn(worker, args=(args, port), nprocs=args.procs, join=True)
    else:
        worker(0, args, None)


def worker(rank, args, port):
    """One training process: rank 0 decides (clock, phases, warm-up stages, evaluation) and tells the others
    every step; every rank draws its own rows; only rank 0 logs, evaluates and writes files."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    global log
    if rank:
        log = lambda message: None  # noqa: E731
    dist = None
    if port is not None:
        import torch.distributed as dist
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        dist.init_process_group("gloo", rank=rank, world_size=args.procs)
    os.makedirs(args.out, exist_ok=True)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and args.recipe == "gpu" and not args.smoke:
        log("WARNING: no CUDA device; this will be far too slow for the full model (use --smoke to test)")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast(
        device_type="cpu", dtype=torch.bfloat16, enabled=False)

    # Data: whole speeches, split by prepare-corpus.ts.
    train_speeches = corpus.read_corpus(os.path.join(args.data_dir, "sotu-train.txt.xz"))
    heldout_speeches = corpus.read_corpus(os.path.join(args.data_dir, "sotu-heldout.txt.xz"))
    if any(s["year"] % 10 == 0 for s in train_speeches) or any(s["year"] % 10 for s in heldout_speeches):
        raise SystemExit("corpus split is wrong: held-out must be exactly the years divisible by 10")
    train_texts = [s["text"] for s in train_speeches]
    heldout_texts = [s["text"] for s in heldout_speeches]
    log(f"corpus: {len(train_texts)} train speeches, {len(heldout_texts)} held-out speeches")

    t0 = time.time()
    tok = bpe.ByteLevelBPE.load(args.tokenizer) if args.tokenizer else train_tokenizer(train_texts, args.vocab_size)
    eot_id = tok.token_to_id(EOT)
    if tok.vocab_size() > args.vocab_size or eot_id != 0:
        raise SystemExit(f"tokenizer has {tok.vocab_size()} tokens and <|endoftext|> = {eot_id}")
    tok.save(os.path.join(args.out, "tokenizer.json"))
    train_ids = token_stream(tok, train_texts, eot_id)
    val_ids = token_stream(tok, heldout_texts, eot_id)
    cpt_train = sum(map(len, train_texts)) / (len(train_ids) - len(train_texts))
    cpt_val = sum(map(len, heldout_texts)) / (len(val_ids) - len(heldout_texts))
    log(f"tokenizer: {tok.vocab_size()} tokens in {time.time() - t0:.1f}s; train {len(train_ids):,} tokens "
        f"({cpt_train:.2f} chars/token), held-out {len(val_ids):,} tokens ({cpt_val:.2f} chars/token)")
    train_stream = torch.tensor(train_ids, dtype=torch.long, device=device)
    val_stream = torch.tensor(val_ids, dtype=torch.long, device=device)

    count_tokens = lambda text: len(tok.encode(text))  # noqa: E731
    t0 = time.time()
    suite = passkey.make_retrieval_suite(args.passkey_seed, heldout_texts, args.passkey_per_cell,
                                         contexts=args.passkey_contexts, count_tokens=count_tokens)
    log(f"retrieval evaluation: {len(suite)} held-out samples in {time.time() - t0:.1f}s")

    # Model.
    def export(net, tag):
        """fp16 weights with HF names (tied lm_head left out: tie_word_embeddings), config, tokenizer config.
        Written to temporary names and renamed, so that a reader never sees half a file."""
        tensors = {k: v.detach().to(torch.float16).cpu().numpy() for k, v in net.state_dict().items()
                   if k != "lm_head.weight"}
        path = os.path.join(args.out, "model.safetensors")
        safetensors_io.save(tensors, path + ".tmp", metadata={"format": "pt", "nexusquant": tag})
        os.replace(path + ".tmp", path)
        with open(os.path.join(args.out, "config.json"), "w") as f:
            json.dump(hf_config(args, eot_id), f, indent=2)
        with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT,
                       "unk_token": None, "add_bos_token": False, "add_eos_token": False,
                       "model_max_length": args.context, "clean_up_tokenization_spaces": False}, f, indent=2)

    LlamaForCausalLM = build_model_classes(torch, nn, F)
    model = LlamaForCausalLM(args).to(device)
    params = count_parameters(model, args)
    assert params["total"] == expected_parameters(args), (params, expected_parameters(args))
    if args.init:
        init_model(model, args, torch)
    log(f"parameters: {params['total']:,} = embedding {params['embedding']:,} (tied with lm_head) + "
        f"{args.layers} layers x {params['per_layer']:,} + norm {params['final_norm']:,}")
    if not 15e6 <= params["total"] <= 25e6 and args.recipe == "gpu" and not args.smoke:
        log("WARNING: outside the 15-25M parameters asked for in issue 8")

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, args.beta2), eps=1e-8,
                            **({"fused": True} if device == "cuda" else {}))
    train_model = model
    if dist is not None:
        train_model = nn.parallel.DistributedDataParallel(model)  # broadcasts rank 0's weights, averages gradients
    if args.compile and device == "cuda":
        try:
            train_model = torch.compile(model)
        except Exception as e:  # noqa: BLE001  (compile is an optimisation; train eagerly without it)
            log(f"torch.compile unavailable ({e!r}); training eagerly")

    def batch_for(T):
        return max(1, args.tokens_per_step // T) if args.tokens_per_step else args.batch_size

    VT = args.phases[0][0]  # periodic validation windows: the first phase's context, comparable throughout
    gen = torch.Generator().manual_seed(args.seed + 7919 * rank)  # each rank its own rows
    row_rng = random.Random(args.seed + 7919 * rank)
    retrieval_rows = 10 ** 9 * rank

    def windows(stream, starts, T):
        return stream[(torch.as_tensor(starts)[:, None] + torch.arange(T + 1)).to(stream.device)]

    copy_warmup = {"on": args.copy_warmup_steps > 0, "ema": None, "stage": 0, "stage_start": 0,
                   "contexts": [int(v) for v in str(args.copy_warmup_context).split(",")]}

    def make_batch(T, B):
        nonlocal retrieval_rows
        max_chars = int(cpt_train * (T - 2) * 0.92)
        x = windows(train_stream, torch.randint(0, len(train_stream) - T - 1, (B,), generator=gen), T)
        mask = torch.zeros(B, T, dtype=torch.bool)
        warmup = copy_warmup["on"] and step < args.copy_warmup_steps
        if warmup:  # warm-up rows only: copy rows, or retrieval samples as short as the stage's rows
            passkey_fraction, repeat_fraction = (1.0, 0.0) if args.warmup_rows == "retrieval" else (0.0, 1.0)
        else:
            passkey_fraction, repeat_fraction = args.passkey_fraction, args.repeat_fraction
        n_retrieval = int(B * passkey_fraction) + (row_rng.random() < (B * passkey_fraction) % 1)
        max_needles = min(args.needles_max, max(1, T // args.tokens_per_needle))
        for r in range(n_retrieval):
            while True:  # a sample whose tokens fit the row; retried with the next seed when one is too long
                retrieval_rows += 1
                sample = passkey.make_multi_needle_sample(passkey.derive_seed(args.seed, retrieval_rows), train_texts,
                                                          min(400, max_chars), max_chars, max_needles)
                ids, spans = training_row_ids(tok, sample["segments"], eot_id)
                if len(ids) <= T + 1:
                    break
            fill_start = row_rng.randrange(0, len(train_ids) - T - 1)
            ids = ids + train_ids[fill_start:fill_start + T + 1 - len(ids)]  # pack the rest with speech text
            x[r] = torch.tensor(ids, dtype=torch.long, device=x.device)
            for a0, a1 in spans:
                mask[r, a0 - 1:a1 - 1] = True  # target t predicts token t+1
        n_repeat = int(B * repeat_fraction) + (row_rng.random() < (B * repeat_fraction) % 1)
        copy_mask = torch.zeros(B, T, dtype=torch.bool)
        for r in range(n_retrieval, min(B, n_retrieval + n_repeat)):
            # Warm-up rows hold one span written twice (half a row each): the plainest copy task. In CPU
            # trials (lr 1e-3, beta2 0.999, 128-token rows) this form learned copying by step ~220 (copy loss
            # 7.6 -> 1.0), while rows of many repeats of 8-63 tokens were still at 6.8 after 480 steps.
            half = (T // 2 - 1, T // 2 - 1)
            span = half if warmup or args.repeat_span == "half" else tuple(int(v) for v in args.repeat_span.split(","))
            row, unit = repeated_span_row(train_ids, T + 1, row_rng, eot_id, span,
                                          args.vocab_size if args.repeat_kind == "random" or warmup else 0)
            x[r] = torch.tensor(row, dtype=torch.long, device=x.device)
            copy_mask[r, unit - 1:] = True  # targets inside the repeats: predictable only by copying
        return x[:, :-1], x[:, 1:], mask.to(x.device), n_retrieval, copy_mask.to(x.device)

    def losses(net, inputs, targets, mask=None):
        with amp:
            logits = net(inputs)
        ce = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
        ce = ce.view(targets.shape)
        if mask is None:
            return ce.mean(), ce.new_zeros(()), ce
        weights = mask.to(ce.dtype)  # mean over answer tokens without a host sync; 0 when the batch has none
        return ce.mean(), (ce * weights).sum() / weights.sum().clamp(min=1.0), ce

    @torch.no_grad()
    def validation_loss(n_windows=None, T=VT):
        model.eval()
        B = batch_for(T)
        last = len(val_stream) - T - 1
        if n_windows is None:
            starts = list(range(0, last + 1, T))  # the whole held-out stream, without overlap
        else:
            starts = [i * last // max(1, n_windows - 1) for i in range(n_windows)]
        total = 0.0
        for i in range(0, len(starts), B):
            x = windows(val_stream, starts[i:i + B], T)
            total += losses(model, x[:, :-1], x[:, 1:])[0].item() * x.size(0)
        model.train()
        return total / len(starts), len(starts) * T

    @torch.no_grad()
    def retrieval_accuracy(samples=None):
        model.eval()
        results = []
        for s in suite if samples is None else samples:
            ids, a0, a1 = retrieval_row_ids(tok, s, eot_id)
            x = torch.tensor(ids[:a1], dtype=torch.long, device=device)[None]
            with amp:
                logits = model(x[:, :-1])
            predicted = logits[0, a0 - 1:a1 - 1].argmax(-1)  # greedy decoding of the answer, teacher-forced
            results.append({"context": s["targetTokens"] + 16, "depth": s["depth"], "kind": s["kind"],
                            "promptTokens": len(ids) - 2 - (a1 - a0),
                            "correct": bool(torch.equal(predicted, x[0, a0:a1]))})
        model.train()

        def acc(key):
            groups = {}
            for r in results:
                groups.setdefault(str(r[key]), []).append(r["correct"])
            return {k: sum(v) / len(v) for k, v in groups.items()}
        return {"overall": sum(r["correct"] for r in results) / len(results), "by_context": acc("context"),
                "by_depth": acc("depth"), "by_kind": acc("kind"), "samples": len(results)}

    def lr_at(step, progress):
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * cosine)

    # Training loop, bounded by wall clock.
    if args.threads:
        torch.set_num_threads(args.threads)
    train_start = time.time()
    stop_at = min(train_start + args.train_seconds, SCRIPT_START + args.deadline_seconds - args.reserve_seconds)
    budget = stop_at - train_start
    log(f"training for up to {budget:.0f}s: phases {args.phases} (context: share of the time), "
        f"{batch_for(args.phases[0][0])} x {args.phases[0][0]} tokens per step first, lr {args.lr}, "
        f"{args.passkey_fraction:.0%} retrieval rows, {args.repeat_fraction:.0%} copy rows"
        + (f", from {args.init}" if args.init else ""))
    next_checkpoint = train_start + args.checkpoint_every_seconds if args.checkpoint_every_seconds > 0 else None
    probe = suite[::max(1, len(suite) // 8)]  # a retrieval probe at checkpoints, to watch the gate
    T = None
    history, best = [], {"loss": float("inf"), "step": 0, "state": None}
    step, tokens_seen, next_eval, evals_since_best = 0, 0, train_start + args.eval_every_seconds, 0
    stop_reason = "time budget"
    # Running sums since the last evaluation (answer loss only over batches that had retrieval rows).
    new_run = lambda: {"lm": torch.zeros((), device=device), "ans": torch.zeros((), device=device),  # noqa: E731
                       "copy": torch.zeros((), device=device), "n": 0, "n_ans": 0, "n_copy": 0}
    run = new_run()
    model.train()
    stop = False
    while True:
        now = time.time()
        if args.max_steps and step >= args.max_steps:
            stop_reason, stop = "max steps", True
        if now >= stop_at:
            stop = True
        progress = step / args.max_steps if args.max_steps else (now - train_start) / budget
        if dist is not None:  # rank 0's clock and warm-up state rule every rank
            control = torch.tensor([float(stop), progress, float(copy_warmup["on"]), float(copy_warmup["stage"])],
                                   dtype=torch.float64)
            dist.broadcast(control, 0)
            stop, progress = bool(control[0]), float(control[1])
            copy_warmup["on"], copy_warmup["stage"] = bool(control[2]), int(control[3])
        if stop:
            break
        if phase_at(args.phases, progress) != T:
            T = phase_at(args.phases, progress)
            B = batch_for(T)
            if step:  # a new context: the best-validation choice starts over within this phase
                best["loss"], evals_since_best = float("inf"), 0
            log(f"phase: context {T}, batch {B} (step {step})")
        lr = lr_at(step, progress)
        for g in opt.param_groups:
            g["lr"] = lr
        if copy_warmup["on"]:
            stage = row_rng.randrange(len(copy_warmup["contexts"])) if args.copy_warmup_mix else copy_warmup["stage"]
            Tw = min(T, copy_warmup["contexts"][stage])
            inputs, targets, mask, n_retrieval, copy_mask = make_batch(Tw, batch_for(Tw))
        else:
            inputs, targets, mask, n_retrieval, copy_mask = make_batch(T, B)
        try:
            lm_loss, answer_loss, ce = losses(train_model, inputs, targets, mask)
        except Exception as e:  # noqa: BLE001  (a compile failure surfaces on the first call)
            if train_model is model or step > 0:
                raise
            log(f"compiled model failed ({e!r}); training eagerly")
            train_model = model
            lm_loss, answer_loss, ce = losses(train_model, inputs, targets, mask)
        loss = lm_loss + args.answer_loss_weight * answer_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += inputs.numel() * args.procs
        run["lm"] += lm_loss.detach()
        run["n"] += 1
        if n_retrieval:
            run["ans"] += answer_loss.detach()
            run["n_ans"] += 1
        warmup_loss = None  # what the warm-up watches: the copy loss, or the answer loss of retrieval rows
        if bool(copy_mask.any()):
            copy_loss_now = (ce.detach() * copy_mask).sum() / copy_mask.sum()
            run["copy"] += copy_loss_now
            run["n_copy"] += 1
            warmup_loss = copy_loss_now
        if args.warmup_rows == "retrieval":
            warmup_loss = answer_loss.detach() if n_retrieval else None
        if copy_warmup["on"] and warmup_loss is not None and rank == 0:
            v = warmup_loss.item()
            copy_warmup["ema"] = v if copy_warmup["ema"] is None else 0.95 * copy_warmup["ema"] + 0.05 * v
            stage_cap = 0 if args.copy_warmup_mix else args.copy_warmup_stage_steps[copy_warmup["stage"]]
            finished = (step >= args.copy_warmup_steps or copy_warmup["ema"] < args.copy_warmup_until
                        or (stage_cap and step - copy_warmup["stage_start"] >= stage_cap))
            what, watched = f"{args.warmup_rows} warm-up", "answer" if args.warmup_rows == "retrieval" else "copy"
            if args.copy_warmup_mix:
                if finished:
                    log(f"{what} (mixed lengths) over at step {step}: {watched} loss (moving average) "
                        f"{copy_warmup['ema']:.3f}")
                    copy_warmup["on"] = False
            elif finished:
                log(f"{what} stage {copy_warmup['contexts'][copy_warmup['stage']]} over at step {step}: "
                    f"{watched} loss (moving average) {copy_warmup['ema']:.3f}")
                copy_warmup["stage"] += 1
                copy_warmup["ema"] = None
                copy_warmup["stage_start"] = step
                if step >= args.copy_warmup_steps or copy_warmup["stage"] == len(copy_warmup["contexts"]):
                    copy_warmup["on"] = False
        if step == 1:
            log(f"first step done (includes compilation): loss {lm_loss.item():.3f}")
        if rank == 0 and (time.time() >= next_eval or time.time() >= stop_at):
            val, _ = validation_loss(args.eval_windows)
            elapsed = time.time() - train_start
            train_loss = run["lm"].item() / max(1, run["n"])
            ans_loss = run["ans"].item() / run["n_ans"] if run["n_ans"] else None
            copy_loss = run["copy"].item() / run["n_copy"] if run["n_copy"] else None
            run = new_run()
            history.append({"step": step, "seconds": round(elapsed, 1), "tokens": tokens_seen, "lr": lr, "context": T,
                            "train_loss": round(train_loss, 4),
                            "answer_loss": None if ans_loss is None else round(ans_loss, 4),
                            "copy_loss": None if copy_loss is None else round(copy_loss, 4),
                            "val_loss": round(val, 4)})
            log(f"step {step:5d}  train {train_loss:.3f}  answer {ans_loss if ans_loss is None else round(ans_loss, 3)}  copy {copy_loss if copy_loss is None else round(copy_loss, 3)}  val {val:.3f}  "
                f"lr {lr:.2e}  {tokens_seen / elapsed / 1e3:.0f}K tok/s  epoch {tokens_seen / len(train_ids):.1f}")
            if val < best["loss"]:
                best = {"loss": val, "step": step, "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                evals_since_best = 0
            else:
                evals_since_best += 1
                if evals_since_best >= args.patience_evals:
                    stop_reason = f"no better validation loss in {args.patience_evals} evaluations"
                    stop_at = 0  # every rank stops at the next step's broadcast
            if next_checkpoint is not None and time.time() >= next_checkpoint:
                export(model, tag=f"checkpoint at step {step}")
                probe_acc = retrieval_accuracy(probe)
                history[-1]["probe_retrieval"] = probe_acc["by_context"]
                log(f"checkpoint written (step {step}); retrieval probe {probe_acc['by_context']} "
                    f"over {len(probe)} samples")
                next_checkpoint = time.time() + args.checkpoint_every_seconds
            next_eval = time.time() + args.eval_every_seconds
    train_seconds = time.time() - train_start
    if dist is not None:
        dist.destroy_process_group()
    if rank:
        return
    log(f"stopped after {step} steps, {train_seconds:.0f}s ({stop_reason}); best validation loss "
        f"{best['loss']:.4f} at step {best['step']}")
    if best["state"] is not None:
        model.load_state_dict(best["state"])

    export(model, tag=f"final, step {best['step']}")
    # Evaluate what was exported: the model with its weights rounded to fp16.
    loaded, _ = safetensors_io.load(os.path.join(args.out, "model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(v).float().to(device) for k, v in loaded.items()}, strict=False)
    val_loss, val_tokens = validation_loss(args.final_val_windows or None, T=args.context)
    retrieval = retrieval_accuracy()
    log(f"held-out: loss {val_loss:.4f}, perplexity {math.exp(val_loss):.2f} over {val_tokens:,} tokens; "
        f"retrieval {retrieval['overall']:.1%} {retrieval['by_context']}")
    hf_check = check_with_transformers(args, model, val_stream, torch) if args.hf_check else "skipped (--no-hf-check)"
    log(f"transformers check: {hf_check}")

    report = {
        "model": hf_config(args, eot_id), "parameters": params,
        "tokenizer": {"type": "byte-level BPE (bench/model/bpe.py, GPT-2 pre-tokenizer)", "vocab_size": tok.vocab_size(), "eot_id": eot_id,
                      "chars_per_token_train": round(cpt_train, 3), "chars_per_token_heldout": round(cpt_val, 3)},
        "data": {"train_speeches": len(train_texts), "train_tokens": len(train_ids),
                 "heldout_speeches": len(heldout_texts), "heldout_years": [s["year"] for s in heldout_speeches],
                 "heldout_tokens": len(val_ids), "manifest": read_manifest(args.data_dir)},
        "validation": {"loss": round(val_loss, 4), "perplexity": round(math.exp(val_loss), 3), "tokens": val_tokens,
                       "note": (f"{args.final_val_windows} evenly spaced" if args.final_val_windows else "non-overlapping")
        + f" {args.context}-token windows of the held-out speeches, fp16 weights"},
        "retrieval": retrieval,
        "training": {"steps": step, "tokens_seen": tokens_seen, "epochs": round(tokens_seen / len(train_ids), 2),
                     "seconds": round(train_seconds, 1), "stop_reason": stop_reason, "best_step": best["step"],
                     "best_periodic_val_loss": round(best["loss"], 4), "retrieval_rows": retrieval_rows,
                     "history": history},
        "hyperparameters": {k: v for k, v in vars(args).items() if k != "out"},
        "hf_check": hf_check,
        "environment": environment(torch),
        "total_seconds": round(time.time() - SCRIPT_START, 1),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(["python3"] + sys.argv),
    }
    with open(os.path.join(args.out, "training-report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "training-report.md"), "w") as f:
        f.write(markdown_report(report))
    sizes = {name: os.path.getsize(os.path.join(args.out, name)) for name in sorted(os.listdir(args.out))}
    total = sum(sizes.values())
    log(f"wrote {args.out}: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()) + f"; total {total / 1e6:.1f} MB")
    if total > 50e6:
        log("WARNING: the output is over the 50 MB asked for in issue 8")


def check_with_transformers(args, model, val_stream, torch):
    """Reload the export with transformers and compare logits: catches naming, RoPE or GQA layout slips."""
    try:
        from transformers import LlamaForCausalLM as HFLlama
    except Exception as e:  # noqa: BLE001
        return f"skipped (transformers not importable: {e!r})"
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # compare in true fp32
    try:
        hf = HFLlama.from_pretrained(args.out).float().to(val_stream.device).eval()
        ours = model.float().eval()
        x = val_stream[: min(1024, args.context)][None]
        with torch.no_grad():
            a = ours(x).float()
            b = hf(x).logits.float()
        diff = (a - b).abs().max().item()
        agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
        verdict = "ok" if diff < 1e-2 else "MISMATCH"
        return f"{verdict}: max abs logit difference {diff:.2e}, argmax agreement {agree:.4f} over {x.size(1)} tokens"
    except Exception as e:  # noqa: BLE001
        return f"FAILED: {e!r}"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def read_manifest(data_dir):
    try:
        with open(os.path.join(data_dir, "manifest.json")) as f:
            m = json.load(f)
        return {split: m["files"][split]["sha256Xz"] for split in ("train", "heldout")}
    except (OSError, KeyError, ValueError) as e:
        return f"unreadable: {e!r}"


def environment(torch):
    env = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    else:
        env["gpu"] = "none (CPU)"
    env["cpu_threads"] = torch.get_num_threads()
    env["cpu"] = platform.processor() or platform.machine()
    try:
        env["blas"] = torch.__config__.show().split("BLAS_INFO=")[1].split(",")[0] if "BLAS_INFO=" in torch.__config__.show() else "?"
    except Exception:  # noqa: BLE001
        pass
    return env


def markdown_report(r):
    m, t, v, ret, env = r["model"], r["training"], r["validation"], r["retrieval"], r["environment"]
    if env.get("gpu", "").startswith("none"):
        machine = (f"the CPU ({env.get('cpu', '?')}, {env.get('cpu_threads', '?')} torch threads, "
                   f"torch {env['torch']}, {env.get('platform', '?')})")
    else:
        machine = f"{env.get('gpu')} (driver {env.get('driver', '?')}, CUDA {env.get('cuda', '?')}, torch {env['torch']})"
    lines = [
        "# sotu-llama: training report", "",
        f"Trained {r['date_utc']} on {machine} in {r['total_seconds']:.0f} s, with `{r['command']}`.", "",
        "| | |", "| --- | --- |",
        f"| architecture | Llama: {m['num_hidden_layers']} layers, hidden {m['hidden_size']}, "
        f"{m['num_attention_heads']} query / {m['num_key_value_heads']} KV heads x head_dim {m['head_dim']}, "
        f"SwiGLU {m['intermediate_size']}, RoPE theta {m['rope_theta']:g}, context {m['max_position_embeddings']} |",
        f"| parameters | {r['parameters']['total']:,} (embedding {r['parameters']['embedding']:,}, tied) |",
        f"| tokenizer | byte-level BPE, {r['tokenizer']['vocab_size']} tokens, "
        f"{r['tokenizer']['chars_per_token_heldout']} chars/token on held-out text |",
        f"| data | {r['data']['train_speeches']} train speeches ({r['data']['train_tokens']:,} tokens); "
        f"{r['data']['heldout_speeches']} held-out speeches (years divisible by 10, {r['data']['heldout_tokens']:,} tokens) |",
        f"| training | {t['steps']} steps, {t['tokens_seen']:,} tokens ({t['epochs']} epochs) in {t['seconds']:.0f} s; "
        f"stopped: {t['stop_reason']}; kept step {t['best_step']} (best validation loss) |",
        f"| **validation perplexity** | **{v['perplexity']:.2f}** (loss {v['loss']:.4f}, {v['tokens']:,} held-out tokens, fp16 weights) |",
        f"| **retrieval accuracy** | **{ret['overall']:.1%}** over {ret['samples']} held-out samples |",
        f"| export check (transformers) | {r['hf_check']} |", "",
        "Retrieval (pass key / secret word stated once at the given depth, asked at the end; greedy answer):", "",
        "| context | accuracy |", "| --- | --- |",
    ]
    lines += [f"| {k} | {a:.1%} |" for k, a in ret["by_context"].items()]
    lines += ["", "| depth | " + " | ".join(ret["by_depth"]) + " |", "| --- |" + " --- |" * len(ret["by_depth"]),
              "| accuracy | " + " | ".join(f"{a:.0%}" for a in ret["by_depth"].values()) + " |", "",
              "Loss during training (periodic validation on a subset of held-out windows):", "",
              "| step | seconds | train loss | answer loss | copy loss | validation loss | lr |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {h['step']} | {h['seconds']} | {h['train_loss']} | {h['answer_loss']} | {h.get('copy_loss')} | {h['val_loss']} | {h['lr']:.2e} |"
              for h in t["history"]]
    probes = [h for h in t["history"] if "probe_retrieval" in h]
    if probes:
        lines += ["", "Retrieval probe at checkpoints (a few held-out samples per context):", "",
                  "| step | " + " | ".join(probes[0]["probe_retrieval"]) + " |",
                  "| --- |" + " --- |" * len(probes[0]["probe_retrieval"])]
        lines += [f"| {h['step']} | " + " | ".join(f"{a:.0%}" for a in h["probe_retrieval"].values()) + " |" for h in probes]
    lines += ["", "Hyper-parameters: `" + json.dumps(r["hyperparameters"]) + "`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
