"""Fixture files: a deterministic safetensors writer and the tensor tables of fixtures/README.md.

The `safetensors` package writes its `__metadata__` map in hash order, so two runs give different bytes.
This writer orders everything itself: metadata keys sorted, tensors by descending element size then name
(so every tensor's data is aligned to its element size), the header padded with spaces to 8 bytes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import torch

DTYPE_NAMES = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("uint8"): "U8",
}


def to_numpy(value) -> np.ndarray:
    """Converts a tensor, array, list or scalar into a contiguous little-endian numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(value))
    if array.dtype not in DTYPE_NAMES:
        raise TypeError(f"dtype {array.dtype} is not one of {sorted(str(d) for d in DTYPE_NAMES)}")
    return array.astype(array.dtype.newbyteorder("<"), copy=False)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Writes `tensors` and `metadata` to `path` atomically, byte for byte the same on every run."""
    order = sorted(tensors, key=lambda name: (-tensors[name].dtype.itemsize, name))
    header: dict[str, object] = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs = []
    offset = 0
    for name in order:
        array = tensors[name]
        blob = array.tobytes(order="C")
        header[name] = {
            "dtype": DTYPE_NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


class Fixture:
    """One fixture file: its tensors, what each one means, and the metadata that says what made it."""

    def __init__(self, relpath: str, settings: dict):
        self.relpath = relpath
        self.settings = settings
        self.tensors: dict[str, np.ndarray] = {}
        self.docs: dict[str, str] = {}
        self.extra_metadata: dict[str, str] = {}

    def add(self, name: str, value, doc: str) -> np.ndarray:
        if name in self.tensors:
            raise KeyError(f"{self.relpath}: tensor `{name}` added twice")
        if "|" in doc or "\n" in doc:
            raise ValueError(f"{self.relpath}: the doc of `{name}` must be one table cell")
        array = to_numpy(value)
        self.tensors[name] = array
        self.docs[name] = doc
        return array

    def write(self, root: Path, versions: dict[str, str]) -> Path:
        metadata = {
            "generator": "tools/golden.py (cargo xtask golden)",
            "versions": json.dumps(versions, sort_keys=True),
            "settings": json.dumps(self.settings, sort_keys=True),
            **self.extra_metadata,
        }
        path = root / self.relpath
        write_safetensors(path, self.tensors, metadata)
        return path

    def table(self) -> str:
        lines = ["| tensor | dtype | shape | meaning |", "|---|---|---|---|"]
        for name in self.tensors:
            array = self.tensors[name]
            shape = "[" + ", ".join(str(d) for d in array.shape) + "]"
            lines.append(f"| `{name}` | {DTYPE_NAMES[array.dtype]} | {shape} | {self.docs[name]} |")
        return "\n".join(lines)


BEGIN = "<!-- tensors: {} -->"
END = "<!-- end tensors: {} -->"


def update_readme(readme: Path, fixtures: list[Fixture]) -> None:
    """Replaces the tensor table of each written fixture between its markers in fixtures/README.md.

    A fixture whose markers are missing gets a new section at the end, so nothing written goes undocumented.
    """
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# Golden fixtures\n"
    for fx in fixtures:
        begin, end = BEGIN.format(fx.relpath), END.format(fx.relpath)
        block = f"{begin}\n{fx.table()}\n{end}"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m: block, text)
        else:
            text = text.rstrip("\n") + f"\n\n### `fixtures/{fx.relpath}`\n\n{block}\n"
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, readme)
