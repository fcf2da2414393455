"""fixtures/preprocess.safetensors: images/chelsea.png through torchvision's and Keras' ImageNet preprocessing.

- torchvision: `Resize(256)` (PIL bilinear, which antialiases when shrinking), `CenterCrop(224)`, `ToTensor()`,
  `Normalize(mean, std)`.
- Keras `preprocess_input`, reimplemented in numpy exactly as `keras.applications.imagenet_utils` does it,
  after `keras.utils.load_img(path, target_size=...)`, whose default `interpolation="nearest"` is
  `PIL.Image.resize(size, Image.NEAREST)` straight to the target size (no crop, no aspect ratio kept).
  - "caffe" (VGG16, ResNet50 in Keras): RGB to BGR, subtract the BGR means [103.939, 116.779, 123.68], no scaling.
  - "tf" (Xception): x / 127.5 - 1.
Keras works in NHWC; the stored tensors are NCHW, like every gaze input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .store import Fixture

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def keras_load_img(path: Path, size: tuple[int, int]) -> np.ndarray:
    """`keras.utils.load_img(path, target_size=size)` then `img_to_array`: float32 HWC RGB in [0, 255]."""
    img = Image.open(path)
    if img.mode != "RGB":
        img = img.convert("RGB")
    height, width = size
    if img.size != (width, height):
        img = img.resize((width, height), Image.NEAREST)
    return np.asarray(img, dtype=np.float32)


def keras_preprocess_input(x: np.ndarray, mode: str) -> np.ndarray:
    """`keras.applications.imagenet_utils.preprocess_input` for numpy arrays (`_preprocess_numpy_input`)."""
    x = x.copy()
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    if mode == "caffe":
        x = x[..., ::-1].copy()
        mean = [103.939, 116.779, 123.68]
        x[..., 0] -= mean[0]
        x[..., 1] -= mean[1]
        x[..., 2] -= mean[2]
        return x
    raise ValueError(f"mode {mode}")


def build(root: Path) -> list[Fixture]:
    from torchvision import transforms as T

    path = root / "images" / "chelsea.png"
    img = Image.open(path).convert("RGB")
    tv = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    fx = Fixture(
        "preprocess.safetensors",
        {
            "image": "images/chelsea.png",
            "torchvision": "Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std)]) on the PIL image",
            "keras_caffe": "load_img(target_size=(224, 224)) (PIL NEAREST), preprocess_input(mode='caffe')",
            "keras_tf": "load_img(target_size=(299, 299)) (PIL NEAREST), preprocess_input(mode='tf')",
        },
    )
    fx.add("torchvision.imagenet", tv(img).unsqueeze(0),
           "torchvision Resize(256) (PIL bilinear, 451x300 to 384x256), CenterCrop(224), ToTensor, "
           "Normalize(ImageNet mean, std); RGB")
    caffe = keras_preprocess_input(keras_load_img(path, (224, 224)), "caffe")
    fx.add("keras.caffe", torch.from_numpy(caffe.transpose(2, 0, 1)[None].copy()),
           "Keras load_img 224x224 (PIL NEAREST, no crop), preprocess_input mode 'caffe'; BGR channels, NCHW")
    tf = keras_preprocess_input(keras_load_img(path, (299, 299)), "tf")
    fx.add("keras.tf", torch.from_numpy(tf.transpose(2, 0, 1)[None].copy()),
           "Keras load_img 299x299 (PIL NEAREST, no crop), preprocess_input mode 'tf' ([-1, 1]); RGB, NCHW")
    return [fx]
