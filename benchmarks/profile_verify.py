"""Where the bound engine spends its time and memory: issue 15's "profile first".

Run on a CUDA machine from the repository root:
    PYTHONPATH=. python benchmarks/profile_verify.py [--layers 1 2 4 6] [--top 12]

Issue 15's model: ``TransformerClassifier(dim=64, heads=4, ffn_dim=128, layernorm="no_var",
activation="relu")`` with seeded random weights, 16 tokens, one word in an l2 ball of eps 0.01,
float64 on the GPU.  For each method and depth it prints the wall time of one call (after a
warm-up call), the peak of allocated GPU memory, and the operators that dominate GPU time
(torch.profiler, self CUDA time) with their share of the total.
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch
from torch.profiler import ProfilerActivity, profile

from toolkit.verify import LpBall, TransformerClassifier, bounds

TOKENS = 16
EPS = 0.01
METHODS = ("ibp", "forward", "crown", "alpha-crown")


def make_case(layers: int, device: torch.device) -> tuple[TransformerClassifier, torch.Tensor]:
    torch.manual_seed(layers)
    model = TransformerClassifier(
        1000, dim=64, layers=layers, heads=4, ffn_dim=128, layernorm="no_var", activation="relu"
    )
    model = model.to(device=device, dtype=torch.float64).eval()
    ids = torch.randint(1, 1000, (1, TOKENS), device=device)
    with torch.no_grad():
        e = model.embed(ids)
    return model, e


def profile_case(model, e, layers: int, method: str, top: int) -> None:
    spec = LpBall(EPS, p=2, positions=[TOKENS // 2])
    kw = {"alpha_steps": 10} if method == "alpha-crown" else {}
    bounds(model, e, spec, method, **kw)  # warm-up: kernels, caches
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    bounds(model, e, spec, method, **kw)
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) * 1e3
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        bounds(model, e, spec, method, **kw)
        torch.cuda.synchronize()
    events = [ev for ev in prof.key_averages() if ev.self_device_time_total > 0]
    total = sum(ev.self_device_time_total for ev in events) or 1.0
    events.sort(key=lambda ev: ev.self_device_time_total, reverse=True)
    print(
        f"\n#### {method}, {layers} layer(s): "
        f"{wall:.1f} ms wall, GPU busy {total / 1e3:.1f} ms, peak {peak:.0f} MiB\n"
    )
    print("| op | calls | self GPU ms | share |")
    print("| --- | ---: | ---: | ---: |")
    for ev in events[:top]:
        print(
            f"| {ev.key[:60]} | {ev.count} | {ev.self_device_time_total / 1e3:.2f} | "
            f"{100 * ev.self_device_time_total / total:.1f}% |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 4, 6])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("profile_verify: needs a CUDA GPU")
    device = torch.device("cuda")
    print(
        f"### verify profile\n\ncard: {torch.cuda.get_device_name()}; date: "
        f"{datetime.date.today()}; torch {torch.__version__}; float64, {TOKENS} tokens, "
        f"l2 eps {EPS} on one word"
    )
    for layers in args.layers:
        model, e = make_case(layers, device)
        for method in args.methods:
            try:
                profile_case(model, e, layers, method, args.top)
            except torch.cuda.OutOfMemoryError:
                print(f"\n#### {method}, {layers} layer(s): out of memory")
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
