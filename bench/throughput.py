"""Crafting throughput: the engine against the raw limit and a reference-style loop, one device, one run.

All rates are in image-passes per second: one image through one ensemble member, forward plus
backward to the input (the unit ``engine.attacks.passes_per_image`` counts). The same K
checkpoints (random-initialised CIFAR ResNet18, saved to a temporary folder), the same batch and
resolution 32 are used everywhere:

(a) raw: a tight loop of member forward + ``torch.autograd.grad`` to the input, with the
    engine's members and speed settings (``engine.device``) -- the limit;
(b) engine: ``engine.attacks.craft`` with sep-fa and sep-fa-vr;
(c) reference-style: fp32, contiguous, each checkpoint re-read from disk (torch.load +
    load_state_dict) for every pass, inputs copied to the device and gradients back for every
    pass, as the public SEP scripts do (their data-loader re-iteration is left out, which
    favours (c)).

Also: the raw rate under every combination of the speed settings (memory format, bf16 autocast,
BatchNorm folding), the training rate under the same, and optionally torch.compile.
Measurements are interleaved in rounds (each round runs every case once) and the best round of
each case is kept, so that the ratios are fair on a shared machine.

    python -m bench.throughput                      # CPU: K=8, width 16, batch 128
    python -m bench.throughput --compile            # also torch.compile'd members
    python -m bench.throughput --bf16               # also bf16 on a CPU that emulates it
    python -m bench.throughput --profile            # torch profiler of crafting -> profile.md
    python -m bench.throughput --width 64 --batch 1024   # the GPU defaults on CUDA
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import models
from bench.common import write_result
from engine import device as dev
from engine.attacks import craft, passes_per_image
from engine.batchnorm_folding import freeze
from engine.config import preset
from engine.features import class_means, target_classes
from engine.training import TrainSettings, train_classifier

NUM_CLASSES = 10


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_avg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = dev.pick_device(args.device)
        cuda = self.device.type == "cuda"
        self.width = args.width or (64 if cuda else 16)
        self.batch = args.batch or (1024 if cuda else 128)
        self.k = args.k
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        self.checkpoints = [models.save_checkpoint(models.build_model("resnet18", NUM_CLASSES, self.width)) for _ in range(self.k)]
        self.images = torch.randint(0, 256, (self.batch, 3, 32, 32), dtype=torch.uint8, generator=gen)
        self.labels = torch.randint(0, NUM_CLASSES, (self.batch,), generator=gen)
        self.targets = target_classes(self.labels, NUM_CLASSES)
        nets = self.fresh_nets()
        self.means = class_means(nets, self.images, self.labels, NUM_CLASSES, self.device).cpu()
        self.tmp = tempfile.TemporaryDirectory(prefix="sepguard-throughput-")
        self.files = []
        for i, c in enumerate(self.checkpoints):
            path = Path(self.tmp.name) / f"ckpt-{i:02d}.pt"
            torch.save(c["state_dict"], path)
            self.files.append(path)

    def fresh_nets(self) -> list[torch.nn.Module]:
        return [models.load_checkpoint(c) for c in self.checkpoints]

    # (a) raw --------------------------------------------------------------------------------
    def raw_case(self, overrides: dict[str, Any], steps: int, compiled: bool = False) -> Callable[[], float]:
        """A closure timing ``steps`` rounds over the K members; returns image-passes/s."""
        device = self.device
        with dev.override(**overrides):
            s = dev.settings(device)
            nets = [freeze(n, device) for n in self.fresh_nets()]
        x0 = dev.to_float(self.images, device).contiguous(memory_format=s.memory_format)
        means = self.means.to(device)
        targets = self.targets.to(device)

        def loss_fn(net: torch.nn.Module, m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            if s.autocast is not None:
                with torch.autocast(device.type, dtype=s.autocast):
                    f = net.features(x).float()
            else:
                f = net.features(x)
            return (f - m).pow(2).sum()

        fn = torch.compile(loss_fn, dynamic=False) if compiled else loss_fn

        def run() -> float:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                for k, net in enumerate(nets):
                    x = x0.detach().requires_grad_(True)
                    torch.autograd.grad(fn(net, means[k][targets], x), x)
            sync(device)
            return steps * len(nets) * len(x0) / (time.perf_counter() - t0)

        return run

    # (b) engine -----------------------------------------------------------------------------
    def engine_case(self, method: str, steps: int, inner: int, overrides: dict[str, Any] | None = None, **cfg_extra: Any):
        cfg = preset(
            "balanced", method=method, steps=steps, inner_steps=inner, checkpoints=self.k, craft_batch=self.batch,
            width=self.width, **cfg_extra,
        )
        passes = passes_per_image(cfg, self.k) * self.batch

        def run() -> float:
            nets = self.fresh_nets()  # craft freezes (copies, folds) its members: part of its cost
            with dev.override(**(overrides or {})):
                sync(self.device)
                t0 = time.perf_counter()
                craft(nets, self.means, self.images, self.labels, NUM_CLASSES, cfg, self.device)
                sync(self.device)
            return passes / (time.perf_counter() - t0)

        return run

    # (c) reference-style --------------------------------------------------------------------
    def reference_case(self, steps: int) -> Callable[[], float]:
        device = self.device
        net = models.load_checkpoint(self.checkpoints[0]).to(device)  # one model object, weights re-read per pass
        means = self.means  # on the CPU, copied per pass as the reference does
        eps, alpha = 8 / 255, 1 / 255

        def run() -> float:
            x0 = self.images.float().div(255)
            x = x0.clone()
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                grads = []
                for k, path in enumerate(self.files):
                    net.load_state_dict(torch.load(path, weights_only=True))
                    net.eval()
                    xi = x.to(device).requires_grad_(True)
                    f = net.features(xi)
                    loss = torch.nn.functional.mse_loss(f, means[k][self.targets].to(device))
                    grads.append(torch.autograd.grad(loss, xi)[0].detach().cpu())
                g = sum(grads) / len(grads)
                x = torch.clamp(torch.min(torch.max(x - alpha * g.sign(), x0 - eps), x0 + eps), 0, 1)
            sync(device)
            return steps * self.k * self.batch / (time.perf_counter() - t0)

        return run

    # training ---------------------------------------------------------------------------------
    def train_case(self, overrides: dict[str, Any], n: int) -> Callable[[], float]:
        gen = torch.Generator().manual_seed(1)
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
        settings = TrainSettings(epochs=1, batch_size=self.batch)

        def run() -> float:
            net = models.build_model("resnet18", NUM_CLASSES, self.width)
            with dev.override(**overrides):
                sync(self.device)
                t0 = time.perf_counter()
                train_classifier(net, images, labels, settings, self.device)
                sync(self.device)
            return n / (time.perf_counter() - t0)

        return run


def setting_name(o: dict[str, Any]) -> str:
    fmt = "channels_last" if o["channels_last"] else "contiguous"
    amp = "bf16" if o["autocast"] == torch.bfloat16 else "fp32"
    return f"{fmt}, {amp}" + (", BN folded" if o.get("fold_bn") else "")


def interleave(cases: dict[str, Callable[[], float]], rounds: int) -> dict[str, dict[str, float]]:
    """Every case once per round (after one untimed warm-up round); best and median per case."""
    for fn in cases.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(rounds):
        for name, fn in cases.items():
            samples[name].append(fn())
        print(f"round {r + 1}/{rounds} (load {load_avg()}): " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in samples.items()), flush=True)
    return {k: {"best": max(v), "median": statistics.median(v), "samples": [round(x, 1) for x in v]} for k, v in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cpu | cuda (default: CUDA when present)")
    ap.add_argument("--k", type=int, default=8, help="checkpoints in the ensemble")
    ap.add_argument("--width", type=int, default=0, help="ResNet18 width (default 16 on CPU, 64 on CUDA)")
    ap.add_argument("--batch", type=int, default=0, help="crafting batch (default 128 on CPU, 1024 on CUDA)")
    ap.add_argument("--steps", type=int, default=2, help="outer steps T per timed run of (a), (c) and the settings study")
    ap.add_argument("--engine-steps", type=int, default=4, help="T of the engine's sep-fa runs (sep-fa-vr: half)")
    ap.add_argument("--inner", type=int, default=8, help="M for sep-fa-vr")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--train-images", type=int, default=512)
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile'd members")
    ap.add_argument("--bf16", action="store_true", help="also measure bf16 where the CPU only emulates it")
    ap.add_argument("--profile", action="store_true", help="only profile crafting (writes profile.md)")
    ap.add_argument("--name", default="")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    b = Bench(args)
    device = b.device
    cuda = device.type == "cuda"
    if args.profile:
        profile(b, args)
        return

    default = dev.settings(device)
    engine_setting = {"autocast": default.autocast, "channels_last": default.channels_last, "fold_bn": default.fold_bn}
    bf16_ok = cuda or dev.cpu_has_bf16() or args.bf16
    combos = [
        {"autocast": None, "channels_last": False, "fold_bn": False},
        {"autocast": None, "channels_last": True, "fold_bn": False},
        {"autocast": None, "channels_last": True, "fold_bn": True},
    ]
    if bf16_ok:
        combos += [
            {"autocast": torch.bfloat16, "channels_last": False, "fold_bn": False},
            {"autocast": torch.bfloat16, "channels_last": True, "fold_bn": False},
            {"autocast": torch.bfloat16, "channels_last": True, "fold_bn": True},
        ]
    cases: dict[str, Callable[[], float]] = {}
    cases["(a) raw"] = b.raw_case(engine_setting, args.steps)
    vr_steps = max(1, args.engine_steps // 2)
    cases["(b) engine sep-fa"] = b.engine_case("sep-fa", args.engine_steps, 0)
    cases["(b) engine sep-fa-vr"] = b.engine_case("sep-fa-vr", vr_steps, args.inner)
    cases["(c) reference-style"] = b.reference_case(args.steps)
    cases["engine sep-fa, augment"] = b.engine_case("sep-fa", args.engine_steps, 0, augment=True)
    for o in combos:
        cases[f"raw: {setting_name(o)}"] = b.raw_case(o, 1)
    train_combos = [
        {"autocast": None, "channels_last": False},
        {"autocast": None, "channels_last": True},
    ] + ([{"autocast": torch.bfloat16, "channels_last": False}, {"autocast": torch.bfloat16, "channels_last": True}] if bf16_ok else [])
    for o in train_combos:
        cases[f"train: {setting_name(o)}"] = b.train_case(o, args.train_images)
    compile_info: dict[str, Any] = {}
    if args.compile:
        run = b.raw_case(engine_setting, 1, compiled=True)
        t0 = time.perf_counter()
        run()  # first call compiles
        compile_info["first_call_seconds"] = round(time.perf_counter() - t0, 1)
        cases["raw: torch.compile (engine settings)"] = run

    print(f"device {device}, width {b.width}, batch {b.batch}, K {b.k}, threads {torch.get_num_threads()}, load {load_avg()}", flush=True)
    load_before = load_avg()
    res = interleave(cases, args.rounds)
    load_after = load_avg()
    best = {k: v["best"] for k, v in res.items()}
    a, c = best["(a) raw"], best["(c) reference-style"]
    ratios = {
        "b_sep_fa_over_a": best["(b) engine sep-fa"] / a,
        "b_sep_fa_vr_over_a": best["(b) engine sep-fa-vr"] / a,
        "b_sep_fa_over_c": best["(b) engine sep-fa"] / c,
        "b_sep_fa_vr_over_c": best["(b) engine sep-fa-vr"] / c,
    }
    targets = {"b_over_a": 0.9, "b_over_c": 5.0 if cuda else 1.3}
    lines = [
        f"Device `{device}`, ResNet18 width {b.width}, K={b.k} checkpoints, batch {b.batch}, resolution 32, "
        f"T={args.steps} for (a), (c) and the settings study; engine T={args.engine_steps} for sep-fa, "
        f"T={vr_steps} M={args.inner} for sep-fa-vr (the same passes per image, setup included); "
        f"{torch.get_num_threads()} torch threads, "
        f"{args.rounds} interleaved rounds, best round shown (median in brackets). "
        f"Load average before/after: {load_before} / {load_after}.",
        f"Engine speed settings on this device: {setting_name(engine_setting)}.",
        "",
        "Rates in image-passes/s (one image, one member, forward + backward to the input); training in images/s.",
        "",
        "| case | best | median |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v['best']:.0f} | {v['median']:.0f} |" for k, v in res.items()]
    lines += [
        "",
        f"Ratios (best rounds): (b)/(a) sep-fa {ratios['b_sep_fa_over_a']:.2f}, sep-fa-vr {ratios['b_sep_fa_vr_over_a']:.2f} "
        f"(target >= {targets['b_over_a']}); (b)/(c) sep-fa {ratios['b_sep_fa_over_c']:.2f}, "
        f"sep-fa-vr {ratios['b_sep_fa_vr_over_c']:.2f} (target >= {targets['b_over_c']}).",
    ]
    if compile_info:
        lines.append(f"torch.compile: first call (compilation) {compile_info['first_call_seconds']} s.")
    name = args.name or f"throughput-{device.type}"
    write_result(
        name,
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "width": b.width, "batch": b.batch, "k": b.k, "threads": torch.get_num_threads(),
            "load_before": load_before, "load_after": load_after,
            "engine_settings": setting_name(engine_setting),
            "results": res, "ratios": ratios, "targets": targets, "compile": compile_info,
        },
        "\n".join(lines),
    )
    print("\n".join(lines))


def profile(b: Bench, args: argparse.Namespace) -> None:
    """Where crafting time goes: torch profiler over one sep-fa-vr craft call, grouped by operator."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    run = b.engine_case("sep-fa-vr", 1, args.inner)
    run()  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if b.device.type == "cuda" else [])
    t0 = time.perf_counter()
    with tprofile(activities=activities) as prof:
        run()
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    cuda = b.device.type == "cuda"
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    rows = sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)
    total = sum(getattr(e, key, 0) for e in events) or 1
    groups = {
        "convolution backward (to input)": ("convolution_backward",),
        "convolution forward": ("mkldnn_convolution", "cudnn_convolution", "_convolution", "conv2d", "convolution"),
        "batch norm": ("batch_norm", "native_batch_norm"),
        "relu (+backward)": ("relu", "threshold_backward", "clamp_min"),
        "add / residual (+backward)": ("aten::add",),
        "autocast casts / copies": ("aten::to", "_to_copy", "copy_", "contiguous", "clone"),
        "pooling, linear, loss": ("adaptive_avg_pool", "mean", "pow", "sum", "sub", "mm", "addmm", "linear", "index"),
        "projection / sign step": ("sign", "clamp", "max", "min", "mul", "div"),
    }
    grouped: dict[str, float] = {g: 0.0 for g in groups}
    grouped["other"] = 0.0
    for e in events:
        t = getattr(e, key, 0)
        for g, pats in groups.items():
            if any(p in e.key for p in pats):
                grouped[g] += t
                break
        else:
            grouped["other"] += t
    lines = [
        f"Torch profiler over one `engine.attacks.craft` call, sep-fa-vr, K={b.k}, T=1, M={args.inner}, batch {b.batch}, "
        f"ResNet18 width {b.width}, device `{b.device}`, engine settings {dev.settings(b.device)}; "
        f"{torch.get_num_threads()} threads, load {load_avg()}. Wall time {wall:.2f} s.",
        "",
        "## By operator group (self time)",
        "",
        "| group | share |",
        "|---|---|",
    ]
    lines += [f"| {g} | {t / total:.1%} |" for g, t in sorted(grouped.items(), key=lambda kv: -kv[1])]
    lines += ["", "## Top operators (self time)", "", "| operator | calls | self time (ms) | share |", "|---|---|---|---|"]
    for e in rows[:25]:
        t = getattr(e, key, 0)
        lines.append(f"| `{e.key}` | {e.count} | {t / 1000:.1f} | {t / total:.1%} |")
    write_result(
        args.name or "profile",
        {"grouped_share": {g: round(t / total, 4) for g, t in grouped.items()}, "wall_seconds": wall,
         "top": [{"op": e.key, "calls": e.count, "self_us": getattr(e, key, 0)} for e in rows[:40]]},
        "\n".join(lines),
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
