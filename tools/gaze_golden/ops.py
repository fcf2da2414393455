"""fixtures/ops.safetensors: PyTorch references for the engine's differentiable ops, in float64."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .store import Fixture

SEED = 1

N, H, W = 2, 9, 7


def _case(fx: Fixture, g: torch.Generator, name: str, call: str, x: torch.Tensor, fn, params=None):
    """Runs `fn(x, *params)`, backpropagates a fixed random upstream gradient, and stores everything."""
    params = params or {}
    x = x.clone().requires_grad_(True)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    y = fn(x, **leaves)
    grad_output = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(grad_output)
    fx.add(f"{name}.input", x, f"input of `{call}`")
    for k, v in leaves.items():
        fx.add(f"{name}.{k}", v, f"`{k}` of `{call}`")
    fx.add(f"{name}.output", y, f"`{call}`")
    fx.add(f"{name}.grad_output", grad_output, "fixed random upstream gradient (standard normal)")
    fx.add(f"{name}.grad_input", x.grad, "gradient of `(output * grad_output).sum()` with respect to `input`")
    for k, v in leaves.items():
        fx.add(f"{name}.grad_{k}", v.grad, f"gradient of `(output * grad_output).sum()` with respect to `{k}`")


def build() -> list[Fixture]:
    g = torch.Generator().manual_seed(SEED)
    fx = Fixture("ops.safetensors", {"seed": SEED, "dtype": "float64", "device": "cpu"})

    def randn(*shape):
        return torch.randn(shape, generator=g, dtype=torch.float64)

    def ties(*shape):
        # Integers 0..2, so most pooling windows hold several equal maxima.
        return torch.randint(0, 3, shape, generator=g).to(torch.float64)

    x3 = lambda: randn(N, 3, H, W)  # noqa: E731

    _case(fx, g, "maxpool_k3s2p1", "F.max_pool2d(input, 3, stride=2, padding=1)", x3(),
          lambda x: F.max_pool2d(x, 3, stride=2, padding=1))
    _case(fx, g, "maxpool_k3s2_ceil", "F.max_pool2d(input, 3, stride=2, ceil_mode=True)", x3(),
          lambda x: F.max_pool2d(x, 3, stride=2, ceil_mode=True))
    _case(fx, g, "maxpool_k2s2_ties", "F.max_pool2d(input, 2, stride=2) on integer inputs 0..2", ties(N, 3, H, W),
          lambda x: F.max_pool2d(x, 2, stride=2))
    _case(fx, g, "maxpool_k3s2p1_ties", "F.max_pool2d(input, 3, stride=2, padding=1) on integer inputs 0..2",
          ties(N, 3, H, W), lambda x: F.max_pool2d(x, 3, stride=2, padding=1))

    _case(fx, g, "avgpool_k3s2p1_incpad", "F.avg_pool2d(input, 3, stride=2, padding=1, count_include_pad=True)", x3(),
          lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=True))
    _case(fx, g, "avgpool_k3s2p1_excpad", "F.avg_pool2d(input, 3, stride=2, padding=1, count_include_pad=False)", x3(),
          lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False))
    _case(fx, g, "avgpool_k3s2_ceil", "F.avg_pool2d(input, 3, stride=2, ceil_mode=True)", x3(),
          lambda x: F.avg_pool2d(x, 3, stride=2, ceil_mode=True))
    _case(fx, g, "avgpool_k3s2p1_ceil_excpad",
          "F.avg_pool2d(input, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)", randn(N, 3, 8, 6),
          lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False))

    _case(fx, g, "adaptive_avgpool_7x5_to_3x2", "F.adaptive_avg_pool2d(input, (3, 2))", randn(N, 3, 7, 5),
          lambda x: F.adaptive_avg_pool2d(x, (3, 2)))
    _case(fx, g, "adaptive_avgpool_2x2_to_7x7", "F.adaptive_avg_pool2d(input, (7, 7))", randn(N, 3, 2, 2),
          lambda x: F.adaptive_avg_pool2d(x, (7, 7)))
    _case(fx, g, "adaptive_avgpool_9x7_to_1x1", "F.adaptive_avg_pool2d(input, 1)", x3(),
          lambda x: F.adaptive_avg_pool2d(x, 1))

    for size, tag in [((20, 15), "up"), ((4, 3), "down")]:
        for ac in (False, True):
            call = f"F.interpolate(input, size={size}, mode='bilinear', align_corners={ac})"
            _case(fx, g, f"bilinear_{tag}_ac{int(ac)}", call, x3(),
                  lambda x, size=size, ac=ac: F.interpolate(x, size=size, mode="bilinear", align_corners=ac))

    conv_cases = [
        ("conv_s2p1", 3, (4, 3, 3, 3), dict(stride=2, padding=1)),
        ("conv_d2", 3, (4, 3, 3, 3), dict(padding=2, dilation=2)),
        ("conv_d2s2", 3, (4, 3, 3, 3), dict(stride=2, padding=1, dilation=2)),
        ("conv_g2", 4, (6, 2, 3, 3), dict(padding=1, groups=2)),
        ("conv_dw", 4, (4, 1, 3, 3), dict(padding=1, groups=4)),
        ("conv_dw_s2", 4, (4, 1, 3, 3), dict(stride=2, padding=1, groups=4)),
        ("conv_k1s2", 4, (6, 4, 1, 1), dict(stride=2)),
        ("conv_k7s2p3", 3, (4, 3, 7, 7), dict(stride=2, padding=3)),
    ]
    for name, cin, wshape, kw in conv_cases:
        args = ", ".join(f"{k}={v}" for k, v in kw.items())
        _case(fx, g, name, f"F.conv2d(input, weight, bias, {args})", randn(N, cin, H, W),
              lambda x, weight, bias, kw=kw: F.conv2d(x, weight, bias, **kw),
              {"weight": randn(*wshape) / (wshape[1] * wshape[2] * wshape[3]) ** 0.5, "bias": randn(wshape[0])})

    relu_in = randn(N, 3, H, W)
    relu_in[relu_in.abs() < 0.3] = 0.0
    _case(fx, g, "relu_zeros", "F.relu(input) on an input with exact zeros", relu_in, F.relu)
    _case(fx, g, "softmax", "F.softmax(input, dim=1)", randn(N, 12) * 3, lambda x: F.softmax(x, dim=1))
    _case(fx, g, "linear", "F.linear(input, weight, bias)", randn(N, 10),
          lambda x, weight, bias: F.linear(x, weight, bias), {"weight": randn(12, 10), "bias": randn(12)})
    return [fx]
