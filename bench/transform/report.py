"""Markdown tables of a transform-study JSON (study.py): per model and tensor, per layer and head, the
attention errors and the ratios at head_dim 128. The verdict and discussion are written by hand in
the results file around these tables.

  /usr/bin/python3 bench/transform/report.py bench/results/transform-study.json [--summary] > tables.md
"""
import json
import math
import sys

TENSOR_NAMES = {"k_post": "K post-RoPE (stored)", "k_pre": "K pre-RoPE", "v": "V"}


def f(x, digits=4):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def dbf(x):
    return "–" if x is None else f"{x:+.2f}"


def bits_label(bits, d):
    return f"{bits:g} (+{16 / d:g} scale = {bits + 16 / d:g})"


def overall_table(r):
    out = ["| model | tensor | code bits/dim (total/elem) | flat NMSE meas. (pred.) | flat + mean | PCA meas. (pred.) | gain dB | no 1-bit | shared scale only | guarded | random-token text: flat → PCA (guarded) | random tokens, calibrated on random tokens (guarded) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        d = m["shape"]["head_dim"]
        for t, o in m["overall"].items():
            for bits, p in o["points"].items():
                s = p["shift"]
                out.append(f"| {name} | {TENSOR_NAMES[t]} | {bits_label(float(bits), d)} | {f(p['flat'])} ({f(p['predicted_flat'])}) | {dbf(p['gain_db_mean_only'])} dB | "
                           f"{f(p['pca'])} ({f(p['predicted_pca'])}) | **{dbf(p['gain_db'])}** | {dbf(p['gain_db_no1bit'])} | {dbf(p['gain_db_shared_scale'])} | {dbf(p['gain_db_guarded'])} | "
                           f"{f(s['flat'])} → {f(s['pca'])} ({f(s['pca_guarded'])}): {dbf(s['gain_db'])} ({dbf(s['gain_db_guarded'])}) dB | "
                           f"{dbf(s['gain_db_randcal'])} ({dbf(s['gain_db_randcal_guarded'])}) dB |")
    return "\n".join(out)


def needed_table(r):
    out = ["| model | tensor | flat code bits/dim | PCA needs, measured (predicted) | no 1-bit, measured (predicted) |",
           "|---|---|---|---|---|"]
    for name, m in r["models"].items():
        lowest = m["sweep_budgets_bits_per_dim"][0]

        def need(x):  # the sweep's lowest budget already matches: an upper bound
            return "–" if x is None else ("≤ " if x <= lowest + 1e-9 else "") + f(x, 3)

        for t, o in m["overall"].items():
            for bits in o["points"]:
                nb, pb = o["needed_bits"], o.get("needed_bits_predicted", {})
                out.append(f"| {name} | {TENSOR_NAMES[t]} | {bits} | {need(nb.get(f'pca@{bits}'))} ({need(pb.get(f'pca@{bits}'))}) | "
                           f"{need(nb.get(f'pca_no1bit@{bits}'))} ({need(pb.get(f'pca_no1bit@{bits}'))}) |")
    return "\n".join(out)


def ratio_table(r):
    q = r["ratio_at_head_dim_128"]
    out = [f"head_dim {q['headDim']}, {q['kvHeads']} KV heads, pages of {q['pageTokens']} tokens (16-byte header), one FP16 scale per vector, no eviction, long context:",
           "", "| format | K code bits/vector | V code bits/vector | ratio vs FP16 |", "|---|---|---|---|"]
    for row in q["rows"]:
        out.append(f"| {row['name']} | {row['keyCodeBits']} | {row['valueCodeBits']} | {row['ratio']:.2f}× |")
    return "\n".join(out)


def attention_table(r):
    out = ["| model | code bits/dim | keys / values | logit RMSE (logit std) | out rel. MSE, K only | V only | K and V | attention KL per row (nats) |",
           "|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        for bits, schemes in m.get("attention", {}).items():
            for scheme, a in schemes.items():
                out.append(f"| {name} | {bits} | {scheme} | {f(a['logit_rmse'])} ({f(a['logit_std'], 3)}) | {f(a['out_rel_mse_k'])} | {f(a['out_rel_mse_v'])} | "
                           f"{f(a['out_rel_mse_kv'])} | {f(a['kl_per_row'])} |")
    return "\n".join(out)


def head_table(r, model, bits="2.0"):
    m = r["models"][model]
    out = ["| tensor | layer.head | eff. rank | AM/GM gain dB | mean energy | band RMS² (calib, ×mean) | rates (own-scale bands) | flat NMSE | PCA meas. (pred.) | gain dB | on random tokens dB (guarded) | needed bits/dim |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t, heads in m["heads"].items():
        for e in heads:
            p = e["points"][bits]
            pca = p["pca"]
            bands = " ".join(f"{v:.2g}" for v in e["band_var_calib"])
            own = f" ({','.join(map(str, pca['own_scale_bands']))})" if pca["own_scale_bands"] else ""
            out.append(f"| {TENSOR_NAMES[t]} | {e['layer']}.{e['head']} | {f(e['effective_rank'], 3)} | {f(e['coding_gain_db'], 3)} | {f(e['mean_energy_fraction'], 2)} | {bands} | "
                       f"{''.join(map(str, pca['rates']))}{own} | {f(p['flat']['measured'])} | {f(pca['measured'])} ({f(pca['predicted'])}) | {dbf(p['gain_db']['measured'])} | "
                       f"{dbf(p['gain_db']['shift_measured'])} ({dbf(p['gain_db']['guarded_shift_measured'])}) | {f(e['needed_bits'][f'pca@{float(bits)}']['measured'], 3)} |")
    return "\n".join(out)


def worse_list(r):
    """Per model, tensor and test text: how many (head, rate) cells the unguarded PCA scheme loses to
    Hadamard, the worst loss, and the worst guarded result."""
    out = ["| model | tensor | test text | cells worse / all (heads × 3 rates) | worst unguarded, dB | worst guarded, dB |", "|---|---|---|---|---|---|"]
    splits = (("held-out text", "measured", "measured"), ("random tokens (calibrated on text)", "shift_measured", "shift_measured"),
              ("random tokens (calibrated on random tokens)", "random_calibrated_on_random", "shift_measured"))
    for name, m in r["models"].items():
        for t, heads in m["heads"].items():
            for label, key, flat_key in splits:
                guard_key = "guarded_" + key if key != "random_calibrated_on_random" else key + "_guarded"
                cells = [(p["flat"][flat_key], p["pca"][key], p["pca"][guard_key]) for e in heads for p in e["points"].values()]
                worse = sum(1 for flat, pca, _ in cells if pca > flat)
                worst = min(10 * math.log10(flat / pca) for flat, pca, _ in cells)
                worst_guarded = min(10 * math.log10(flat / g) for flat, _, g in cells)
                out.append(f"| {name} | {TENSOR_NAMES[t]} | {label} | {worse} / {len(cells)} | {worst:+.2f} | {worst_guarded:+.2f} |")
    return "\n".join(out)


def main():
    r = json.load(open(sys.argv[1]))
    summary = "--summary" in sys.argv[2:]  # overall, needed bits and the losses only
    print("### Overall (pooled over layers and heads; NMSE = Σ‖x − x̂‖² / Σ‖x‖²)\n")
    print(overall_table(r))
    print("\n### Code bits per dim the PCA scheme needs to match the flat scheme's NMSE\n")
    print(needed_table(r))
    if not summary:
        print("\n### Ratio at head_dim 128\n")
        print(ratio_table(r))
        print("\n### Attention errors (queries of the same forward pass, held-out text)\n")
        print(attention_table(r))
        for model in r["models"]:
            print(f"\n### {model}, per layer and KV head, at 2 code bits/dim\n")
            print(head_table(r, model))
    print("\n### Where the calibrated basis is worse than Hadamard (per layer, head and rate)\n")
    print(worse_list(r))


if __name__ == "__main__":
    main()
