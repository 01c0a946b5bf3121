"""Where a checkpoint's retrieval fails: the first answer token (finding the needle) or the tokens after it
(copying the rest), by prompt length and kind. The training report's accuracy needs every answer token;
this splits it, which is what told us (2026-12-02) that the CPU models found a secret word's first piece
in about half of 256-token prompts but copied no pass key: the pass key's digits are one token each, and
after the first digit the model guessed.

    /usr/bin/python3 bench/model/retrieval_diag.py MODEL_DIR [--lengths 256,1024] [--samples 10] [--show 2]

MODEL_DIR holds config.json, model.safetensors and tokenizer.json (train.py's export or a checkpoint of it).
Samples come from the held-out speeches (seed 777, depths spread over 10-90%, kinds alternating).
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bpe  # noqa: E402
import corpus  # noqa: E402
import passkey  # noqa: E402
import safetensors_io  # noqa: E402
import train  # noqa: E402


def model_args(config):
    """train.py's model options from an exported config.json."""
    return argparse.Namespace(
        vocab_size=config["vocab_size"], hidden=config["hidden_size"], layers=config["num_hidden_layers"],
        heads=config["num_attention_heads"], kv_heads=config["num_key_value_heads"], head_dim=config["head_dim"],
        intermediate=config["intermediate_size"], rope_theta=config["rope_theta"], rms_eps=config["rms_norm_eps"],
        context=config["max_position_embeddings"], dropout=0.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--lengths", default="256,1024", help="prompt lengths in tokens")
    p.add_argument("--samples", type=int, default=10, help="samples per length")
    p.add_argument("--show", type=int, default=0, help="print this many answers token by token (per length)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    with open(os.path.join(a.model, "config.json")) as f:
        args = model_args(json.load(f))
    model = train.build_model_classes(torch, nn, F)(args)
    weights, _ = safetensors_io.load(os.path.join(a.model, "model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(v).float() for k, v in weights.items()}, strict=False)
    model.eval()
    tok = bpe.ByteLevelBPE.load(os.path.join(a.model, "tokenizer.json"))
    heldout = [s["text"] for s in corpus.read_corpus(os.path.join(HERE, "data", "sotu-heldout.txt.xz"))]
    count = lambda text: len(tok.encode(text))  # noqa: E731
    for length in (int(v) for v in a.lengths.split(",")):
        stats = {kind: {"n": 0, "first": 0, "rest": 0, "exact": 0} for kind in passkey.RETRIEVAL_KINDS}
        for i in range(a.samples):
            kind = passkey.RETRIEVAL_KINDS[i % 2]
            depth = 0.1 + 0.8 * i / max(1, a.samples - 1)
            s = passkey.make_retrieval_sample(passkey.derive_seed(777, i + length), heldout, length - 16, depth, kind, count)
            ids, a0, a1 = train.retrieval_row_ids(tok, s, 0)
            x = torch.tensor(ids[:a1])[None]
            with torch.no_grad():
                predicted = model(x[:, :-1])[0, a0 - 1:a1 - 1].argmax(-1)  # teacher-forced greedy answer
            truth = x[0, a0:a1]
            st = stats[kind]
            st["n"] += 1
            st["first"] += int(predicted[0] == truth[0])
            st["rest"] += int(torch.equal(predicted[1:], truth[1:]))
            st["exact"] += int(torch.equal(predicted, truth))
            if i < a.show:
                print(f"  {kind} @ {depth:.0%}: {[tok.decode([t]) for t in truth.tolist()]} -> "
                      f"{[tok.decode([t]) for t in predicted.tolist()]}")
        parts = [f"{k}: first token {v['first']}/{v['n']}, rest {v['rest']}/{v['n']}, exact {v['exact']}/{v['n']}"
                 for k, v in stats.items()]
        print(f"{length} tokens: " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
