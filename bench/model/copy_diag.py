"""Copy-task diagnostic (lab only): does a copying circuit form on random-token rows, and is it tied to position?

Trains the CPU recipe's Llama (bench/model/train.py's classes: 4 layers, hidden 256, 4/2 heads of 64,
vocab 2048) on rows of uniformly random tokens, with the loss on the copy targets only, and every 100
steps evaluates the copy loss at row lengths 128/256/512/1024 (ln 2048 = 7.62: no copying). A circuit
that reads content carries to other lengths; one that learned "look back a fixed distance" does not.

    /usr/bin/python3 bench/model/copy_diag.py --task offset --T 64 --B 32 --steps 1000
    /usr/bin/python3 bench/model/copy_diag.py --task band --gap 16 --T 128 --B 16 --steps 400

Tasks: offset (one span of T/16..T/3 tokens written twice at random places), band (a span of about half
the row written twice, the second after a random 0..--gap tokens: the old warm-up's form plus jitter),
multi (several 4-24-token spans, each repeated after a 0-48-token gap). Results: bench/model/README.md.
"""
import sys, math, random, time, argparse, types
sys.path.insert(0, __import__("os").path.dirname(__file__))
import torch, torch.nn as nn, torch.nn.functional as F
import train
p = argparse.ArgumentParser()
p.add_argument("--T", type=int, default=256); p.add_argument("--B", type=int, default=8)
p.add_argument("--lr", type=float, default=1e-3); p.add_argument("--beta2", type=float, default=0.999)
p.add_argument("--steps", type=int, default=600); p.add_argument("--task", choices=("offset", "band", "multi"), default="offset")
p.add_argument("--threads", type=int, default=1); p.add_argument("--seed", type=int, default=1)
p.add_argument("--warmup", type=int, default=30); p.add_argument("--layers", type=int, default=4)
p.add_argument("--save", default=""); p.add_argument("--gap", type=int, default=16)
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
V = 2048
c = types.SimpleNamespace(vocab_size=V, hidden=256, layers=a.layers, heads=4, kv_heads=2, head_dim=64,
    intermediate=512, rms_eps=1e-5, rope_theta=10000.0, context=2048, dropout=0.0)
model = train.build_model_classes(torch, nn, F)(c)
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, a.beta2), weight_decay=0.1)
rng = random.Random(a.seed)

def row(T):
    x = [rng.randrange(1, V) for _ in range(T + 1)]
    m = [False] * T
    if a.task == "offset":   # one span, twice, at random places (offset varies row to row)
        L = rng.randint(max(4, T // 16), T // 3)
        p1 = rng.randint(0, T + 1 - 2 * L)
        p2 = rng.randint(p1 + L, T + 1 - L)
        x[p2:p2 + L] = x[p1:p1 + L]
        for t in range(p2, p2 + L - 1): m[t] = True   # target t predicts x[t+1]
    elif a.task == "band":   # one span twice, the second after a random gap of 0..G noise tokens
        G = a.gap
        L = (T + 1 - G) // 2
        g = rng.randint(0, G)
        x[L + g:2 * L + g] = x[0:L]
        for t in range(L + g, 2 * L + g - 1): m[t] = True
    elif a.task == "multi":  # several short spans each repeated once
        t = 0
        while True:
            L = rng.randint(4, 24); gap = rng.randint(0, 48)
            if t + 2 * L + gap > T + 1: break
            x[t + L + gap:t + 2 * L + gap] = x[t:t + L]
            for u in range(t + L + gap, t + 2 * L + gap - 1): m[u] = True
            t += 2 * L + gap + rng.randint(0, 16)
    return x, m

def batch(T, B):
    rows = [row(T) for _ in range(B)]
    x = torch.tensor([r[0] for r in rows]); m = torch.tensor([r[1] for r in rows])
    return x[:, :-1], x[:, 1:], m

def copy_loss(T, B=8, n=2):
    model.eval(); tot = 0.0
    with torch.no_grad():
        for _ in range(n):
            i, t, m = batch(T, B)
            ce = F.cross_entropy(model(i).reshape(-1, V), t.reshape(-1), reduction="none").view(t.shape)
            tot += (ce * m).sum().item() / m.sum().item()
    model.train(); return tot / n

t0 = time.time()
for step in range(1, a.steps + 1):
    lr = a.lr * min(1.0, step / a.warmup)
    for g in opt.param_groups: g["lr"] = lr
    i, t, m = batch(a.T, a.B)
    ce = F.cross_entropy(model(i).reshape(-1, V), t.reshape(-1), reduction="none").view(t.shape)
    loss = (ce * m).sum() / m.sum()      # copy targets only
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    if step % 25 == 0:
        msg = f"step {step} {time.time()-t0:.0f}s train {loss.item():.2f}"
        if step % 100 == 0:
            msg += " | eval " + " ".join(f"T{T}={copy_loss(T):.2f}" for T in (128, 256, 512, 1024))
        print(msg, flush=True)
if a.save: torch.save(model.state_dict(), a.save)
