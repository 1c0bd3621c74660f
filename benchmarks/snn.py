"""Multi-step LIF forward+backward: the fused kernels against SpikingJelly, snnTorch and torch.

Run on a CUDA machine from the repository root (SpikingJelly 2.0 and snnTorch 1.0 installed):
    PYTHONPATH=. python benchmarks/snn.py [--quick] [--compile] [--epoch] [--profile]
                                          [--kernels] [--no-compare]

N = 2^20 neurons, T in {4, 8, 16, 32}, float32 and float16, ATan surrogate (alpha = 2),
tau = 2, hard reset to 0, forward then backward with a random upstream gradient.
Methods (the first is the anchor):
  spikingjelly   SpikingJelly 2.0 ``LIFNode(step_mode="m")`` (it picks its own CUDA kernels)
  snntorch       snnTorch 1.0 ``Leaky`` in a Python loop over T (its leak is
                 ``beta * V + X`` with beta = 1 - 1/tau: the same work, not the same equation)
  torch-loop     the toolkit's reference path on the GPU (an unrolled autograd graph)
  torch-compile  the same loop through ``torch.compile`` (with --compile)
  toolkit-cuda   ``lif_multistep(backend="cuda")``: kernels/lif.cu
bytes_moved counts the fewest bytes a fused forward+backward must move: read X, write S
(forward); read dL/dS and X, write dL/dX (backward); the spike bits both ways.
With --kernels, the backward kernel alone at T = 4, 8, 16, 32 (no autograd): the general
kernel (options read at run time) against the specialised instances (options fixed at compile
time; dL/dS loaded chunk by chunk, or a chunk ahead), and the forward kernel alone with the
bandwidth floors of keeping the spike bits (as now) against saving H (as SpikingJelly does).
--no-compare skips the comparison with the other libraries.
With --epoch, also one BPTT training epoch of the default spiking CNN on digits, ours vs the
same network with SpikingJelly's neurons.  With --profile, where one call's time goes (host
issue time, event time, kernel time) for ours and SpikingJelly's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, parse_args, print_table, profile_step, run_cases, time_cuda

from toolkit.snn import lif_multistep

N = 1 << 20


def _fwd_bwd(fn):
    def run(x, g):
        y = fn(x)
        torch.autograd.grad(y, x, g)

    return run


def spikingjelly_method():
    from spikingjelly.activation_based import functional, neuron, surrogate

    node = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m").cuda()

    def fn(x):
        functional.reset_net(node)
        return node(x)

    return fn


def snntorch_method():
    import snntorch as snn
    from snntorch import surrogate

    leaky = snn.Leaky(beta=0.5, spike_grad=surrogate.atan(alpha=2.0), reset_mechanism="zero")

    def fn(x):
        mem = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            spk, mem = leaky(x[t], mem)
            out.append(spk)
        return torch.stack(out)

    return fn


def reference(x):
    return lif_multistep(x, backend="cpu")


def toolkit_cuda(x):
    return lif_multistep(x, backend="cuda")


def kernel_benchmark(args) -> list[str]:
    methods = {}
    for name, make in (("spikingjelly", spikingjelly_method), ("snntorch", snntorch_method)):
        try:
            methods[name] = _fwd_bwd(make())
        except ImportError as exc:
            print(f"skipping {name}: {exc}", flush=True)
    methods["torch-loop"] = _fwd_bwd(reference)
    if args.compile:
        methods["torch-compile"] = _fwd_bwd(torch.compile(reference, dynamic=False))
    methods["toolkit-cuda"] = _fwd_bwd(toolkit_cuda)
    # Smoke check: every method runs, and the LIF methods fire the same spikes as ours
    # (snnTorch's Leaky is a different equation, so only its running is checked).
    x = (torch.rand(4, 4096, device="cuda") * 1.5).requires_grad_()
    ours = toolkit_cuda(x).detach()
    for name in list(methods):
        try:
            methods[name](x, torch.randn_like(x))
        except Exception as exc:  # keep the other methods' numbers
            print(f"dropping {name}: {type(exc).__name__}: {exc}", flush=True)
            del methods[name]
    if "spikingjelly" in methods:
        same = torch.equal(spikingjelly_method()(x).detach(), ours)
        print(f"SpikingJelly fires the same spikes as toolkit-cuda: {same}", flush=True)
    tables = []
    steps = (4, 32) if args.quick else (4, 8, 16, 32)
    for dtype in (torch.float32, torch.float16):
        cases = []
        for t in steps:

            def make(seed, t=t, dtype=dtype):
                g = torch.Generator(device="cuda").manual_seed(seed)
                x = torch.rand((t, N), generator=g, device="cuda", dtype=dtype) * 1.5
                up = torch.randn((t, N), generator=g, device="cuda", dtype=dtype)
                return x.requires_grad_(), up

            b = torch.finfo(dtype).bits // 8
            cases.append(Case(f"T={t} N=2^20 {dtype}", make, 5 * t * N * b + 2 * (t * N // 8)))
        run_cases(cases, methods, warmup=args.warmup, reps=args.reps)
        tables.append(print_table(f"LIF forward+backward, {dtype}", cases, list(methods)))
    return tables


def profile_benchmark() -> str:
    """Host issue time vs event time vs kernel time per forward+backward call."""
    methods = {"toolkit-cuda": _fwd_bwd(toolkit_cuda)}
    try:
        methods["spikingjelly"] = _fwd_bwd(spikingjelly_method())
    except ImportError:
        pass
    lines = [
        "",
        "| case | method | host us | event us | kernels us | kernels (us/call) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for dtype in (torch.float32, torch.float16):
        for t in (4, 32):
            g = torch.Generator(device="cuda").manual_seed(3)
            x = (torch.rand((t, N), generator=g, device="cuda", dtype=dtype) * 1.5).requires_grad_()
            up = torch.randn((t, N), generator=g, device="cuda", dtype=dtype)
            for name, fn in methods.items():
                host, event, kernels = profile_step(fn, (x, up))
                tops = "; ".join(
                    f"{k} {v:.0f}" for k, v in sorted(kernels.items(), key=lambda kv: -kv[1])[:4]
                )
                lines.append(
                    f"| T={t} N=2^20 {dtype} | {name} | {host:.0f} | {event:.0f} | "
                    f"{sum(kernels.values()):.0f} | {tops} |"
                )
                print(lines[-1], flush=True)
    return "\n".join(lines)


def _backward_launcher(L, p, name):
    """One backward launch of the instance ``name`` on a case's inputs."""

    def run(x, bits, gs, out, spikes):
        L._launch_backward(x, None, 0.0, p, bits, gs, None, out, None, instance=name)

    return run


def backward_kernel_benchmark(args) -> list[str]:
    """The backward kernel alone (no autograd, no host work in the timed region beyond one
    launch): the general kernel (every option read at run time) against the specialised
    instances, with dL/dS loaded chunk by chunk and a chunk ahead, on the same inputs."""
    from toolkit.snn import _lif_cuda as L
    from toolkit.snn.neuron import LIFParams

    p = LIFParams.make()  # tau 2, hard reset to 0, atan, decay_input: the tables' setting
    forms = {
        "general": {"specialised": False},
        "fixed": {"ahead": False},
        "fixed-ahead": {"ahead": True},
    }
    tables = []
    for dtype in (torch.float32, torch.float16):
        b = torch.finfo(dtype).bits // 8
        cases, case_names, fwd_lines = [], [], []
        for t in (4, 8, 16, 32):
            names = {
                k: L._backward_name(
                    dtype, t, p, False, N, v.get("specialised", True), v.get("ahead")
                )
                for k, v in forms.items()
            }
            case_names.append(names)

            def make(seed, t=t, dtype=dtype):
                g = torch.Generator(device="cuda").manual_seed(seed)
                x = torch.rand((t, N), generator=g, device="cuda", dtype=dtype) * 1.5
                gs = torch.randn((t, N), generator=g, device="cuda", dtype=dtype)
                spikes = torch.empty_like(x)
                bits = torch.empty(((t + 7) // 8, N), dtype=torch.uint8, device="cuda")
                L.lif_forward_kernel(x, None, 0.0, p, spikes, bits)
                return x, bits, gs, torch.empty_like(x), spikes

            # backward bytes: read X, the bits and dL/dS, write dL/dX
            case = Case(f"T={t} N=2^20 {dtype} backward", make, 3 * t * N * b + (t + 7) // 8 * N)
            cases.append(case)
            # every form gives the same dL/dX (max |difference| against the general kernel)
            x, bits, gs, _, spikes = make(11)
            outs = {}
            for k, name in names.items():
                out = torch.full_like(x, float("nan"))
                L._launch_backward(x, None, 0.0, p, bits, gs, None, out, None, instance=name)
                outs[k] = out
            torch.cuda.synchronize()
            diffs = ", ".join(
                f"{k} {float((o.float() - outs['general'].float()).abs().max()):.1e}"
                for k, o in outs.items()
                if k != "general"
            )
            floor = case.bytes_moved / 4.8e6
            print(
                f"T={t} {dtype}: {names}; max |dL/dX - general|: {diffs}; "
                f"backward floor at 4.8 TB/s {floor:.0f} us",
                flush=True,
            )
            fwd_ms, _ = time_cuda(
                lambda x=x, s=spikes, bits=bits: L._launch_forward(x, None, 0.0, p, s, bits, None),
                [()],
                warmup=args.warmup,
                reps=args.reps,
            )
            plane, bitplanes = t * N * b, (t + 7) // 8 * N
            fwd_bytes = 2 * plane + bitplanes  # read X, write S and the bits
            # forward+backward as is: 5 planes + the bits twice; saving H as SpikingJelly does:
            # the forward writes H too (3 planes, no bits: S = H >= Vth), the backward reads H
            # and dL/dS and writes dL/dX (3 planes)
            fwd_lines.append(
                f"| T={t} | {fwd_ms * 1e3:.0f} | {fwd_bytes / fwd_ms / 1e6:.0f} | "
                f"{fwd_bytes / 4.8e6:.0f} | {(5 * plane + 2 * bitplanes) / 4.8e6:.0f} | "
                f"{6 * plane / 4.8e6:.0f} |"
            )
            del x, bits, gs, spikes, outs
        for case, names in zip(cases, case_names, strict=True):
            run_cases(
                [case],
                {k: _backward_launcher(L, p, name) for k, name in names.items()},
                warmup=args.warmup,
                reps=args.reps,
            )
        tables.append(
            print_table(f"LIF backward kernel alone, {dtype} (us = ms * 1000)", cases, list(forms))
        )
        text = "\n".join(
            [
                "",
                f"LIF forward kernel alone, {dtype}, and bandwidth floors at 4.8 TB/s: the "
                "forward's, and forward+backward's as it is (X read twice, S written, the bits "
                "both ways) against saving H in the forward as SpikingJelly does (H written and "
                "read back instead of X and the bits):",
                "",
                "| T | forward us | GB/s | forward floor us | fwd+bwd floor us, as is | "
                "fwd+bwd floor us, saving H |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |",
                *fwd_lines,
            ]
        )
        print(text, flush=True)
        tables.append(text)
    return tables


def epoch_benchmark() -> str:
    from spikingjelly.activation_based import functional, neuron, surrogate

    from toolkit.data import digits
    from toolkit.snn.network import spiking_cnn, train_bptt
    from toolkit.snn.neuron import LIFNeuron

    data = digits(seed=0)
    lines = [
        "",
        "| network | epoch seconds (median of 3) | test accuracy after 3 |",
        "| --- | ---: | ---: |",
    ]
    for label in ("toolkit LIF (kernels/lif.cu)", "SpikingJelly LIFNode"):
        net = spiking_cnn(steps=8).cuda()
        if label.startswith("SpikingJelly"):
            for i, m in enumerate(net.body):
                if isinstance(m, LIFNeuron):
                    net.body[i] = neuron.LIFNode(
                        tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m"
                    ).cuda()
            forward = net.forward

            def reset_forward(x, forward=forward, net=net):
                functional.reset_net(net)
                return forward(x)

            net.forward = reset_forward  # type: ignore[method-assign]
        times = []
        for _ in range(3):
            torch.cuda.synchronize()
            start = time.perf_counter()
            r = train_bptt(
                net,
                data.x_train,
                data.y_train,
                data.x_test,
                data.y_test,
                epochs=1,
                batch_size=64,
                progress=False,
            )
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        times.sort()
        lines.append(f"| {label} | {times[1]:.3f} | {r.final_test_accuracy:.3f} |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--epoch", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--kernels", action="store_true")
    parser.add_argument("--no-compare", action="store_true")
    extra, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    args = parse_args(__doc__)
    args.compile, args.epoch = extra.compile, extra.epoch
    if not torch.cuda.is_available():
        sys.exit("benchmarks/snn.py: needs a CUDA GPU")
    if not extra.no_compare:
        kernel_benchmark(args)
    if extra.kernels:
        backward_kernel_benchmark(args)
    if extra.profile:
        profile_benchmark()
    if args.epoch:
        epoch_benchmark()


if __name__ == "__main__":
    main()
