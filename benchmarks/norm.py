"""toolkit.norm on the GPU: sampled batch norm layers against cuDNN's BatchNorm2d.

Run on a CUDA machine from the repository root:  PYTHONPATH=. python benchmarks/norm.py

Part 1, one layer forward + backward at the ResNet-50 shapes with batch 128, float32 and
float16 (the anchor is ``torch.nn.BatchNorm2d``, i.e. cuDNN):
  cudnn-bn     nn.BatchNorm2d
  fused-bn     BatchSamplingBN2d(sample_ratio=1.0): our fused kernels on the full batch
  bs-1/4       BatchSamplingBN2d(sample_ratio=0.25)
  bs-1/8       BatchSamplingBN2d(sample_ratio=0.125)
  fs-1/4       FeatureSamplingBN2d(patch_ratio=0.25)
  smn          SecondMomentNorm2d (fused kernels, no mean)
  smn-torch    SecondMomentNorm2d on the torch reference path (unfused, for scale)
Part 2, one training step (forward, backward, SGD update) of a ResNet-18-style network on
batch 128 of 3x112x112 images with each variant in place of nn.BatchNorm2d.

The bandwidth floor printed per shape is 8 passes over the tensor (forward: read x twice,
write y; backward: read dy and x twice, write dx) at the copy bandwidth measured in the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import card_name, profile_step, time_cuda

from toolkit.norm import BatchSamplingBN2d, FeatureSamplingBN2d, SecondMomentNorm2d

SHAPES = [(128, 64, 112, 112), (128, 256, 56, 56), (128, 512, 28, 28), (128, 1024, 14, 14),
          (128, 2048, 7, 7)]  # fmt: skip
#: H100 cuDNN anchors from the issue (forward + backward ms, float32).
ISSUE_H100 = {64: 3.6, 256: 1.57, 512: 0.80, 1024: 0.51, 2048: 0.43}

LayerFactory = Callable[[int], nn.Module]
VARIANTS: dict[str, LayerFactory] = {
    "cudnn-bn": lambda c: nn.BatchNorm2d(c),
    "fused-bn": lambda c: BatchSamplingBN2d(c, sample_ratio=1.0, seed=0),
    "bs-1/4": lambda c: BatchSamplingBN2d(c, sample_ratio=0.25, seed=0),
    "bs-1/8": lambda c: BatchSamplingBN2d(c, sample_ratio=0.125, seed=0),
    "fs-1/4": lambda c: FeatureSamplingBN2d(c, patch_ratio=0.25, seed=0),
    "smn": lambda c: SecondMomentNorm2d(c),
}


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write counted)."""
    a = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    b = torch.empty_like(a)
    ms, _ = time_cuda(lambda: b.copy_(a), [()], warmup=3, reps=10)
    return 2 * a.numel() * 4 / (ms * 1e-3)


def layer_step(layer: nn.Module) -> Callable[..., None]:
    def run(x: torch.Tensor, dy: torch.Tensor) -> None:
        y = layer(x)
        y.backward(dy)

    return run


def bench_layers(reps: int, warmup: int, shapes: list, log: list) -> list[dict]:
    rows = []
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s", flush=True)
    for dtype in (torch.float32, torch.float16):
        for shape in shapes:
            c = shape[1]
            inputs = []
            for seed in range(2):
                g = torch.Generator(device="cuda").manual_seed(seed)
                x = torch.randn(shape, device="cuda", dtype=dtype, generator=g)
                dy = torch.randn(shape, device="cuda", dtype=dtype, generator=g)
                inputs.append((x.requires_grad_(), dy))
            floor_ms = 8 * inputs[0][0].numel() * dtype.itemsize / bandwidth * 1e3
            row = {"dtype": str(dtype)[6:], "shape": list(shape), "floor_ms": floor_ms}
            methods = dict(VARIANTS)
            methods["smn-torch"] = VARIANTS["smn"]
            for name, make in methods.items():
                layer = make(c).cuda()
                step = layer_step(layer)
                if name == "smn-torch":
                    from toolkit import use_backend

                    def step(x, dy, inner=step):
                        with use_backend("cpu"):
                            inner(x, dy)

                try:
                    ms, _ = time_cuda(step, inputs, warmup=warmup, reps=reps)
                    row[name] = ms
                except Exception as exc:  # a failing variant must not hide the others
                    row[name] = None
                    log.append(f"{name} {shape} {dtype}: {type(exc).__name__}: {exc}")
                    print(log[-1], flush=True)
                for x, _ in inputs:
                    x.grad = None
                del layer
            rows.append(row)
            print(json.dumps(row), flush=True)
            del inputs
            torch.cuda.empty_cache()
    return rows


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: LayerFactory) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = norm(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.short is None else self.short(x)))


def resnet18(norm: LayerFactory, classes: int = 100) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), norm(64), nn.ReLU(),
                               nn.MaxPool2d(3, 2, 1)]  # fmt: skip
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride, norm), Block(cout, cout, 1, norm)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


TRAIN_BATCH = 128
TRAIN_SIZE = 112


def bench_training(
    reps: int, log: list, batch: int = TRAIN_BATCH, size: int = TRAIN_SIZE
) -> list[dict]:
    rows = []
    variants = {k: v for k, v in VARIANTS.items() if k != "bs-1/8"}
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(batch, 3, size, size, device="cuda", dtype=dtype)
        y = torch.randint(0, 100, (batch,), device="cuda")
        row: dict = {"dtype": str(dtype)[6:], "batch": batch, "size": size}
        for name, make in variants.items():
            torch.manual_seed(0)
            model = resnet18(make).cuda().to(dtype)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

            def step(model=model, opt=opt, x=x, y=y) -> None:
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x).float(), y)
                loss.backward()
                opt.step()

            try:
                ms, _ = time_cuda(step, [()], warmup=5, reps=reps)
                row[name] = ms
            except Exception as exc:
                row[name] = None
                log.append(f"train {name} {dtype}: {type(exc).__name__}: {exc}")
                print(log[-1], flush=True)
            del model, opt
            torch.cuda.empty_cache()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


PROFILE_SHAPES = [(128, 64, 112, 112), (128, 256, 56, 56), (128, 2048, 7, 7)]
PROFILE_VARIANTS = ("cudnn-bn", "fused-bn", "bs-1/4", "fs-1/4", "smn")


def profile_layers(steps: int = 20) -> str:
    """Where a layer step's time goes: the host's time to issue one step (no sync), the CUDA-
    event time of a step, and the sum of its kernels' device times (torch.profiler), with the
    kernels that take it.  Host >> kernels means launch overhead; kernels near the event time
    means the GPU work itself."""
    lines = [
        "Per-step profile (forward + backward of one layer): host = wall time to issue one step "
        "without synchronizing; event = CUDA-event time per step over "
        f"{steps} back-to-back steps; kernels = sum of device kernel times per step "
        "(including torch's x.grad accumulation, the same for every variant).  "
        "host < event: GPU-bound (the goal: host well under 100 us); host ~ event: host-bound.",
        "",
        "| dtype | shape | variant | host us | event us | kernels us | top kernels (us/step) |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for dtype in (torch.float32, torch.float16):
        for shape in PROFILE_SHAPES:
            g = torch.Generator(device="cuda").manual_seed(7)
            x = torch.randn(shape, device="cuda", dtype=dtype, generator=g).requires_grad_()
            dy = torch.randn(shape, device="cuda", dtype=dtype, generator=g)
            for name in PROFILE_VARIANTS:
                layer = VARIANTS[name](shape[1]).cuda()
                host_us, event_us, kernels = profile_step(layer_step(layer), (x, dy), steps)
                total = sum(kernels.values())
                top = sorted(kernels.items(), key=lambda kv: -kv[1])[:5]
                tops = "; ".join(f"{k} {v:.0f}" for k, v in top)
                fmt = f"({', '.join(map(str, shape))})"
                lines.append(
                    f"| {str(dtype)[6:]} | {fmt} | {name} | {host_us:.0f} | {event_us:.0f} | "
                    f"{total:.0f} | {tops} |"
                )
                print(lines[-1], flush=True)
                x.grad = None
                del layer
            del x, dy
            torch.cuda.empty_cache()
    return "\n".join(lines)


def markdown(layer_rows: list[dict], train_rows: list[dict]) -> str:
    names = ["cudnn-bn", *[k for k in VARIANTS if k != "cudnn-bn"], "smn-torch"]
    lines = [
        f"card: {card_name()}; torch {torch.__version__}",
        "",
        "Layer forward + backward, median ms (speed-up over cudnn-bn in brackets); "
        "floor = 8 passes at the measured copy bandwidth.",
        "",
        "| dtype | shape | floor | " + " | ".join(names) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in names) + " |",
    ]
    fmt_shape = "({}, {}, {}, {})"
    for r in layer_rows:
        anchor = r.get("cudnn-bn")
        cells = []
        for n in names:
            ms = r.get(n)
            if ms is None:
                cells.append("error")
            elif anchor:
                cells.append(f"{ms:.3f} ({anchor / ms:.2f}x)")
            else:
                cells.append(f"{ms:.3f}")
        lines.append(
            f"| {r['dtype']} | {fmt_shape.format(*r['shape'])} | {r['floor_ms']:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "SMN / BN time with the same fused kernels (the isometry paper expects about 0.7):",
        "",
        "| dtype | shape | smn / fused-bn |",
        "| --- | --- | ---: |",
    ]
    for r in layer_rows:
        smn, bn = r.get("smn"), r.get("fused-bn")
        ratio = f"{smn / bn:.2f}" if smn and bn else "n/a"
        lines.append(f"| {r['dtype']} | {fmt_shape.format(*r['shape'])} | {ratio} |")
    lines += ["", *targets(layer_rows)]
    tnames = [k for k in VARIANTS if k != "bs-1/8"]
    lines += ["", f"ResNet-18-style training step (forward, backward, SGD), batch {TRAIN_BATCH} of "
              f"3x{TRAIN_SIZE}x{TRAIN_SIZE} images, 20 normalization layers, median ms "
              "(speed-up over cudnn-bn):", ""]  # fmt: skip
    if not train_rows:
        lines.append("skipped (--no-train)")
        return "\n".join(lines)
    lines += [
        "| dtype | " + " | ".join(tnames) + " |",
        "| --- | " + " | ".join("---:" for _ in tnames) + " |",
    ]
    for r in train_rows:
        anchor = r.get("cudnn-bn")
        cells = [
            "error"
            if r.get(n) is None
            else f"{r[n]:.2f} ({anchor / r[n]:.2f}x)"
            if anchor
            else f"{r[n]:.2f}"
            for n in tnames
        ]
        lines.append(f"| {r['dtype']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(layer_rows: list[dict]) -> list[str]:
    """Issue 13's layer targets, one verdict per shape and dtype: speed-up = cudnn-bn ms /
    variant ms (above 1 is faster than cuDNN)."""
    lines = [
        "Targets (issue 13), speed-up over cudnn-bn = cudnn ms / variant ms:",
        "- BS at ratio <= 1/4 (bs-1/4 and bs-1/8): >= 1.5x at every shape and both dtypes;",
        "- fused full-batch BN (fused-bn): >= 1.0x (at least matches cuDNN);",
        "- SMN / BN time (smn / fused-bn) measured; the isometry paper expects about 0.7.",
        "",
        "| dtype | shape | bs-1/4 | bs-1/8 | BS >= 1.5x | fused-bn | fused >= 1.0x | smn/bn |",
        "| --- | --- | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    met = {"bs": 0, "fused": 0}
    for r in layer_rows:
        anchor = r.get("cudnn-bn")

        def speed(name: str, r: dict = r, anchor: float | None = anchor) -> float | None:
            ms = r.get(name)
            return anchor / ms if anchor and ms else None

        bs = [speed("bs-1/4"), speed("bs-1/8")]
        fused = speed("fused-bn")
        bs_ok = all(v is not None and v >= 1.5 for v in bs)
        fused_ok = fused is not None and fused >= 1.0
        met["bs"] += bs_ok
        met["fused"] += fused_ok
        smn, bn = r.get("smn"), r.get("fused-bn")
        cells = [f"{v:.2f}x" if v is not None else "error" for v in (*bs, fused)]
        lines.append(
            f"| {r['dtype']} | ({', '.join(map(str, r['shape']))}) | {cells[0]} | {cells[1]} | "
            f"{'met' if bs_ok else 'MISSED'} | {cells[2]} | {'met' if fused_ok else 'MISSED'} | "
            f"{f'{smn / bn:.2f}' if smn and bn else 'n/a'} |"
        )
    n = len(layer_rows)
    lines += [
        "",
        f"BS >= 1.5x met at {met['bs']} of {n} (shape, dtype) cases; fused-bn >= 1.0x met at "
        f"{met['fused']} of {n}.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="two shapes, fewer repetitions")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--profile", action="store_true", help="also profile a few shapes")
    parser.add_argument("--no-train", action="store_true", help="skip the training steps")
    parser.add_argument("--train-reps", type=int, default=10, help="timed training steps")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/norm.py: needs a CUDA GPU")
    torch.backends.cudnn.benchmark = True
    shapes = SHAPES[::2] if args.quick else SHAPES
    log: list[str] = []
    start = time.time()
    layer_rows = bench_layers(args.reps, args.warmup, shapes, log)
    # printed now as well: a time-out later must not lose the layer tables
    print(markdown(layer_rows, []).rsplit("\n\nResNet-18", 1)[0] + "\n", flush=True)
    if args.profile:
        try:
            profile = profile_layers()
        except Exception as exc:  # the profile must not lose the timings above
            profile = ""
            log.append(f"profile: {type(exc).__name__}: {exc}")
    train_rows = [] if args.no_train else bench_training(args.train_reps, log)
    text = markdown(layer_rows, train_rows)
    if args.profile:
        text += "\n\n" + profile
    print(text)
    print(f"total {time.time() - start:.0f} s; errors: {log or 'none'}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "norm_bench.md").write_text(text + "\n")
    (out / "norm_bench.json").write_text(
        json.dumps({"layers": layer_rows, "train": train_rows, "errors": log}, indent=1)
    )


if __name__ == "__main__":
    main()
