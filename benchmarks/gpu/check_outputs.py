#!/usr/bin/env python3
"""Checks that a running `greenbatch-runtime serve` computes what eager PyTorch computes: posts
batches of different sizes with different random inputs (so a replayed CUDA graph that read a stale
input, or a padded batch that leaked rows, would show) and compares each response with the same
TorchScript file run eagerly on the CPU. Tolerance allows for TF32 convolutions on the GPU.

  python3 check_outputs.py --url http://127.0.0.1:18081 --name conv_bn --model runtime/tests/fixtures/conv_bn.pt --shape 3,16,16
Exit 0 when every case matches.
"""
import argparse
import json
import sys
import urllib.request

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--shape", default="3,16,16")
    ap.add_argument("--batches", default="1,3,8,1")
    a = ap.parse_args()
    shape = [int(d) for d in a.shape.split(",")]
    module = torch.jit.load(a.model, map_location="cpu").eval()
    failures = 0
    for i, batch in enumerate(int(b) for b in a.batches.split(",")):
        torch.manual_seed(100 + i)
        x = torch.randn([batch] + shape)
        with torch.inference_mode():
            expected = module(x)
        if isinstance(expected, (tuple, list)):
            expected = expected[0]
        body = json.dumps({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": list(x.shape),
                                       "data": x.flatten().tolist()}]}).encode()
        req = urllib.request.Request(f"{a.url}/v2/models/{a.name}/infer", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            out = json.load(urllib.request.urlopen(req, timeout=60))["outputs"][0]
        except Exception as e:  # an HTTP error, a refused connection, a malformed reply
            detail = e.read().decode(errors="replace") if hasattr(e, "read") else ""
            print(f"FAIL case {i}: batch {batch}: {e} {detail}")
            failures += 1
            continue
        got = torch.tensor(out["data"]).reshape(out["shape"])
        ok = list(got.shape) == list(expected.shape) and torch.allclose(got, expected, atol=1e-3, rtol=1e-2)
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else float("nan")
        print(f"{'ok  ' if ok else 'FAIL'} case {i}: batch {batch}, max |diff| {diff:.2e}")
        failures += not ok
    print("all outputs match eager PyTorch" if failures == 0 else f"{failures} case(s) differ")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
