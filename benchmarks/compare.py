#!/usr/bin/env python3
"""Side-by-side comparison of greenbatch-runtime profiles with the Python eager baseline (same run)
and, optionally, the H200 reference sweep. Prints ratios per batch size as a Markdown table.

  python3 compare.py --python py.json --rust rust1.json [--rust2 rust2.json] [--anchor h200.json --anchor-model resnet50]
"""
import argparse
import json


def rust_rows(path):
    status = json.load(open(path))
    return {r["batchSize"]: r for r in status["table"]["rows"]}, status


def fmt(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True)
    ap.add_argument("--rust", required=True)
    ap.add_argument("--rust2")
    ap.add_argument("--anchor")
    ap.add_argument("--anchor-model")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    py = {r["batch"]: r for r in json.load(open(a.python))["rows"]}
    rust, status = rust_rows(a.rust)
    rust2 = rust_rows(a.rust2)[0] if a.rust2 else {}
    anchor = {}
    if a.anchor:
        anchor = {r["batch"]: r for r in json.load(open(a.anchor))["models"][a.anchor_model]}
    on = status.get("measuredOn", {})
    print(f"\n### {a.title} — {on.get('deviceName')} ({on.get('device')}), meter {status['table']['meter']}\n")
    print("| batch | py p50 ms | rust p50 ms | latency ratio rust/py | py mJ/inf | rust mJ/inf | J ratio rust/py | anchor mJ | rust/anchor | run2 mJ | run1 vs run2 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    lat_ratios, j_ratios, anchor_dev, repeat_dev = [], [], [], []
    for b in sorted(rust):
        r, p = rust[b], py.get(b)
        rl = r["latencyMs"]["p50"]
        pl = p["p50_ms"] if p else None
        lr = rl / pl if pl else None
        rj = r.get("joulesPerInference")
        pj = p.get("j_per_inf") if p else None
        jr = rj / pj if (rj and pj) else None
        an = anchor.get(b, {}).get("j_per_img_counter")
        ar = rj / an if (rj and an) else None
        r2 = rust2.get(b, {}).get("joulesPerInference")
        rd = abs(rj - r2) / rj if (rj and r2) else None
        for lst, v in ((lat_ratios, lr), (j_ratios, jr), (anchor_dev, ar), (repeat_dev, rd)):
            if v is not None:
                lst.append(v)
        print(
            f"| {b} | {fmt(pl, 3)} | {fmt(rl, 3)} | {fmt(lr)} | {fmt(pj and pj * 1000, 1)} | {fmt(rj and rj * 1000, 1)} | {fmt(jr)} "
            f"| {fmt(an and an * 1000, 1)} | {fmt(ar)} | {fmt(r2 and r2 * 1000, 1)} | {fmt(rd and rd * 100, 1)}% |"
        )
    if lat_ratios:
        print(f"\nlatency ratio rust/python: max {max(lat_ratios):.2f}, rows <= 1.0: {sum(x <= 1.0 for x in lat_ratios)}/{len(lat_ratios)}")
    if j_ratios:
        print(f"J/inference ratio rust/python: min {min(j_ratios):.2f}, max {max(j_ratios):.2f}")
    if anchor_dev and "H200" not in str(on.get("deviceName")):
        print(f"J/inference vs H200 anchor: not comparable, measured on {on.get('deviceName')} (the anchor is an H200's)")
    elif anchor_dev:
        within = sum(abs(x - 1) <= 0.10 for x in anchor_dev)
        print(f"J/inference vs H200 anchor: rows within +-10%: {within}/{len(anchor_dev)} (ratios {', '.join(f'{x:.2f}' for x in anchor_dev)})")
    if repeat_dev:
        within = sum(x <= 0.03 for x in repeat_dev)
        print(f"back-to-back profiles: rows within 3%: {within}/{len(repeat_dev)} (max diff {max(repeat_dev) * 100:.1f}%)")


if __name__ == "__main__":
    main()
