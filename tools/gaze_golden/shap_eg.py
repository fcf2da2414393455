"""fixtures/peers/shap.vgg16.safetensors: shap's PyTorch GradientExplainer (expected gradients) on the reduced VGG16.

Three explained spaces: the input, and two interim layers passed as `(model, module)`, where shap explains the
module's input (captured by a forward hook):
- `features.9`: the output of the 2nd max pool, the input of `features.10` (Keras VGG16 `model.layers[7].input`);
- `features.22`: the ReLU output of conv4_3, the input of `features.23` (Keras `model.layers[14].input`).
shap draws one background index (`np.random.choice`) and one alpha (`np.random.uniform`) per sample, after
`np.random.seed(rseed)`; these draws are recorded and stored as the plan, then replayed here from the stored
tensors and checked against shap's values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import models as M
from .grads import recorded_numpy_draws
from .store import Fixture

MODEL = "vgg16"
NSAMPLES = 16
RANKED = 2
RSEED = 11
BACKGROUND = 8
BACKGROUND_SEED = 301
# Smaller crops than the model's .io input (the same two boxes), to keep the file small.
SHAP_SIZE = 40
# Explained space -> the module whose input shap explains (None: the model input).
SPACES = {"input": None, "features.9": "features.10", "features.22": "features.23"}


def replay(model, x, bg, space: str, index: np.ndarray, alpha: np.ndarray, ranks: torch.Tensor) -> np.ndarray:
    """Expected gradients from the stored plan alone, with shap's arithmetic; returns [N, *space shape, K]."""
    feats = model.features
    cut = 0 if space == "input" else int(SPACES[space].split(".")[1])

    def head(z):
        return feats[:cut](z) if cut else z

    def tail(h):
        h = feats[cut:](h)
        return model.classifier(torch.flatten(model.avgpool(h), 1))

    n = x.shape[0]
    out = []
    for k in range(ranks.shape[1]):
        phis = []
        for j in range(n):
            # shap multiplies by the Python floats t and 1 - t, which torch rounds to float32.
            t = torch.tensor(alpha[j], dtype=torch.float32)[:, None, None, None]
            u = torch.tensor(1.0 - alpha[j], dtype=torch.float32)[:, None, None, None]
            samples = t * x[j][None] + u * bg[index[j]]
            with torch.no_grad():
                h = head(samples)
            h = h.clone().requires_grad_(True)
            tail(h)[:, int(ranks[j, k])].sum().backward()
            if space == "input":
                delta = (x[j][None] - bg[index[j]]).numpy().astype(np.float64)
            else:
                delta = h.detach().numpy().astype(np.float64)
            phis.append((h.grad.numpy() * delta).mean(0))
        out.append(np.stack(phis))
    return np.stack(out, axis=-1)


def build(root: Path) -> list[Fixture]:
    import shap

    model = M.load_model(root, MODEL)
    x = M.model_inputs(root, MODEL, SHAP_SIZE)
    bg = M.random_crops(root, MODEL, BACKGROUND, BACKGROUND_SEED, SHAP_SIZE)
    with torch.no_grad():
        logits = model(x)
    fx = Fixture(
        f"peers/shap.{MODEL}.safetensors",
        {
            "model": M.model_config(MODEL),
            "explainer": "shap.GradientExplainer(model or (model, module), background, batch_size=50, local_smoothing=0)",
            "shap_values": f"explainer.shap_values(input, nsamples={NSAMPLES}, ranked_outputs={RANKED}, "
            f"output_rank_order='max', rseed={RSEED})",
            "spaces": SPACES,
            "input_size": SHAP_SIZE,
        },
    )
    fx.add("input", x, f"the explained images: the two crops of models/vgg16.io.safetensors at {SHAP_SIZE}x{SHAP_SIZE}")
    fx.add("logits", logits, "`model(input)`, which shap ranks")
    fx.add("background", bg, f"the {BACKGROUND} background images: random crops of chelsea.png at {SHAP_SIZE}x{SHAP_SIZE}, imagenet preprocessing")
    plan = None
    ranks = None
    for space, module_path in SPACES.items():
        explained = model if module_path is None else (model, M.module(model, module_path))
        explainer = shap.GradientExplainer(explained, bg, batch_size=50, local_smoothing=0)
        with recorded_numpy_draws(0) as draws:
            values, indexes = explainer.shap_values(x, nsamples=NSAMPLES, ranked_outputs=RANKED,
                                                    output_rank_order="max", rseed=RSEED)
        kinds = [k for k, _ in draws]
        per_rank = 2 * x.shape[0] * NSAMPLES
        if kinds != ["choice", "uniform"] * (per_rank // 2 * RANKED):
            raise RuntimeError(f"shap drew {kinds[:6]}..., expected alternating choice and uniform draws")
        first = [v for _, v in draws[:per_rank]]
        for r in range(1, RANKED):
            again = [v for _, v in draws[r * per_rank:(r + 1) * per_rank]]
            if any(not np.array_equal(a, b) for a, b in zip(first, again)):
                raise RuntimeError("shap's draws differ between ranked outputs; the plan would not be shared")
        index = np.array([int(v) for v in first[0::2]], np.int64).reshape(x.shape[0], NSAMPLES)
        alpha = np.array([float(v) for v in first[1::2]], np.float64).reshape(x.shape[0], NSAMPLES)
        ranks_now = torch.as_tensor(indexes).to(torch.int64)
        if plan is None:
            plan, ranks = (index, alpha), ranks_now
        elif not (np.array_equal(plan[0], index) and np.array_equal(plan[1], alpha) and torch.equal(ranks, ranks_now)):
            raise RuntimeError("the plan differs between explained spaces although rseed is the same")
        values = np.asarray(values)
        mine = replay(model, x, bg, space, index, alpha, ranks)
        err = float(np.abs(mine - values).max())
        if not err <= 1e-5 * float(np.abs(values).max()):
            raise RuntimeError(f"shap {space}: the replay of the stored plan differs by {err}")
        what = "the model input" if module_path is None else f"the input of `{module_path}` (output of `{space}`)"
        fx.add(f"values.{space}", values.astype(np.float32),
               f"shap values for {what}, [N, *shape, rank]; float64 in shap, stored as float32")
    fx.add("ranks", ranks, "`indexes` returned by shap: the explained classes [image, rank], by descending logit")
    fx.add("plan.background_index", plan[0], "plan: `np.random.choice(8)` of each sample [image, sample]")
    fx.add("plan.alpha", plan[1],
           "plan: `np.random.uniform()` of each sample [image, sample]; the sample is f32(t)*x + f32(1-t)*background")
    return [fx]
