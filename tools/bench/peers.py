#!/usr/bin/env python3
"""The Python peers' side of `cargo xtask bench --peers`.

Two commands:

- `prepare --out DIR --models vgg16,resnet50 --size 224 --background 4 --seed 0` writes, for each
  model, randomly initialised full-size weights (`DIR/<model>.safetensors`, without
  `num_batches_tracked`): VGG16 and ResNet-50 in torchvision's layout and initialisation, Xception
  as timm's `legacy_xception`; and the inputs both sides explain (`DIR/inputs-<size>.safetensors`):
  `input` [1, 3, size, size], images/chelsea.png through torchvision's ImageNet preprocessing, and
  `background` [B, 3, size, size], random crops of it. A model's seed is `seed` plus its place in
  `MODELS`, so weights written in separate calls are the same as written together.
- `serve --device cpu|cuda --threads T` is the peers' worker: it reads one JSON request per line on
  standard input and answers one JSON line, with the same requests as gaze's worker
  (`gaze-bench-runner`): `load`, `run`, `matmul`, `quit`.

Each `run` is one call of the peer as its documentation shows it, timed from the construction of the
explainer to the returned attribution (after `torch.cuda.synchronize()` on a GPU), with the peak
resident memory of the call (the high-water mark is reset first through /proc/self/clear_refs).
The model's parameters do not require gradients, so Captum and shap compute no weight gradients they
would then throw away (their best case; gaze never computes them); pytorch-grad-cam needs trainable
parameters to have a graph to differentiate, so for it they are switched on, as in its README.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

METHODS = ("forward", "forward-backward", "gradcam", "scorecam", "ablationcam", "saliency", "gradient-x-input",
           "guided-backprop", "deconvnet", "guided-gradcam", "integrated-gradients", "smoothgrad",
           "expected-gradients", "occlusion")


def status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- prepare


MODELS = ("vgg16", "resnet50", "xception")


def build(name: str):
    import torchvision

    if name == "vgg16":
        return torchvision.models.vgg16(weights=None)
    if name == "resnet50":
        return torchvision.models.resnet50(weights=None)
    if name == "xception":
        import timm

        return timm.create_model("legacy_xception", pretrained=False)
    raise ValueError(f"unknown model `{name}`; valid: {', '.join(MODELS)}")


def prepare(args) -> int:
    import torch
    from PIL import Image
    from safetensors.torch import save_file
    from torchvision import transforms as T

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name in (m for m in args.models.split(",") if m):
        if name not in MODELS:
            raise SystemExit(f"unknown model `{name}`; valid: {', '.join(MODELS)}")
        torch.manual_seed(args.seed + MODELS.index(name))
        model = build(name).eval()
        state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        save_file(state, str(out / f"{name}.safetensors"), metadata={"generator": "tools/bench/peers.py prepare",
                                                                      "init": "the library's default", "seed": str(args.seed + MODELS.index(name))})
    img = Image.open(ROOT / "fixtures" / "images" / "chelsea.png").convert("RGB")
    size = args.size
    normalise = T.Compose([T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    x = normalise(T.CenterCrop(size)(T.Resize(size * 8 // 7)(img))).unsqueeze(0)
    g = torch.Generator().manual_seed(args.seed)
    crops = []
    for _ in range(args.background):
        side = int(torch.randint(96, 300, (1,), generator=g))
        top = int(torch.randint(0, img.height - side + 1, (1,), generator=g))
        left = int(torch.randint(0, img.width - side + 1, (1,), generator=g))
        crop = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        crops.append(normalise(crop))
    save_file({"input": x.contiguous(), "background": torch.stack(crops).contiguous()},
              str(out / f"inputs-{size}.safetensors"), metadata={"generator": "tools/bench/peers.py prepare"})
    return 0


# ---------------------------------------------------------------- serve


class Worker:
    def __init__(self, device: str, threads: int):
        import torch

        torch.set_num_threads(threads)
        # Import the peers now, so that no timed call pays for an import.
        import captum.attr  # noqa: F401
        import pytorch_grad_cam  # noqa: F401
        import shap  # noqa: F401

        self.torch = torch
        self.device = torch.device("cuda" if device == "cuda" else "cpu")
        self.models: dict[str, dict] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def load(self, req: dict) -> dict:
        from safetensors.torch import load_file

        model = build(req["kind"]).eval()
        missing, unexpected = model.load_state_dict(load_file(req["weights"]), strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for p in model.parameters():
            p.requires_grad_(False)
        model = model.to(self.device)
        tensors = load_file(req["inputs"])
        self.models[req["name"]] = {
            "model": model,
            "input": tensors["input"].to(self.device),
            "background": tensors["background"].to(self.device),
        }
        from importlib import metadata

        versions = {p: metadata.version(p) for p in ("torch", "torchvision", "timm", "captum", "grad-cam", "shap")}
        return {"ok": True, "device": self.device.type, "rss_kib": status_kib("VmRSS"), "versions": versions}

    def call(self, method: str, s: dict, m: dict):
        torch = self.torch
        model, x = m["model"], m["input"]
        if "batch_copies" in s:
            x = x.repeat(int(s["batch_copies"]), 1, 1, 1)
        if method == "forward":
            with torch.no_grad():
                return model(x)
        if method == "forward-backward":
            xg = x.clone().requires_grad_(True)
            model(xg)[:, s["target"]].sum().backward()
            return xg.grad
        if method in ("gradcam", "scorecam", "ablationcam"):
            import pytorch_grad_cam
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            # pytorch-grad-cam differentiates the activations it hooks, which needs a graph: with
            # frozen parameters and an input that does not require gradients there is none, so its
            # models keep trainable parameters, as in its README (its backward then also computes
            # the weights' gradients). Score-CAM and Ablation-CAM compute no gradient.
            trainable = method == "gradcam"
            for p in model.parameters():
                p.requires_grad_(trainable)
            layers = [model.get_submodule(s["layer"])]
            if method == "gradcam":
                cam = pytorch_grad_cam.GradCAM(model=model, target_layers=layers)
            elif method == "scorecam":
                cam = pytorch_grad_cam.ScoreCAM(model=model, target_layers=layers)
                cam.batch_size = int(s["batch"])
            else:
                cam = pytorch_grad_cam.AblationCAM(model=model, target_layers=layers, batch_size=int(s["batch"]))
            try:
                return cam(input_tensor=x, targets=[ClassifierOutputTarget(s["target"])] * x.shape[0])
            finally:
                cam.activations_and_grads.release()
                for p in model.parameters():
                    p.requires_grad_(False)
                    p.grad = None
        if method == "saliency":
            from captum.attr import Saliency

            return Saliency(model).attribute(x, target=s["target"])
        if method == "gradient-x-input":
            from captum.attr import InputXGradient

            return InputXGradient(model).attribute(x, target=s["target"])
        if method in ("guided-backprop", "deconvnet", "guided-gradcam"):
            from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam

            # Captum replaces the gradient of every `nn.ReLU` module through hooks, which an
            # in-place ReLU (torchvision's default) breaks: they run out of place for these calls.
            relus = [r for r in model.modules() if isinstance(r, torch.nn.ReLU) and r.inplace]
            for r in relus:
                r.inplace = False
            try:
                if method == "guided-backprop":
                    return GuidedBackprop(model).attribute(x, target=s["target"])
                if method == "deconvnet":
                    return Deconvolution(model).attribute(x, target=s["target"])
                return GuidedGradCam(model, model.get_submodule(s["layer"])).attribute(x, target=s["target"])
            finally:
                for r in relus:
                    r.inplace = True
        if method == "integrated-gradients":
            from captum.attr import IntegratedGradients

            return IntegratedGradients(model).attribute(x, target=s["target"], n_steps=s["steps"],
                                                        internal_batch_size=s["batch"])
        if method == "smoothgrad":
            from captum.attr import NoiseTunnel, Saliency

            torch.manual_seed(s["seed"])
            return NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=s["samples"],
                                                          nt_samples_batch_size=s["batch"], stdevs=s["stdev"],
                                                          target=s["target"])
        if method == "expected-gradients":
            import shap

            explainer = shap.GradientExplainer((model, model.get_submodule(s["peer_module"])), m["background"],
                                               batch_size=s["batch"], local_smoothing=0)
            values, _ = explainer.shap_values(x, nsamples=s["samples"], ranked_outputs=s["ranked"], rseed=s["seed"])
            return values
        if method == "occlusion":
            from captum.attr import Occlusion

            w, st = s["window"], s["stride"]
            return Occlusion(model).attribute(x, sliding_window_shapes=(3, w, w), strides=(3, st, st), baselines=0,
                                              target=s["target"], perturbations_per_eval=s["batch"])
        raise ValueError(f"unknown method `{method}`; valid: {', '.join(METHODS)}")

    def run(self, req: dict) -> dict:
        import numpy as np

        torch = self.torch
        m = self.models.get(req["name"])
        if m is None:
            raise KeyError(f"no model `{req['name']}` is loaded")
        before = status_kib("VmRSS")
        per_call = reset_peak()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = self.call(req["method"], req["settings"], m)
        self.sync()
        seconds = time.perf_counter() - start
        peak = status_kib("VmHWM")
        if isinstance(out, torch.Tensor):
            arr = out.detach().double().cpu().numpy()
        else:
            arr = np.asarray(out, dtype=np.float64)
        reply = {
            "seconds": seconds,
            "rss_before_kib": before,
            "peak_rss_kib": peak,
            "peak_is_per_call": per_call,
            "l1": float(np.abs(arr).sum()),
            "shape": list(arr.shape),
        }
        if self.device.type == "cuda":
            reply["gpu_peak_bytes"] = int(torch.cuda.max_memory_allocated())
        return reply

    def matmul(self, req: dict) -> dict:
        torch = self.torch
        n, reps = int(req["n"]), max(1, int(req["reps"]))
        a = torch.randn(n, n, device=self.device)
        b = torch.randn(n, n, device=self.device)
        seconds = []
        for i in range(reps + 1):
            start = time.perf_counter()
            c = a @ b
            self.sync()
            t = time.perf_counter() - start
            del c
            if i > 0:
                seconds.append(t)
        return {"seconds": seconds, "threads": torch.get_num_threads()}


def serve(args) -> int:
    worker = Worker(args.device, args.threads)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "quit":
                break
            if cmd == "load":
                reply = worker.load(req)
            elif cmd == "run":
                reply = worker.run(req)
            elif cmd == "matmul":
                reply = worker.matmul(req)
            else:
                reply = {"error": f"unknown cmd {cmd!r}; valid: load, run, matmul, quit"}
        except Exception as e:  # noqa: BLE001 - every failure is reported to the driver, which goes on
            reply = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


def main() -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write the shared random weights and inputs")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--models", default="vgg16,resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--background", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("serve", help="answer timing requests on standard input")
    s.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    s.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    return prepare(args) if args.command == "prepare" else serve(args)


if __name__ == "__main__":
    sys.exit(main())
