"""Fixtures for the Node tests that check the Python side of the model export against the TypeScript one
(test/quality/reference-export.test.ts). No torch: bpe.py and safetensors_io.py only (numpy for the latter).

    python3 interop.py tokenizer DIR          # small BPE on 3 train speeches -> DIR/tokenizer.json, DIR/encoded.json
    python3 interop.py write-safetensors PATH # a few tensors with known values -> PATH
    python3 interop.py read-safetensors PATH  # prints {name: {dtype, shape, values}} as JSON
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bpe  # noqa: E402
import corpus  # noqa: E402
import safetensors_io  # noqa: E402

# Text the corpus lacks as well as text it has: digits, accents, curly quotes, runs of spaces, newlines.
PROBES = [
    "The pass key is 48213. Remember it.",
    "What is the secret word for the red door? The secret word for the red door is pelican",
    "Caf\u00e9 na\u00efve \u201cquoted\u201d \u2014 dash \u00bd  two  spaces\n\nnew paragraph\ttab 1,234.56 U.S.A.",
]


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "tokenizer":
        train = [s["text"] for s in corpus.read_corpus(os.path.join(HERE, "data", "sotu-train.txt.xz"))[:3]]
        heldout = [s["text"] for s in corpus.read_corpus(os.path.join(HERE, "data", "sotu-heldout.txt.xz"))]
        tok = bpe.ByteLevelBPE(bpe.train_bpe(train, 600))
        os.makedirs(path, exist_ok=True)
        tok.save(os.path.join(path, "tokenizer.json"))
        texts = PROBES + [heldout[-1][:20000]]
        encoded = [{"text": t, "ids": tok.encode(t), "decoded": tok.decode(tok.encode(t))} for t in texts]
        with open(os.path.join(path, "encoded.json"), "w", encoding="utf-8") as f:
            json.dump({"vocab_size": tok.vocab_size(), "merges": len(tok.merges), "samples": encoded}, f)
    elif cmd == "write-safetensors":
        import numpy as np
        tensors = {
            "model.norm.weight": np.array([1.0, -2.5, 0.333251953125, 65504.0], dtype=np.float16),
            "model.embed_tokens.weight": (np.arange(12, dtype=np.float32).reshape(3, 4) / 8 - 0.5).astype(np.float16),
            "scale": np.array([[1.5, -0.25]], dtype=np.float32),
        }
        safetensors_io.save(tensors, path, metadata={"format": "pt"})
    elif cmd == "read-safetensors":
        tensors, metadata = safetensors_io.load(path)
        json.dump({"metadata": metadata, "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape),
                                                          "values": [float(x) for x in v.reshape(-1)]}
                                                      for k, v in tensors.items()}}, sys.stdout)
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main()
