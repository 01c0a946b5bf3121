"""K (pre- and post-RoPE), V and post-RoPE Q of every layer and head of a Llama model directory, from a
plain float32 forward pass (torch), for the transform study (study.py).

The forward is the decoder of bench/model/train.py and src/model/reference.ts (RMSNorm, HF rotate-half
RoPE with inv_freq = theta^(-2i/d), GQA where KV head j serves query heads j*rep .. j*rep+rep-1, SwiGLU,
tied or untied head), written against the safetensors names so that it loads the trained model and the
random-weight models of random-models.ts alike. K/V are what the cache stores (post-RoPE keys) plus the
pre-RoPE keys, before any FP16 rounding (the study measures relative errors, far above FP16's).
"""
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))

import numpy as np  # noqa: E402
import safetensors_io  # noqa: E402


def load_model(model_dir):
    """(config dict, {name: float32 torch tensor})."""
    import torch
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    raw, _ = safetensors_io.load(os.path.join(model_dir, "model.safetensors"))
    weights = {k: torch.from_numpy(v.astype(np.float32)) for k, v in raw.items()}
    return cfg, weights


def shape_of(cfg):
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    return {"layers": cfg["num_hidden_layers"], "heads": heads, "kv_heads": cfg["num_key_value_heads"],
            "head_dim": head_dim, "hidden": cfg["hidden_size"], "vocab": cfg["vocab_size"]}


def rope_tables(head_dim, length, theta):
    import torch
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    """x [..., T, d] (torch); HF rotate-half convention, position t = row t."""
    import torch
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def rope_numpy(x, theta):
    """apply_rope for a numpy array [..., T, d] whose row t sits at position t."""
    import torch
    cos, sin = rope_tables(x.shape[-1], x.shape[-2], theta)
    return apply_rope(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), cos, sin).numpy()


def forward_capture(cfg, w, ids):
    """One window of token ids (positions 0..T-1). Returns (per-layer dict of numpy arrays
    q [H,T,d] post-RoPE, k_pre/k_post/v [KV,T,d]; mean next-token cross-entropy in nats)."""
    import torch
    import torch.nn.functional as F
    s = shape_of(cfg)
    H, KV, d, hidden = s["heads"], s["kv_heads"], s["head_dim"], s["hidden"]
    eps = cfg.get("rms_norm_eps", 1e-6)
    idx = torch.tensor(ids, dtype=torch.long)
    T = len(ids)
    cos, sin = rope_tables(d, T, cfg.get("rope_theta", 10000.0))

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    h = w["model.embed_tokens.weight"][idx]
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    captured = []
    with torch.no_grad():
        for layer in range(s["layers"]):
            p = f"model.layers.{layer}"
            x = rms(h, w[f"{p}.input_layernorm.weight"])
            q = (x @ w[f"{p}.self_attn.q_proj.weight"].T).view(T, H, d).transpose(0, 1)
            k = (x @ w[f"{p}.self_attn.k_proj.weight"].T).view(T, KV, d).transpose(0, 1)
            v = (x @ w[f"{p}.self_attn.v_proj.weight"].T).view(T, KV, d).transpose(0, 1)
            q_post = apply_rope(q, cos, sin)
            k_post = apply_rope(k, cos, sin)
            captured.append({"q": q_post.numpy().copy(), "k_pre": k.numpy().copy(), "k_post": k_post.numpy().copy(),
                             "v": v.numpy().copy()})
            rep = H // KV
            kk = k_post.repeat_interleave(rep, dim=0)
            vv = v.repeat_interleave(rep, dim=0)
            scores = (q_post @ kk.transpose(-2, -1)) / math.sqrt(d)
            y = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1) @ vv
            h = h + y.transpose(0, 1).reshape(T, H * d) @ w[f"{p}.self_attn.o_proj.weight"].T
            x = rms(h, w[f"{p}.post_attention_layernorm.weight"])
            gate = x @ w[f"{p}.mlp.gate_proj.weight"].T
            up = x @ w[f"{p}.mlp.up_proj.weight"].T
            h = h + (F.silu(gate) * up) @ w[f"{p}.mlp.down_proj.weight"].T
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        logits = rms(h, w["model.norm.weight"]) @ head.T
        loss = F.cross_entropy(logits[:-1], idx[1:]).item()
    return captured, loss


def capture_windows(cfg, w, windows):
    """Stacks the windows: {name: array [L, heads, W, T, d]} and the mean loss per window."""
    per_window, losses = [], []
    for ids in windows:
        cap, loss = forward_capture(cfg, w, ids)
        per_window.append(cap)
        losses.append(loss)
    out = {}
    for name in ("q", "k_pre", "k_post", "v"):
        out[name] = np.stack([np.stack([cap[layer][name] for cap in per_window], axis=1)
                              for layer in range(len(per_window[0]))])
    return out, losses
