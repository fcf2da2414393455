"""fixtures/preprocess.safetensors: images/chelsea.png through torchvision's and Keras' ImageNet preprocessing.

- torchvision: `Resize(256)` (PIL bilinear, which antialiases when shrinking), `CenterCrop(224)`, `ToTensor()`,
  `Normalize(mean, std)`.
- Keras `preprocess_input`, reimplemented in numpy exactly as `keras.applications.imagenet_utils` does it,
  after `keras.utils.load_img(path, target_size=...)`, whose default `interpolation="nearest"` is
  `PIL.Image.resize(size, Image.NEAREST)` straight to the target size (no crop, no aspect ratio kept).
  - "caffe" (VGG16, ResNet50 in Keras): RGB to BGR, subtract the BGR means [103.939, 116.779, 123.68], no scaling.
  - "tf" (Xception): x / 127.5 - 1.

Only the resampled 8-bit pixels are stored (NCHW, RGB): each normalised float32 tensor is a fixed per-value
formula of them, which this module checks bit for bit against the peer's own tensor before writing, so a test
derives the reference exactly from the pixels and the file stays small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .store import Fixture

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
CAFFE_BGR_MEAN = [103.939, 116.779, 123.68]


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
        x[..., 0] -= CAFFE_BGR_MEAN[0]
        x[..., 1] -= CAFFE_BGR_MEAN[1]
        x[..., 2] -= CAFFE_BGR_MEAN[2]
        return x
    raise ValueError(f"mode {mode}")


def to_pixels(hwc: np.ndarray) -> np.ndarray:
    """float32 or uint8 HWC RGB pixels with integer values to uint8 NCHW, checking that nothing is lost."""
    pixels = np.asarray(hwc).astype(np.uint8)
    if not np.array_equal(pixels.astype(np.float32), np.asarray(hwc, dtype=np.float32)):
        raise RuntimeError("the resampled image is not 8-bit")
    return pixels.transpose(2, 0, 1)[None].copy()


def derived_torchvision(pixels: np.ndarray) -> np.ndarray:
    """What a test derives from `torchvision.imagenet.pixels`: float32 `(p / 255 - mean) / std`, NCHW."""
    x = pixels.astype(np.float32) / np.float32(255.0)
    mean = np.array(MEAN, np.float32)[None, :, None, None]
    std = np.array(STD, np.float32)[None, :, None, None]
    return (x - mean) / std


def check_equal(what: str, derived: np.ndarray, peer: np.ndarray) -> None:
    if derived.shape != peer.shape or not np.array_equal(derived, peer):
        err = float(np.abs(derived - peer).max()) if derived.shape == peer.shape else float("nan")
        raise RuntimeError(f"{what}: the tensor derived from the stored pixels differs from the peer's by {err}")


def build(root: Path) -> list[Fixture]:
    from torchvision import transforms as T

    path = root / "images" / "chelsea.png"
    img = Image.open(path).convert("RGB")
    fx = Fixture(
        "preprocess.safetensors",
        {
            "image": "images/chelsea.png",
            "torchvision": "Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std)]) on the PIL image",
            "keras_caffe": "load_img(target_size=(224, 224)) (PIL NEAREST), preprocess_input(mode='caffe')",
            "keras_tf": "load_img(target_size=(299, 299)) (PIL NEAREST), preprocess_input(mode='tf')",
            "stored": "uint8 pixels after the resampling; each normalised tensor was checked bit for bit against "
            "its formula of the pixels",
        },
    )

    cropped = T.Compose([T.Resize(256), T.CenterCrop(224)])(img)
    tv_pixels = to_pixels(np.asarray(cropped))
    tv = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])(cropped).unsqueeze(0).numpy()
    full = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])(img).unsqueeze(0)
    check_equal("torchvision (split pipeline)", tv, full.numpy())
    check_equal("torchvision", derived_torchvision(tv_pixels), tv)
    fx.add("torchvision.imagenet.pixels", tv_pixels,
           "torchvision Resize(256) (PIL bilinear, 451x300 to 384x256), CenterCrop(224): RGB pixels; "
           "the model input is float32 (p / 255 - mean) / std, bit for bit")

    caffe_rgb = keras_load_img(path, (224, 224))
    caffe = keras_preprocess_input(caffe_rgb, "caffe").transpose(2, 0, 1)[None]
    caffe_pixels = to_pixels(caffe_rgb)
    derived = caffe_pixels[:, ::-1].astype(np.float32) - np.array(CAFFE_BGR_MEAN, np.float32)[None, :, None, None]
    check_equal("keras caffe", derived, caffe)
    fx.add("keras.caffe.pixels", caffe_pixels,
           "Keras load_img 224x224 (PIL NEAREST, no crop): RGB pixels; mode 'caffe' is float32 BGR p - "
           "[103.939, 116.779, 123.68], bit for bit")

    tf_rgb = keras_load_img(path, (299, 299))
    tf = keras_preprocess_input(tf_rgb, "tf").transpose(2, 0, 1)[None]
    tf_pixels = to_pixels(tf_rgb)
    derived = tf_pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    check_equal("keras tf", derived, tf)
    fx.add("keras.tf.pixels", tf_pixels,
           "Keras load_img 299x299 (PIL NEAREST, no crop): RGB pixels; mode 'tf' is float32 p / 127.5 - 1, bit for bit")
    return [fx]
