#!/usr/bin/env python3
"""Writes gaze's golden fixtures (fixtures/*.safetensors) from the Python peers.

Run it through `cargo xtask golden [--only GROUP,...]`, which prepares the virtual environment from
tools/requirements.txt and sets the environment for determinism (one thread, no GPU).
Groups, in dependency order: ops, models, cam, grad, shap, preprocess.
The peer groups (cam, grad, shap) read the reduced models from fixtures/models, so run `models` first.
Two runs on the same machine give byte-identical files.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gaze_golden import store  # noqa: E402

GROUPS = ["ops", "models", "cam", "grad", "shap", "preprocess"]

PACKAGES = [
    "torch",
    "torchvision",
    "timm",
    "captum",
    "grad-cam",
    "shap",
    "numpy",
    "safetensors",
    "pillow",
    "opencv-python-headless",
    "scipy",
]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        out[p] = metadata.version(p)
    return out


def determinism() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    np.random.seed(0)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "fixtures")
    parser.add_argument("--only", default="", help="comma-separated groups: " + ", ".join(GROUPS))
    args = parser.parse_args()
    only = [g for g in args.only.split(",") if g] or GROUPS
    bad = [g for g in only if g not in GROUPS]
    if bad:
        parser.error(f"unknown group(s) {', '.join(bad)}; valid: {', '.join(GROUPS)}")

    determinism()
    root: Path = args.out.resolve()
    vers = versions()
    written: list[store.Fixture] = []
    for group in GROUPS:
        if group not in only:
            continue
        start = time.time()
        print(f"golden: {group}", flush=True)
        if group == "ops":
            from gaze_golden import ops

            fixtures = ops.build()
        elif group == "models":
            from gaze_golden import models

            fixtures = models.build(root)
        elif group == "cam":
            from gaze_golden import cams

            fixtures = cams.build(root)
        elif group == "grad":
            from gaze_golden import grads

            fixtures = grads.build(root)
        elif group == "shap":
            from gaze_golden import shap_eg

            fixtures = shap_eg.build(root)
        else:
            from gaze_golden import preprocess

            fixtures = preprocess.build(root)
        for fx in fixtures:
            path = fx.write(root, vers)
            print(f"  wrote {path.relative_to(root.parent)} ({path.stat().st_size} bytes, {len(fx.tensors)} tensors)")
        store.update_readme(root / "README.md", fixtures)
        written += fixtures
        print(f"  {group} took {time.time() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
