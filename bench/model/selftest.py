"""Checks train.py's torch-free parts on any machine (no torch needed): argument defaults, model size,
retrieval rows, reports. Run by test/data/train-script.test.ts; also `python3 bench/model/selftest.py`."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import corpus  # noqa: E402
import passkey  # noqa: E402
import train  # noqa: E402


class WordTokenizer:
    """Stand-in for bpe.ByteLevelBPE: one id per space-separated piece, space attached in front."""

    def encode(self, text):
        return [hash(w) % 1000 + 1 for w in text.replace(" ", "\0 ").split("\0") if w]


def main():
    args = train.parse_args(["--out", "/tmp/unused", "--recipe", "gpu"])
    total = train.expected_parameters(args)
    assert 15e6 <= total <= 25e6, total
    assert args.head_dim == 128 and args.kv_heads == 2 and 2 <= args.heads // args.kv_heads <= 4
    assert 6 <= args.layers <= 8 and 4096 <= args.vocab_size <= 8192 and args.context == 4096
    assert total * 2 + 2e6 <= 50e6, "fp16 weights plus tokenizer must stay under 50 MB"
    assert args.train_seconds <= 480 and args.deadline_seconds <= 570
    smoke = train.parse_args(["--out", "/tmp/unused", "--smoke", "--recipe", "gpu"])
    assert max(smoke.passkey_contexts) <= smoke.context
    cpu = train.parse_args(["--out", "/tmp/unused", "--recipe", "cpu", "--layers", "5"])
    assert cpu.head_dim == 64 and cpu.heads == 4 and cpu.kv_heads == 2 and cpu.hidden == 256 and cpu.layers == 5
    assert cpu.phases == [(1024, 0.5), (1536, 0.2), (2048, 0.3)]
    assert train.phase_at(cpu.phases, 0.49) == 1024 and train.phase_at(cpu.phases, 0.51) == 1536
    assert len(cpu.copy_warmup_stage_steps) == len(cpu.copy_warmup_context.split(",")) and cpu.needles_max > 1
    one = train.parse_args(["--out", "/tmp/unused", "--recipe", "cpu", "--copy-warmup-stage-steps", "50"])
    assert one.copy_warmup_stage_steps == [50] * 4
    assert cpu.lr == 1e-3 and cpu.beta2 == 0.999 and cpu.copy_warmup_steps > 0 and cpu.warmup_rows == "retrieval"
    assert train.parse_args(["--out", "/tmp/unused", "--recipe", "cpu", "--warmup-rows", "copy"]).warmup_rows == "copy"
    import random as _random
    row, unit = train.repeated_span_row(None, 129, _random.Random(1), 0, (63, 63), 2048)
    assert len(row) == 129 and unit == 64 and row[63] == 0 and row[:63] == row[64:127], "a copy row is one span written twice"
    assert train.phase_at(cpu.phases, 0.86) == 2048 and train.phase_at(cpu.phases, 1.0) == 2048
    assert train.expected_parameters(cpu) * 2 + 1e6 <= 25e6, "the CPU model must fit the 25 MB asked for in issue 15"

    config = train.hf_config(args, 0)
    for key in ("hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "num_hidden_layers",
                "vocab_size", "rope_theta", "max_position_embeddings", "tie_word_embeddings"):
        assert key in config, key

    train_texts = [s["text"] for s in corpus.read_corpus(os.path.join(HERE, "data", "sotu-train.txt.xz"))]
    tok = WordTokenizer()
    t0 = time.time()
    n = 200
    for i in range(n):
        sample = passkey.make_training_sample(passkey.derive_seed(1234, i), train_texts, 400, 16000)
        assert sample["prompt"].count(sample["value"]) == 1
        assert len(sample["prompt"]) <= 16000 and 0.05 <= sample["depth"] <= 0.95
        ids, a0, a1 = train.retrieval_row_ids(tok, sample, 0)
        assert ids[0] == 0 and ids[-1] == 0 and 0 < a0 < a1 == len(ids) - 1
        assert ids[a0:a1] == tok.encode(sample["answer"])
    per_sample_ms = (time.time() - t0) / n * 1e3
    counts = set()
    for i in range(100):
        sample = passkey.make_multi_needle_sample(passkey.derive_seed(99, i), train_texts, 400, 6000, 4)
        values = sample["values"]
        counts.add(len(values))
        full = "".join(text for text, _ in sample["segments"])
        assert len(values) == len(set(values)) and len(full) <= 6000
        for v in values:  # stated once in the passage, answered once after its question
            assert full.count(v) == 2, (v, full.count(v))
        ids, spans = train.training_row_ids(tok, sample["segments"], 0)
        assert ids[0] == 0 and ids[-1] == 0 and len(spans) == len(values)
        assert [ids[a0:a1] for a0, a1 in spans] == [tok.encode(" " + v) for v in values]
        questions = [text for text, is_answer in sample["segments"] if not is_answer]
        assert len(questions) == len(values) and all(q.endswith(" is") and "\n\nWhat is the " in q for q in questions)
    assert counts == {1, 2, 3, 4}, counts
    short = passkey.make_multi_needle_sample(7, train_texts, 400, 2000, 1)
    assert len(short["values"]) == 1

    report = {
        "model": config, "parameters": {"total": total, "embedding": args.vocab_size * args.hidden},
        "tokenizer": {"vocab_size": 8192, "chars_per_token_heldout": 4.3},
        "data": {"train_speeches": 209, "train_tokens": 1, "heldout_speeches": 24, "heldout_tokens": 1},
        "training": {"steps": 1, "tokens_seen": 1, "epochs": 0.1, "seconds": 1.0, "stop_reason": "x", "best_step": 1,
                     "history": [{"step": 1, "seconds": 1.0, "train_loss": 5.0, "answer_loss": None, "val_loss": 5.0,
                                  "lr": 1e-3}]},
        "validation": {"perplexity": 30.0, "loss": 3.4, "tokens": 100},
        "retrieval": {"overall": 0.5, "samples": 2, "by_context": {"1024": 0.5}, "by_depth": {"0.1": 0.5},
                      "by_kind": {"passkey": 0.5}},
        "hf_check": "ok", "environment": {"torch": "x", "gpu": "y"}, "total_seconds": 1.0, "date_utc": "d",
        "command": "c", "hyperparameters": {"seed": 1},
    }
    assert "validation perplexity" in train.markdown_report(report)
    print(f"selftest ok: {total:,} parameters, training retrieval sample {per_sample_ms:.1f} ms")


if __name__ == "__main__":
    main()
