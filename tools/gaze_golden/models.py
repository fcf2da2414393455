"""Width-reduced, random-weight copies of VGG16, ResNet-50 and Xception with the real checkpoints' key names.

- VGG16 in torchvision's layout (`features.N`, `classifier.0/3/6`).
- ResNet-50 in torchvision's layout, which timm's `resnet50` shares (`conv1`, `bn1`, `layerL.B.convK`, `layerL.0.downsample.0/1`, `fc`).
- Xception in timm's `legacy_xception` layout, built from timm's own `Block` and `SeparableConv2d`.

Every ReLU is out of place, so forward hooks see the tensors they name; that changes no value and no key.
Weights are random: He-normal convolutions, BatchNorm statistics calibrated on natural image crops and then
perturbed (running mean and variance, affine weight and bias all away from 0 and 1), the classifier scaled
so that the logits spread with a standard deviation of about 3.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from .store import Fixture

NUM_CLASSES = 12
DIV = 16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ---------------------------------------------------------------- architectures


class VGG16(nn.Module):
    """torchvision's `vgg16` with every width divided; `classifier` keeps its Linear-ReLU-Dropout layout."""

    def __init__(self, cfg: list, hidden: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(c * 7 * 7, hidden),
            nn.ReLU(inplace=False),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=False),
            nn.Dropout(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class Bottleneck(nn.Module):
    """torchvision's `Bottleneck` (stride on the 3x3 convolution), with one ReLU module per use."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu1 = nn.ReLU(inplace=False)
        self.relu2 = nn.ReLU(inplace=False)
        self.relu3 = nn.ReLU(inplace=False)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


class ResNet50(nn.Module):
    """torchvision's `resnet50` with every width divided."""

    def __init__(self, stem: int, planes: list[int], blocks: list[int], num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem
        for i, (p, n) in enumerate(zip(planes, blocks)):
            stride = 1 if i == 0 else 2
            layers = []
            for b in range(n):
                s = stride if b == 0 else 1
                down = None
                if b == 0 and (s != 1 or inplanes != p * 4):
                    down = nn.Sequential(nn.Conv2d(inplanes, p * 4, 1, stride=s, bias=False), nn.BatchNorm2d(p * 4))
                layers.append(Bottleneck(inplanes, p, s, down))
                inplanes = p * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Xception(nn.Module):
    """timm's `legacy_xception` with every width divided, built from timm's own blocks."""

    def __init__(self, widths: dict[str, int], num_classes: int):
        super().__init__()
        from timm.models.xception import Block, SeparableConv2d

        w = widths
        self.conv1 = nn.Conv2d(3, w["conv1"], 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(w["conv1"])
        self.act1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(w["conv1"], w["conv2"], 3, bias=False)
        self.bn2 = nn.BatchNorm2d(w["conv2"])
        self.act2 = nn.ReLU(inplace=False)
        self.block1 = Block(w["conv2"], w["block1"], 2, 2, start_with_relu=False)
        self.block2 = Block(w["block1"], w["block2"], 2, 2)
        self.block3 = Block(w["block2"], w["block3"], 2, 2)
        for i in range(4, 12):
            setattr(self, f"block{i}", Block(w["block3"], w["block3"], 3, 1))
        self.block12 = Block(w["block3"], w["block12"], 2, 2, grow_first=False)
        self.conv3 = SeparableConv2d(w["block12"], w["conv3"], 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(w["conv3"])
        self.act3 = nn.ReLU(inplace=False)
        self.conv4 = SeparableConv2d(w["conv3"], w["conv4"], 3, 1, 1)
        self.bn4 = nn.BatchNorm2d(w["conv4"])
        self.act4 = nn.ReLU(inplace=False)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w["conv4"], num_classes)
        for m in self.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        for i in range(1, 13):
            x = getattr(self, f"block{i}")(x)
        x = self.act3(self.bn3(self.conv3(x)))
        x = self.act4(self.bn4(self.conv4(x)))
        return self.fc(torch.flatten(self.global_pool(x), 1))


VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
XCEPTION_WIDTHS = dict(conv1=32, conv2=64, block1=128, block2=256, block3=728, block12=1024, conv3=1536, conv4=2048)

MODELS = {
    "vgg16": dict(
        seed=101,
        input_size=64,
        preprocessing="imagenet",
        layout="torchvision vgg16",
        config=dict(cfg=[v if v == "M" else v // DIV for v in VGG_CFG], classifier_hidden=4096 // 256),
        cam_layers=["features.22", "features.29"],
        acts=["features.9", "features.16", "features.22", "features.29", "features.30", "avgpool", "classifier.1"],
    ),
    "resnet50": dict(
        seed=102,
        input_size=64,
        preprocessing="imagenet",
        layout="torchvision resnet50 (timm resnet50 has the same keys)",
        config=dict(stem=64 // DIV, planes=[p // DIV for p in (64, 128, 256, 512)], blocks=[3, 4, 6, 3]),
        cam_layers=["layer3", "layer4"],
        acts=["maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"],
    ),
    "xception": dict(
        seed=103,
        input_size=71,
        preprocessing="inception",
        layout="timm legacy_xception",
        config=dict(widths={k: v // DIV for k, v in XCEPTION_WIDTHS.items()}),
        cam_layers=["block6", "act4"],
        acts=["block1", "block3", "block6", "block11", "block12", "act4", "global_pool"],
    ),
}


def build_arch(name: str) -> nn.Module:
    spec = MODELS[name]
    c = spec["config"]
    if name == "vgg16":
        model = VGG16(c["cfg"], c["classifier_hidden"], NUM_CLASSES)
    elif name == "resnet50":
        model = ResNet50(c["stem"], c["planes"], c["blocks"], NUM_CLASSES)
    elif name == "xception":
        model = Xception(c["widths"], NUM_CLASSES)
    else:
        raise KeyError(f"unknown model `{name}`; valid: {', '.join(MODELS)}")
    return model.eval()


def model_config(name: str) -> dict:
    spec = MODELS[name]
    size = spec["input_size"]
    return {
        "architecture": name,
        "layout": spec["layout"],
        "width_divisor": DIV,
        **spec["config"],
        "num_classes": NUM_CLASSES,
        "input_size": [3, size, size],
        "preprocessing": spec["preprocessing"],
        "batchnorm_eps": 1e-5,
        "seed": spec["seed"],
    }


# ---------------------------------------------------------------- inputs


def chelsea(root: Path) -> Image.Image:
    return Image.open(root / "images" / "chelsea.png").convert("RGB")


def normalise(pixels: np.ndarray, preprocessing: str) -> np.ndarray:
    """float32 HWC pixels in [0, 255] to a float32 CHW model input."""
    x = pixels.astype(np.float32) / np.float32(255.0)
    if preprocessing == "imagenet":
        x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    elif preprocessing == "inception":
        x = x * np.float32(2.0) - np.float32(1.0)
    else:
        raise KeyError(preprocessing)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def crop_input(img: Image.Image, box: tuple[int, int, int, int], size: int, flip: bool, preprocessing: str):
    crop = img.crop(box).resize((size, size), Image.BILINEAR)
    if flip:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return normalise(np.asarray(crop), preprocessing)


def model_inputs(root: Path, name: str, size: int | None = None) -> torch.Tensor:
    """The batch of two images the fixtures of this model use: two different crops of chelsea.png.

    `size` defaults to the model's input size; the gradient fixtures use smaller crops of the same boxes.
    """
    spec = MODELS[name]
    img = chelsea(root)
    boxes = [((75, 0, 375, 300), False), ((0, 40, 260, 300), True)]
    side = spec["input_size"] if size is None else size
    xs = [crop_input(img, b, side, f, spec["preprocessing"]) for b, f in boxes]
    return torch.from_numpy(np.stack(xs))


def random_crops(root: Path, name: str, count: int, seed: int, size: int | None = None) -> torch.Tensor:
    """`count` random square crops of chelsea.png (random side, position and flip), as model inputs."""
    spec = MODELS[name]
    side_out = spec["input_size"] if size is None else size
    img = chelsea(root)
    rng = np.random.default_rng(seed)
    xs = []
    for _ in range(count):
        side = int(rng.integers(96, 300))
        left = int(rng.integers(0, img.width - side + 1))
        top = int(rng.integers(0, img.height - side + 1))
        flip = bool(rng.integers(0, 2))
        xs.append(crop_input(img, (left, top, left + side, top + side), side_out, flip, spec["preprocessing"]))
    return torch.from_numpy(np.stack(xs))


# ---------------------------------------------------------------- random weights


def _forward_order(model: nn.Module, x: torch.Tensor, kinds) -> list[nn.Module]:
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, _i: order.append(m)) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    seen, unique = set(), []
    for m in order:
        if id(m) not in seen:
            seen.add(id(m))
            unique.append(m)
    return unique


def _capture(model: nn.Module, module: nn.Module, x: torch.Tensor, which: str) -> torch.Tensor:
    box = {}

    def hook(_m, inputs, output):
        box["v"] = (inputs[0] if which == "input" else output).detach().clone()

    h = module.register_forward_hook(hook)
    with torch.no_grad():
        model(x)
    h.remove()
    return box["v"]


@torch.no_grad()
def randomise(model: nn.Module, name: str, calib: torch.Tensor) -> dict:
    """Draws the weights, calibrates them on `calib`, and returns diagnostics."""
    g = torch.Generator().manual_seed(MODELS[name]["seed"])
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / m.in_features))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(0.6 + 0.8 * torch.rand(m.weight.shape, generator=g))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            m.running_mean.zero_()
            m.running_var.fill_(1.0)

    bns = _forward_order(model, calib, nn.BatchNorm2d)
    for bn in bns:
        # Statistics of this BatchNorm's input with every earlier one already set, then perturbed so that
        # running_mean and running_var are not the batch's own (the map is not an exact standardisation).
        h = _capture(model, bn, calib, "input")
        mean = h.mean(dim=(0, 2, 3))
        var = h.var(dim=(0, 2, 3), unbiased=False)
        bn.running_mean.copy_(mean + 0.2 * var.sqrt() * torch.randn(mean.shape, generator=g))
        bn.running_var.copy_(var * torch.exp(0.3 * torch.randn(var.shape, generator=g)) + 1e-3)

    if not bns:
        # No BatchNorm (VGG16): scale each layer so its pre-activation output has unit standard deviation.
        layers = _forward_order(model, calib, (nn.Conv2d, nn.Linear))
        for layer in layers[:-1]:
            out = _capture(model, layer, calib, "output")
            s = float(out.std())
            layer.weight.div_(s)
            layer.bias.div_(s)

    # Centre each logit over the calibration images, so the class that wins depends on the image and not
    # on the bias, then scale to a spread of about 3.
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    logits = model(calib)
    head.bias.sub_(logits.mean(dim=0) - 0.1 * torch.randn(head.bias.shape, generator=g))
    logits = model(calib)
    s = float(logits.std(dim=1).mean())
    head.weight.mul_(3.0 / s)
    head.bias.mul_(3.0 / s)
    logits = model(calib)
    return {
        "calib_logit_std_per_image": [round(float(v), 3) for v in logits.std(dim=1)],
        "calib_argmax": [int(v) for v in logits.argmax(dim=1)],
    }


# ---------------------------------------------------------------- fixtures


def weights_path(root: Path, name: str) -> Path:
    return root / "models" / f"{name}.safetensors"


def io_path(root: Path, name: str) -> Path:
    return root / "models" / f"{name}.io.safetensors"


def load_model(root: Path, name: str) -> nn.Module:
    """The committed reduced model, for the peer fixtures: built and loaded from fixtures/models."""
    from safetensors.torch import load_file

    path = weights_path(root, name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `cargo xtask golden --only models` first")
    model = build_arch(name)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def load_io(root: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = io_path(root, name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `cargo xtask golden --only models` first")
    return load_file(str(path))


def module(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def state_dict_for_checkpoint(model: nn.Module) -> dict[str, torch.Tensor]:
    """The checkpoint keys: parameters and running statistics, without `num_batches_tracked`."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def check_keys(name: str, state: dict[str, torch.Tensor]) -> None:
    """Fails unless the reduced checkpoint has exactly the keys (and tensor ranks) of the full-size model."""
    import timm
    import torchvision

    with torch.device("meta"):
        refs = {
            "vgg16": [torchvision.models.vgg16(num_classes=NUM_CLASSES)],
            "resnet50": [torchvision.models.resnet50(num_classes=NUM_CLASSES),
                         timm.create_model("resnet50", num_classes=NUM_CLASSES)],
            "xception": [timm.create_model("legacy_xception", num_classes=NUM_CLASSES)],
        }[name]
    for ref in refs:
        want = {k: v.dim() for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
        have = {k: v.dim() for k, v in state.items()}
        if want != have:
            diff = sorted(set(want.items()) ^ set(have.items()))[:10]
            raise RuntimeError(f"{name}: checkpoint keys differ from {type(ref).__name__}: {diff}")


def build(root: Path) -> list[Fixture]:
    out = []
    for name, spec in MODELS.items():
        model = build_arch(name)
        x = model_inputs(root, name)
        calib = torch.cat([x, random_crops(root, name, 14, spec["seed"])])
        diag = randomise(model, name, calib)
        config = model_config(name)

        wfx = Fixture(f"models/{name}.safetensors", {"model": config, "calibration": diag})
        wfx.extra_metadata["config"] = json.dumps(config, sort_keys=True)
        state = state_dict_for_checkpoint(model)
        check_keys(name, state)
        for k, v in state.items():
            kind = k.rsplit(".", 1)[-1]
            wfx.add(k, v.float(), f"checkpoint `{kind}` of `{k.rsplit('.', 1)[0]}`")
        out.append(wfx)

        iofx = Fixture(
            f"models/{name}.io.safetensors",
            {"model": config, "input": "two crops of images/chelsea.png, PIL bilinear resize, " + spec["preprocessing"]},
        )
        iofx.add("input", x, f"model input: two crops of chelsea.png, {spec['preprocessing']} preprocessing, NCHW")
        acts = {}
        hooks = []
        for path in spec["acts"]:
            def hook(_m, _i, o, path=path):
                acts[path] = o.detach().clone()
            hooks.append(module(model, path).register_forward_hook(hook))
        xg = x.clone().requires_grad_(True)
        logits = model(xg)
        for h in hooks:
            h.remove()
        logits[:, 1].sum().backward()
        iofx.add("logits", logits, "`model(input)`: raw logits, eval mode")
        for path in spec["acts"]:
            iofx.add(f"act.{path}", acts[path], f"output of module `{path}`")
        iofx.add("grad_input.class1", xg.grad, "gradient of logit 1 of each image with respect to `input`")
        spread = logits.detach().std(dim=1)
        if float(spread.min()) < 0.5:
            raise RuntimeError(f"{name}: logits barely spread ({spread.tolist()}); change the seed or the scaling")
        print(f"  {name}: logits std {[round(float(v), 2) for v in spread]}, argmax {logits.argmax(1).tolist()}, "
              f"calibration {diag}")
        out.append(iofx)
    return out
