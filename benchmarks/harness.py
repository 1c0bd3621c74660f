"""A small GPU benchmark harness: CUDA events, warm-up, medians over rotating fresh inputs.

Each benchmark script builds a list of :class:`Case`, times every method on each, and prints a
table with the median time, achieved bandwidth and the ratio against the anchor method (the
first method) measured in the same run on the same card.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

__all__ = [
    "Case",
    "card_name",
    "parse_args",
    "print_table",
    "profile_step",
    "run_cases",
    "time_cuda",
]


@dataclass
class Case:
    """One problem size: ``make_inputs(seed)`` returns fresh argument tuples for the methods."""

    label: str
    make_inputs: Callable[[int], tuple]
    bytes_moved: int  # the fewest bytes the operation must read plus write
    results: dict[str, float] = field(default_factory=dict)  # method -> median ms


def time_cuda(
    fn: Callable[..., object], input_sets: Sequence[tuple], warmup: int = 10, reps: int = 50
) -> tuple[float, float]:
    """Median and spread (max-min of two halves' medians) in ms of ``fn(*inputs)``.

    ``input_sets`` rotate so that repeated calls do not just measure the L2 cache.
    """
    for i in range(warmup):
        fn(*input_sets[i % len(input_sets)])
    torch.cuda.synchronize()
    times = []
    for i in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        args = input_sets[i % len(input_sets)]
        start.record()
        fn(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    half = len(times) // 2
    spread = abs(statistics.median(times[:half]) - statistics.median(times[half:]))
    return statistics.median(times), spread


def profile_step(
    fn: Callable[..., object], args: tuple, steps: int = 20, warmup: int = 5
) -> tuple[float, float, dict[str, float]]:
    """Where one call's time goes: ``(host_us, event_us, kernels)``.

    host_us is the wall time to issue one call without synchronizing (back-to-back calls), event_us
    the CUDA-event time per call over the same back-to-back calls, and ``kernels`` maps each
    device kernel's name to its device time per call (torch.profiler).  Host >> kernels means the
    call is bound by its launch overhead; kernels near event_us means by the GPU work itself.
    """
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        fn(*args)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0 = time.perf_counter()
    start.record()
    for _ in range(steps):
        fn(*args)
    end.record()
    host_us = (time.perf_counter() - t0) / steps * 1e6
    end.synchronize()
    event_us = start.elapsed_time(end) / steps * 1e3
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn(*args)
        torch.cuda.synchronize()
    kernels: dict[str, float] = {}
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            key = ev.name.split("(")[0][:48]
            kernels[key] = kernels.get(key, 0.0) + ev.device_time / steps
    return host_us, event_us, kernels


def run_cases(
    cases: Sequence[Case],
    methods: dict[str, Callable[..., object]],
    rotate: int = 3,
    warmup: int = 10,
    reps: int = 50,
) -> None:
    """Time every method on every case; the first method is the anchor."""
    for case in cases:
        inputs = [case.make_inputs(seed) for seed in range(rotate)]
        for name, fn in methods.items():
            case.results[name], _ = time_cuda(fn, inputs, warmup=warmup, reps=reps)
        del inputs
        torch.cuda.empty_cache()


def card_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"


def print_table(title: str, cases: Sequence[Case], methods: Sequence[str]) -> str:
    """Print (and return) a markdown table: median ms, GB/s and speed-up over the anchor."""
    anchor = methods[0]
    lines = [
        f"### {title}",
        "",
        f"card: {card_name()}; date: {datetime.date.today()}; torch {torch.__version__}",
        "",
        "| case | method | median ms | GB/s | speed-up vs " + anchor + " |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for case in cases:
        for name in methods:
            ms = case.results[name]
            gbs = case.bytes_moved / (ms * 1e-3) / 1e9
            ratio = case.results[anchor] / ms
            lines.append(f"| {case.label} | {name} | {ms:.4f} | {gbs:.0f} | {ratio:.2f}x |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    return parser.parse_args()
