#!/usr/bin/env python3
"""Forward and forward-plus-input-gradient speed of the model zoo, gaze against PyTorch.

Two commands:

- `torch MODEL BATCH REPS` times PyTorch alone and prints the same JSON lines as gaze's
  `gaze-speed` binary (`benches/src/bin/gaze-speed.rs`): torchvision's `vgg16` and `resnet50` at
  224 x 224, timm's `legacy_xception` at 299 x 299, random weights, parameters without gradients;
  `forward` runs under `torch.no_grad()`, `forward-backward` makes the input require a gradient and
  runs `y[:, 3].sum().backward()`.
- `compare --gaze PATH --models vgg16,resnet50,xception --batches 1,8 --rounds 3 --reps 3` alternates
  the two: for each round, model and batch, one gaze process and then one PyTorch process, each
  timing REPS calls after a warm-up call; it prints a Markdown table of medians over every call of
  every round (with the minimum and maximum), the ratio gaze/PyTorch, and the load average before
  and after.

Both sides use the same number of threads (`--threads`, default 2): `torch.set_num_threads` and
`GAZE_NUM_THREADS`.
Run from the repository root with the peers' virtual environment, after
`cargo build --release -p gaze-benches --bin gaze-speed`:
`target/golden-venv/bin/python tools/bench/speed.py compare --gaze target/release/gaze-speed`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def torch_model(name: str):
    import torch
    import torchvision

    if name == "vgg16":
        return torchvision.models.vgg16(weights=None), 224
    if name == "resnet50":
        return torchvision.models.resnet50(weights=None), 224
    if name == "xception":
        import timm

        return timm.create_model("legacy_xception", pretrained=False), 299
    raise SystemExit(f"unknown model `{name}`; valid: vgg16, resnet50, xception")


def time_torch(name: str, batch: int, reps: int, threads: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, size = torch_model(name)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(batch, 3, size, size)

    def forward():
        with torch.no_grad():
            model(x)

    def forward_backward():
        xi = x.clone().requires_grad_(True)
        model(xi)[:, 3].sum().backward()
        assert xi.grad is not None

    out = []
    for mode, f in [("forward", forward), ("forward-backward", forward_backward)]:
        f()
        seconds = []
        for _ in range(reps):
            t = time.perf_counter()
            f()
            seconds.append(time.perf_counter() - t)
        out.append({"model": name, "batch": batch, "mode": mode, "seconds": seconds})
    return out


def time_gaze(path: str, name: str, batch: int, reps: int, threads: int) -> list[dict]:
    env = dict(os.environ, GAZE_NUM_THREADS=str(threads))
    done = subprocess.run([path, name, str(batch), str(reps)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{path} failed: {done.stderr.strip()}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def compare(args) -> int:
    times: dict[tuple, dict[str, list[float]]] = {}
    models = [m for m in args.models.split(",") if m]
    batches = [int(b) for b in args.batches.split(",") if b]
    before = load()
    for _ in range(args.rounds):
        for name in models:
            for batch in batches:
                for side, rows in [
                    ("gaze", time_gaze(args.gaze, name, batch, args.reps, args.threads)),
                    ("torch", subprocess_torch(name, batch, args.reps, args.threads)),
                ]:
                    for row in rows:
                        key = (row["model"], row["batch"], row["mode"])
                        times.setdefault(key, {}).setdefault(side, []).extend(row["seconds"])
    after = load()

    def cell(v: list[float]) -> str:
        return f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"

    print(f"Load average (1, 5, 15 min) before: {before}; after: {after}.")
    print(f"{args.rounds} rounds x {args.reps} calls per side after a warm-up call, {args.threads} threads per side.")
    print()
    print("| model | batch | pass | gaze s | PyTorch s | gaze/PyTorch |")
    print("|---|---|---|---|---|---|")
    for (name, batch, mode), sides in times.items():
        g, t = sides["gaze"], sides["torch"]
        ratio = statistics.median(g) / statistics.median(t)
        print(f"| {name} | {batch} | {mode} | {cell(g)} | {cell(t)} | {ratio:.2f} |")
    return 0


def subprocess_torch(name: str, batch: int, reps: int, threads: int) -> list[dict]:
    # A process of its own, as gaze's side, so that neither side inherits the other's memory.
    cmd = [sys.executable, os.path.abspath(__file__), "torch", name, str(batch), str(reps), "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the PyTorch side failed: {done.stderr.strip()}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("torch")
    t.add_argument("model")
    t.add_argument("batch", type=int)
    t.add_argument("reps", type=int)
    t.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("compare")
    c.add_argument("--gaze", default="target/release/gaze-speed")
    c.add_argument("--models", default="vgg16,resnet50,xception")
    c.add_argument("--batches", default="1,8")
    c.add_argument("--rounds", type=int, default=3)
    c.add_argument("--reps", type=int, default=3)
    c.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.cmd == "torch":
        for row in time_torch(args.model, args.batch, args.reps, args.threads):
            print(json.dumps(row))
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
