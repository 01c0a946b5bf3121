"""PyTorch scaled_dot_product_attention on FP16 KV: the baseline of the attention benchmark.

Same shapes as bench/gpu/driver.mjs (Llama-3.1-8B layer: 32 query heads, 8 KV heads, head_dim 128,
one decode query), CUDA-event medians, K/V rotating over enough copies to exceed L2.
    python3 bench/gpu/sdpa.py --out DIR [--quick]      -> DIR/sdpa.json
"""
import argparse
import json
import os
import statistics

import torch
import torch.nn.functional as F


def time_ms(fn, sets, warmup, reps):
    for i in range(warmup):
        fn(i % sets)
    torch.cuda.synchronize()
    times = []
    for i in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(i % sets)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return times


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    l2 = getattr(props, "L2_cache_size", 50 << 20)
    contexts = [4096, 32768] if args.quick else [4096, 16384, 32768, 65536, 131072]
    batches = [1, 8] if args.quick else [1, 8, 32]
    rows = []
    free, _ = torch.cuda.mem_get_info()
    for T in contexts:
        for B in batches:
            kv_bytes = B * 8 * T * 128 * 2 * 2
            if kv_bytes * 1.2 > free * 0.8:
                rows.append({"tokens": T, "batch": B, "skipped": "does not fit"})
                continue
            sets = max(1, min(64, (2 * l2) // kv_bytes + 1))
            q = torch.randn(B, 32, 1, 128, device=dev, dtype=torch.float16)
            ks = [torch.randn(B, 8, T, 128, device=dev, dtype=torch.float16) for _ in range(sets)]
            vs = [torch.randn(B, 8, T, 128, device=dev, dtype=torch.float16) for _ in range(sets)]
            result = {"tokens": T, "batch": B, "bytesRead": kv_bytes}
            for label, backends in (("flash", [torch.nn.attention.SDPBackend.FLASH_ATTENTION]), ("auto", None)):
                try:
                    if backends is None:
                        fn = lambda i: F.scaled_dot_product_attention(q, ks[i], vs[i], enable_gqa=True)
                        ms = time_ms(fn, sets, 5, 10 if args.quick else 30)
                    else:
                        with torch.nn.attention.sdpa_kernel(backends):
                            fn = lambda i: F.scaled_dot_product_attention(q, ks[i], vs[i], enable_gqa=True)
                            ms = time_ms(fn, sets, 5, 10 if args.quick else 30)
                    med = statistics.median(ms)
                    result[label] = {"medianMs": med, "gbPerSecond": kv_bytes / (med * 1e6)}
                except Exception as e:  # a backend that refuses this shape is reported, not fatal
                    result[label] = {"error": str(e).splitlines()[0][:200]}
            rows.append(result)
            del ks, vs, q
            torch.cuda.empty_cache()
    info = {"torch": torch.__version__, "device": props.name, "rows": rows}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "sdpa.json"), "w") as f:
        json.dump(info, f, indent=2)
    for r in rows:
        print("sdpa", r)


if __name__ == "__main__":
    main()
