"""fixtures/peers/grad.<model>.safetensors: Captum's gradient and perturbation methods on the reduced models.

Guided backprop, deconvnet and guided Grad-CAM are also computed from their definition, with every ReLU module
replaced by one whose backward applies the method's rule to that ReLU's own output gradient. Where Captum's result
equals that reference (VGG16, ResNet-50) the fixture stores Captum's; on Xception it does not, and the fixture
stores the reference as `.attr` and Captum's result as `.captum`: Captum's hooks take the gradient of a ReLU's
input tensor, and an Xception block's input feeds both its first ReLU and its skip branch, so guided backprop
clamps the sum of the two branches' gradients (not the ReLU's alone) and deconvnet replaces that sum with the
ReLU's clamped output gradient (dropping the skip branch's).

The stochastic methods (NoiseTunnel, GradientShap) run on an explicit plan that this module draws and stores:
Captum's own noise draw is replaced by the stored noise, and its numpy draws (baseline indices, alphas) are
recorded.
Each plan is then replayed here from the stored tensors alone, and the replay must equal Captum's output,
so a Rust test that replays the same plan can match Captum draw for draw.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import numpy as np
import torch

from . import models as M
from .store import Fixture

GIVEN = [3, 7]
GRAD_MODELS = {"vgg16": "features.29", "resnet50": "layer4", "xception": "act4"}
# Models on which Captum's ReLU-hook methods differ from their definition (see the module's doc).
CAPTUM_RELU_HOOKS_DIFFER = {"xception"}
IG_STEPS = (16, 50)
IG_METHODS = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre")
# The integrated-gradients baseline: each image blurred over height and width, as
# `scipy.ndimage.gaussian_filter(input, (0, 0, IG_BLUR_SIGMA, IG_BLUR_SIGMA))` computes it (stored in the fixture).
# The zero image is avoided: a constant image makes the activations of a channel equal away from the borders, so
# max pooling at the points next to it chooses among exact ties that float32 rounding decides.
IG_BLUR_SIGMA = 2.0
# A configuration whose float32 attribution is farther than this from the same call in float64 is ill-conditioned
# (see `float32_error` below).
IG_CONDITIONED = 1e-5
# The calls whose float64 attribution is stored too (two per model keep the fixture small; the quadratures
# differ only in their stored path points and weights).
IG_FLOAT64_KEPT = {("gausslegendre", 50), ("riemann_trapezoid", 16)}
# The gradient fixtures run on smaller crops than the models' .io input (the same two boxes), to keep them small.
GRAD_SIZE = 40
NT_SAMPLES = 2
NT_STDEV = 0.2
GS_SAMPLES = 2
GS_STDEV = 0.1
GS_SEED = 7
OCC_WINDOW = (3, 8, 8)
OCC_STRIDE = (3, 4, 4)
SEEDS = {"vgg16": 201, "resnet50": 202, "xception": 203}


@contextlib.contextmanager
def fixed_noise(noise: torch.Tensor):
    """Makes Captum's NoiseTunnel add `noise` ([N, S, ...]) instead of drawing `torch.normal` noise."""
    from captum.attr._core.noise_tunnel import NoiseTunnel

    original = NoiseTunnel.__dict__["_add_noise_to_input"]

    def add(input, stdev, nt_samples_partition):
        n, s = noise.shape[:2]
        if input.shape[0] != n or nt_samples_partition != s:
            raise RuntimeError(f"noise plan is {n}x{s}, Captum asked for {input.shape[0]}x{nt_samples_partition}")
        return input.repeat_interleave(s, dim=0) + noise.reshape((n * s,) + tuple(input.shape[1:]))

    NoiseTunnel._add_noise_to_input = staticmethod(add)
    try:
        yield
    finally:
        NoiseTunnel._add_noise_to_input = original


@contextlib.contextmanager
def recorded_numpy_draws(seed: int):
    """Seeds numpy's global generator and records every `np.random.choice` and `np.random.uniform` result."""
    draws: list[tuple[str, np.ndarray]] = []
    choice, uniform = np.random.choice, np.random.uniform

    def rec_choice(*a, **k):
        v = choice(*a, **k)
        draws.append(("choice", np.asarray(v)))
        return v

    def rec_uniform(*a, **k):
        v = uniform(*a, **k)
        draws.append(("uniform", np.asarray(v)))
        return v

    np.random.seed(seed)
    np.random.choice, np.random.uniform = rec_choice, rec_uniform
    try:
        yield draws
    finally:
        np.random.choice, np.random.uniform = choice, uniform


def input_grads(model, z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of each row's target logit with respect to that row of `z`."""
    z = z.detach().clone().requires_grad_(True)
    out = model(z)
    out.gather(1, targets[:, None]).sum().backward()
    return z.grad.detach()


class _RuleRelu(torch.autograd.Function):
    """max(x, 0), whose backward applies a method's rule to this ReLU's own output gradient `g`."""

    @staticmethod
    def forward(ctx, x, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.rule == "guided":  # Springenberg et al.: forward and backward gates
            return g * (x > 0) * (g > 0), None
        if ctx.rule == "deconv":  # Zeiler and Fergus: the backward gate only
            return g.clamp(min=0), None
        return g * (x > 0), None


class RuleRelu(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rule = "plain"

    def forward(self, x):
        return _RuleRelu.apply(x, self.rule)


def rule_model(model: torch.nn.Module) -> tuple[torch.nn.Module, list[RuleRelu]]:
    """A copy of `model` with every `nn.ReLU` module replaced by a `RuleRelu` (a reused module stays one module)."""
    copied = copy.deepcopy(model)
    swapped: dict[int, RuleRelu] = {}

    def swap(mod: torch.nn.Module) -> None:
        for n, c in mod.named_children():
            if isinstance(c, torch.nn.ReLU):
                setattr(mod, n, swapped.setdefault(id(c), RuleRelu()))
            else:
                swap(c)

    swap(copied)
    return copied, list(swapped.values())


def rule_grads(model: torch.nn.Module, relus: list[RuleRelu], x: torch.Tensor, targets: torch.Tensor,
               rule: str) -> torch.Tensor:
    for r in relus:
        r.rule = rule
    try:
        return input_grads(model, x, targets)
    finally:
        for r in relus:
            r.rule = "plain"


def check_close(what: str, peer: torch.Tensor, replay: torch.Tensor, rtol: float = 1e-5) -> None:
    scale = float(peer.abs().max())
    err = float((peer - replay).abs().max())
    if not err <= rtol * max(scale, 1e-12):
        raise RuntimeError(f"{what}: the replay of the stored plan differs from the peer by {err} (scale {scale})")


def build(root: Path) -> list[Fixture]:
    from captum.attr import (
        Deconvolution,
        GradientShap,
        GuidedBackprop,
        GuidedGradCam,
        InputXGradient,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )
    from captum.attr._utils.approximation_methods import approximation_parameters

    out = []
    for name, deep in GRAD_MODELS.items():
        model = M.load_model(root, name)
        for p in model.parameters():
            p.requires_grad_(False)
        x = M.model_inputs(root, name, GRAD_SIZE)
        n = x.shape[0]
        t = torch.tensor(GIVEN, dtype=torch.int64)
        fx = Fixture(
            f"peers/grad.{name}.safetensors",
            {
                "model": M.model_config(name),
                "targets": GIVEN,
                "input": f"the two crops of models/{name}.io.safetensors, resized to {GRAD_SIZE}x{GRAD_SIZE}",
                "guided_gradcam_layer": deep,
                "integrated_gradients": {"methods": list(IG_METHODS), "n_steps": list(IG_STEPS), "baselines": f"gaussian_filter sigma {IG_BLUR_SIGMA}"},
                "noise_tunnel": {"nt_samples": NT_SAMPLES, "stdevs": NT_STDEV, "abs": False},
                "gradient_shap": {"n_samples": GS_SAMPLES, "stdevs": GS_STDEV, "numpy_seed": GS_SEED},
                "occlusion": {"sliding_window_shapes": OCC_WINDOW, "strides": OCC_STRIDE, "baselines": 0.0},
            },
        )
        fx.add("input", x, f"model input: the two crops of models/{name}.io.safetensors at {GRAD_SIZE}x{GRAD_SIZE}")
        fx.add("targets", t, "the class explained for each image")

        fx.add("saliency.attr", Saliency(model).attribute(x.clone(), target=t, abs=False),
               "`Saliency(model).attribute(input, target=targets, abs=False)`")
        fx.add("gradient-x-input.attr", InputXGradient(model).attribute(x.clone(), target=t),
               "`InputXGradient(model).attribute(input, target=targets)`")
        # The ReLU-rule methods: Captum's calls, and the same methods from their definition.
        captum = {
            "guided-backprop": (GuidedBackprop(model).attribute(x.clone(), target=t),
                                "`GuidedBackprop(model).attribute(input, target=targets)`"),
            "deconvnet": (Deconvolution(model).attribute(x.clone(), target=t),
                          "`Deconvolution(model).attribute(input, target=targets)`"),
            f"guided-gradcam.{deep}": (GuidedGradCam(model, M.module(model, deep)).attribute(x.clone(), target=t),
                                       f"`GuidedGradCam(model, {deep}).attribute(input, target=targets)` (nearest upsampling)"),
        }
        ruled, relus = rule_model(model)
        guided = rule_grads(ruled, relus, x, t, "guided")
        cam = LayerGradCam(ruled, M.module(ruled, deep)).attribute(x.clone(), target=t, relu_attributions=True)
        reference = {
            "guided-backprop": (guided, "the gradient of each image's target logit with every ReLU's backward "
                                        "`g * (x > 0) * (g > 0)` on its own output gradient g (guided backprop's definition)"),
            "deconvnet": (rule_grads(ruled, relus, x, t, "deconv"),
                          "the gradient with every ReLU's backward `max(g, 0)` on its own output gradient g "
                          "(deconvnet's definition)"),
            f"guided-gradcam.{deep}": (
                guided * LayerAttribution.interpolate(cam.detach(), tuple(x.shape[2:]), interpolate_mode="nearest"),
                f"guided-backprop.attr times `LayerGradCam(model, {deep}).attribute(input, target=targets, "
                "relu_attributions=True)` upsampled nearest (guided Grad-CAM's definition, Captum's composition)"),
        }
        for key, (peer, call) in captum.items():
            want, definition = reference[key]
            if name in CAPTUM_RELU_HOOKS_DIFFER:
                fx.add(f"{key}.attr", want, definition)
                fx.add(f"{key}.captum", peer, f"{call}: differs from `.attr` on this model (see the group's notes)")
            else:
                check_close(f"{name} {key} against its definition", peer, want)
                fx.add(f"{key}.attr", peer, call)

        # Integrated gradients: every Captum quadrature at each of IG_STEPS, from a blurred baseline.
        # Each call is repeated on a float64 copy of the model; the relative max-abs distance between the two
        # attributions is stored as `float32_error`, the peer's own float32 rounding error for that call.
        from scipy.ndimage import gaussian_filter

        base = torch.from_numpy(gaussian_filter(x.numpy(), (0, 0, IG_BLUR_SIGMA, IG_BLUR_SIGMA)).astype(np.float32))
        fx.add("integrated-gradients.baseline", base,
               f"the baseline: `scipy.ndimage.gaussian_filter(input, (0, 0, {IG_BLUR_SIGMA}, {IG_BLUR_SIGMA}))` in float32")
        model64 = M.load_model(root, name).double()
        for p in model64.parameters():
            p.requires_grad_(False)
        ig, ig64 = IntegratedGradients(model), IntegratedGradients(model64)
        for method in IG_METHODS:
            step_sizes_fn, alphas_fn = approximation_parameters(method)
            for steps in IG_STEPS:
                attr, delta = ig.attribute(x.clone(), baselines=base, target=t, n_steps=steps, method=method,
                                           return_convergence_delta=True)
                attr64 = ig64.attribute(x.double(), baselines=base.double(), target=t, n_steps=steps, method=method)
                err = float((attr.double() - attr64).abs().max() / attr64.abs().max())
                stem = f"integrated-gradients.{method}.{steps}"
                call = f"IntegratedGradients(model).attribute(input, baselines=integrated-gradients.baseline, " \
                       f"target=targets, n_steps={steps}, method='{method}', return_convergence_delta=True)"
                fx.add(f"{stem}.attr", attr, f"attributions of `{call}`")
                fx.add(f"{stem}.delta", delta, f"convergence delta of `{call}`")
                fx.add(f"{stem}.alphas", np.asarray(alphas_fn(steps), np.float64),
                       f"Captum's path points (alphas) for {method}, n_steps={steps}")
                fx.add(f"{stem}.step_sizes", np.asarray(step_sizes_fn(steps), np.float64),
                       f"Captum's quadrature weights (step sizes) for {method}, n_steps={steps}")
                fx.add(f"{stem}.float32_error", np.asarray([err], np.float64),
                       "relative max-abs distance of `attr` from the same call on the model and inputs in float64")
                if (method, steps) in IG_FLOAT64_KEPT:
                    fx.add(f"{stem}.attr64", attr64.float(),
                           "the same call on the model and inputs in float64, stored in float32: the exact value to float32's "
                           "precision, whatever float32 rounding decides in `attr`")
                print(f"    {name} integrated gradients {method} n_steps={steps}: float32 error {err:.1e}"
                      f"{'' if err <= IG_CONDITIONED else ' (ill-conditioned)'}")

        # SmoothGrad family: one stored noise plan, replayed by Captum's NoiseTunnel for all three types.
        rng = np.random.default_rng(SEEDS[name])
        noise = torch.from_numpy(
            (rng.standard_normal((n, NT_SAMPLES) + tuple(x.shape[1:])) * NT_STDEV).astype(np.float32))
        fx.add("smoothgrad.noise", noise,
               f"noise plan [image, sample, C, H, W]: N(0, {NT_STDEV}) draws; sample s of image i is input[i] + noise[i, s]")
        grads = input_grads(model, x.repeat_interleave(NT_SAMPLES, 0) + noise.reshape((-1,) + tuple(x.shape[1:])),
                            t.repeat_interleave(NT_SAMPLES)).reshape(noise.shape)
        replay = {
            "smoothgrad": grads.mean(1),
            "smoothgrad_sq": (grads * grads).mean(1),
        }
        replay["vargrad"] = replay["smoothgrad_sq"] - replay["smoothgrad"] ** 2
        nt = NoiseTunnel(Saliency(model))
        for nt_type, agg in (("smoothgrad", "mean"), ("smoothgrad_sq", "square"), ("vargrad", "var")):
            with fixed_noise(noise):
                attr = nt.attribute(x.clone(), nt_type=nt_type, nt_samples=NT_SAMPLES, stdevs=NT_STDEV, target=t,
                                    abs=False)
            check_close(f"{name} NoiseTunnel {nt_type}", attr, replay[nt_type])
            fx.add(f"smoothgrad.{agg}.attr", attr,
                   f"`NoiseTunnel(Saliency(model)).attribute(input, nt_type='{nt_type}', nt_samples={NT_SAMPLES}, "
                   f"stdevs={NT_STDEV}, target=targets, abs=False)` with `smoothgrad.noise`")

        # GradientShap: stored baselines and noise, recorded baseline indices and alphas.
        baselines = torch.stack([
            torch.zeros_like(x[0]),
            torch.from_numpy((rng.uniform(-1.0, 1.0, x.shape[1:])).astype(np.float32)),
            x.mean(dim=(0, 2, 3), keepdim=True)[0].expand_as(x[0]).clone(),
        ])
        gs_noise = torch.from_numpy(
            (rng.standard_normal((n, GS_SAMPLES) + tuple(x.shape[1:])) * GS_STDEV).astype(np.float32))
        with fixed_noise(gs_noise), recorded_numpy_draws(GS_SEED) as draws:
            gs_attr, gs_delta = GradientShap(model).attribute(
                x.clone(), baselines=baselines, n_samples=GS_SAMPLES, stdevs=GS_STDEV, target=t,
                return_convergence_delta=True)
        kinds = [k for k, _ in draws]
        if kinds != ["choice", "uniform"]:
            raise RuntimeError(f"GradientShap drew {kinds}, expected one choice and one uniform draw")
        index = torch.from_numpy(draws[0][1].astype(np.int64)).reshape(n, GS_SAMPLES)
        alpha = torch.tensor(draws[1][1], dtype=torch.float32).reshape(n, GS_SAMPLES)
        xn = x[:, None] + gs_noise
        b = baselines[index]
        a = alpha[:, :, None, None, None]
        z = (a * xn + (1.0 - a) * b).reshape((-1,) + tuple(x.shape[1:]))
        g = input_grads(model, z, t.repeat_interleave(GS_SAMPLES)).reshape(gs_noise.shape)
        check_close(f"{name} GradientShap", gs_attr, ((xn - b) * g).mean(1))
        call = (f"GradientShap(model).attribute(input, baselines=gradient-shap.baselines, n_samples={GS_SAMPLES}, "
                f"stdevs={GS_STDEV}, target=targets, return_convergence_delta=True)")
        fx.add("gradient-shap.baselines", baselines, "the baseline distribution: zeros, uniform(-1, 1) noise, the batch's mean colour")
        fx.add("gradient-shap.noise", gs_noise,
               f"noise plan [image, sample, C, H, W], N(0, {GS_STDEV}): the noisy input is input[i] + noise[i, s]")
        fx.add("gradient-shap.baseline_index", index, "plan: the baseline each sample used [image, sample]")
        fx.add("gradient-shap.alpha", alpha,
               "plan: each sample's alpha [image, sample]; the point is alpha*(input+noise) + (1-alpha)*baseline")
        fx.add("gradient-shap.attr", gs_attr,
               f"`{call}`: mean over samples of (input+noise-baseline) * gradient at the point")
        fx.add("gradient-shap.delta", gs_delta, "its convergence delta, one per sample, image-major")

        occ = Occlusion(model).attribute(x.clone(), sliding_window_shapes=OCC_WINDOW, strides=OCC_STRIDE, baselines=0.0,
                                         target=t)
        fx.add("occlusion.attr", occ,
               f"`Occlusion(model).attribute(input, sliding_window_shapes={OCC_WINDOW}, strides={OCC_STRIDE}, "
               "baselines=0, target=targets)`")
        out.append(fx)
    return out
