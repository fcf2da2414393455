"""fixtures/peers/cam.<model>.safetensors: pytorch-grad-cam and Captum LayerGradCam on the reduced models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import models as M
from .store import Fixture

GIVEN = [3, 7]

# CLI method name -> pytorch-grad-cam class name.
METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
}

# Methods whose map is a weighted sum of channels, so get_cam_weights is called and recorded.
WEIGHTED = {"gradcam", "gradcam++", "xgradcam", "scorecam", "ablationcam"}


def run_pgc(model, layer_module, cls_name: str, x: torch.Tensor, targets: list[int], dtype=np.float32):
    """One pytorch-grad-cam call; returns (raw map before its ReLU as `dtype`, channel weights or None, final output)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = getattr(pytorch_grad_cam, cls_name)(model=model, target_layers=[layer_module])
    seen: dict[str, list[np.ndarray]] = {"raw": [], "weights": []}
    get_cam_image = cam.get_cam_image
    get_cam_weights = cam.get_cam_weights

    def record_image(*args, **kwargs):
        out = get_cam_image(*args, **kwargs)
        seen["raw"].append(np.array(out, copy=True))
        return out

    def record_weights(*args, **kwargs):
        out = get_cam_weights(*args, **kwargs)
        seen["weights"].append(np.array(out, copy=True))
        return out

    cam.get_cam_image = record_image
    cam.get_cam_weights = record_weights
    try:
        out = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(t) for t in targets])
    finally:
        cam.activations_and_grads.release()
    if len(seen["raw"]) != 1 or len(seen["weights"]) > 1:
        raise RuntimeError(f"{cls_name}: expected one map per call, saw {len(seen['raw'])} maps")
    weights = seen["weights"][0] if seen["weights"] else None
    return seen["raw"][0].astype(dtype), weights, np.asarray(out)


def build(root: Path) -> list[Fixture]:
    from captum.attr import LayerGradCam

    out = []
    for name, spec in M.MODELS.items():
        model = M.load_model(root, name)
        # A float64 copy for the Grad-CAM++ reference maps: its weights are cubic in the gradient, and the
        # peer's own float32 map can be more than 1e-4 from the exact one.
        model64 = M.load_model(root, name).double()
        io = M.load_io(root, name)
        x = io["input"]
        with torch.no_grad():
            logits = model(x)
        top = [int(v) for v in logits.argmax(dim=1)]
        target_sets = {"given": GIVEN, "top": top}
        fx = Fixture(
            f"peers/cam.{name}.safetensors",
            {
                "model": M.model_config(name),
                "layers": spec["cam_layers"],
                "targets": target_sets,
                "pytorch_grad_cam": "CAM(model=model, target_layers=[layer])(input_tensor=input, "
                "targets=[ClassifierOutputTarget(c) for c in classes]); defaults (ScoreCAM batch 16, "
                "AblationCAM batch 32, ratio_channels_to_ablate 1.0, no aug_smooth, no eigen_smooth)",
                "captum": "LayerGradCam(model, layer).attribute(input, target=classes, relu_attributions=...)",
            },
        )
        fx.add("input", x, f"model input (the same as models/{name}.io.safetensors)")
        fx.add("logits", logits, "`model(input)`")
        for key, classes in target_sets.items():
            doc = "the per-image classes [3, 7]" if key == "given" else "each image's top class (argmax of `logits`)"
            fx.add(f"targets.{key}", torch.tensor(classes, dtype=torch.int64), doc)
        for layer in spec["cam_layers"]:
            layer_module = M.module(model, layer)
            for method, cls_name in METHODS.items():
                for key, classes in target_sets.items():
                    raw, weights, final = run_pgc(model, layer_module, cls_name, x, classes)
                    stem = f"{method}.{layer}.{key}"
                    fx.add(f"{stem}.raw", raw,
                           f"{cls_name} map at `{layer}`, targets.{key}: `get_cam_image` output, before ReLU and scaling")
                    if method in WEIGHTED:
                        if weights is None:
                            raise RuntimeError(f"{cls_name} computed no channel weights")
                        fx.add(f"{stem}.weights", weights.astype(np.float32),
                               f"{cls_name} channel weights at `{layer}`, targets.{key}: `get_cam_weights` output")
                    if method == "gradcam++":
                        raw64, _, _ = run_pgc(model64, M.module(model64, layer), cls_name, x.double(), classes,
                                              np.float64)
                        err = float(np.abs(raw.astype(np.float64) - raw64).max() / np.abs(raw64).max())
                        print(f"    {name} {stem}: the peer's float32 map is {err:.1e} from its float64 map")
                        fx.add(f"{stem}.raw_f64", raw64,
                               f"the same {cls_name} call on the model and input in float64: the exact map")
                    if key == "given":
                        fx.add(f"{stem}.out", final.astype(np.float32),
                               f"{cls_name} final output, targets.given: ReLU, min-max, cv2 bilinear resize, "
                               "ReLU, min-max")
            gc = LayerGradCam(model, layer_module)
            for key, classes in target_sets.items():
                t = torch.tensor(classes, dtype=torch.int64)
                for relu in (False, True):
                    attr = gc.attribute(x.clone(), target=t, relu_attributions=relu)
                    kind = "relu" if relu else "raw"
                    fx.add(f"captum-layergradcam.{layer}.{key}.{kind}", attr,
                           f"Captum LayerGradCam at `{layer}`, targets.{key}, relu_attributions={relu}")
        out.append(fx)
        print(f"  cam.{name}: top classes {top}")
    return out
