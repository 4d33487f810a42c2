#!/usr/bin/env python3
"""The baseline for greenbatch-runtime's profiler: the same measurement protocol in Python torch eager.

Per batch size: warm-up, then windows of at least --window-seconds whose edges are aligned to NVML
energy-counter updates (as the Rust protocol does), latency of every forward pass with device
synchronisation, median and spread of joules per inference, up to 3 rounds while the spread is wide
(each round judged on its own; the row is the first tight round, or the tightest), and a window's
last batch counted as far as the counter's reading covers it (runtime/src/protocol.rs, `moved_within`).

  python3 python_eager_sweep.py --model resnet50 --device cuda --out py.json
  python3 python_eager_sweep.py --model resnet18 --device cpu --meter none --threads 2 --out py.json
  python3 python_eager_sweep.py --model shufflenet_v2_x0_5 --trace-to shufflenet.pt   # TorchScript for the Rust runtime
"""
import argparse
import json
import math
import sys
import time

import torch
import torchvision


def quantile(xs, q):
    xs = sorted(x for x in xs if math.isfinite(x))
    if not xs:
        return None
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def spread(xs):
    med = quantile(xs, 0.5)
    if not xs or not med or med <= 0:
        return None
    return (max(xs) - min(xs)) / med


class NvmlCounter:
    def __init__(self, index=0):
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        self.nvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.joules()

    def joules(self):
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0

    # The counter moves every ~100 ms (docs/reference/gpu-energy.md), as the runtime's meter says.
    update_period = 0.1


def moved_within(s, e, period):
    """When a reading that moves every `period` last moved, given it moved during the batch [s, e]."""
    return e - min(period, e - s) / 2


def await_tick(meter, timeout=0.3):
    first = meter.joules()
    start = time.perf_counter()
    while True:
        j = meter.joules()
        now = time.perf_counter()
        if j != first or now - start >= timeout:
            return j, now
        time.sleep(0.0002)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="torchvision model name, e.g. resnet50")
    ap.add_argument("--shape", default="3,224,224")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", default="1,2,4,8,16,32,64,128,256")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--window-seconds", type=float, default=0.5)
    ap.add_argument("--warmup-seconds", type=float, default=1.0)
    ap.add_argument("--max-spread", type=float, default=0.1)
    ap.add_argument("--meter", choices=["nvml", "none"], default="nvml")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out")
    ap.add_argument("--trace-to", help="save the model traced to TorchScript here and exit")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = [int(d) for d in args.shape.split(",")]
    # Traced on the CPU: the runtime maps the weights onto its own device when it loads the file.
    device = torch.device("cpu" if args.trace_to else args.device)
    torch.backends.cudnn.benchmark = True
    model = getattr(torchvision.models, args.model)(weights=None).eval().to(device)
    if args.trace_to:
        with torch.inference_mode():
            traced = torch.jit.trace(model, torch.randn(1, *shape, device=device))
        traced.save(args.trace_to)
        print(f"saved {args.trace_to}", file=sys.stderr)
        return

    meter = NvmlCounter() if args.meter == "nvml" else None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    result = {"model": args.model, "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": []}
    if meter:
        watts = []
        for _ in range(args.windows):
            j0, t0 = await_tick(meter)
            time.sleep(args.window_seconds)
            j1, t1 = await_tick(meter)
            watts.append((j1 - j0) / (t1 - t0))
        result["idle_w"] = quantile(watts, 0.5)

    with torch.inference_mode():
        for b in [int(x) for x in args.batches.split(",")]:
            x = torch.randn(b, *shape, device=device)
            start, n = time.perf_counter(), 0
            while n < 2 or time.perf_counter() - start < args.warmup_seconds:
                model(x)
                sync()
                n += 1
            rounds, tightest = 0, None
            while True:
                rounds += 1
                lat, windows = [], []
                for _ in range(args.windows):
                    edge = await_tick(meter) if meter else None
                    t0 = edge[1] if edge else time.perf_counter()
                    batches, pending, end = 0, None, None
                    while True:
                        s = time.perf_counter()
                        model(x)
                        sync()
                        e = time.perf_counter()
                        lat.append((e - s) * 1000)
                        batches += 1
                        if e - t0 < args.window_seconds:
                            continue
                        if not meter:
                            end = (None, e)
                            break
                        j = meter.joules()
                        if pending is None:
                            pending = j
                        elif j != pending:
                            moved = moved_within(s, e, meter.update_period)
                            share = (moved - s) / (e - s) if e > s else 1.0
                            end = (j - edge[0], moved, share)
                            break
                        elif e - t0 >= args.window_seconds + 0.3:
                            end = (j - edge[0], e, 1.0)
                            break
                    share = end[2] if len(end) > 2 else 1.0
                    windows.append({"items": (batches - 1 + share) * b, "seconds": end[1] - t0, "joules": end[0]})
                jpi = [w["joules"] / w["items"] for w in windows if w["joules"] is not None]
                sp = spread(jpi) if jpi else None
                if sp is None or sp <= args.max_spread:
                    break
                if tightest is None or sp < tightest[0]:
                    tightest = (sp, lat, windows, jpi)
                if rounds >= 3:
                    sp, lat, windows, jpi = tightest
                    break
            items = sum(w["items"] for w in windows)
            secs = sum(w["seconds"] for w in windows)
            row = {
                "batch": b,
                "p50_ms": quantile(lat, 0.5),
                "p95_ms": quantile(lat, 0.95),
                "p99_ms": quantile(lat, 0.99),
                "per_s": items / secs,
                "j_per_inf": quantile(jpi, 0.5) if jpi else None,
                "spread": sp,
                "windows": len(windows),
            }
            result["rows"].append(row)
            print(json.dumps(row), file=sys.stderr)
            del x
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
