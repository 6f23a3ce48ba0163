"""``transformers`` backend: a local image-text-to-text model (Qwen3-VL), batched greedy.

The model and processor are loaded once per process from ``model_path`` (a directory
written by ``save_pretrained`` or ``hf download``; nothing is downloaded: offline
mode is forced), in ``bfloat16`` on a GPU and float32 on the CPU, with left padding
so that a batch of prompts generates together. The prompt goes through the model's
own chat template with the slice as an image part.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from brainxai.devices import resolve_device
from brainxai.pseudolabel.config import TransformersConfig


def model_fingerprint(model_path: str) -> str:
    """Model identity for the cache key: its config plus weight file names and sizes."""
    root = Path(model_path)
    h = hashlib.sha256((root / "config.json").read_bytes())
    for f in sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


@lru_cache(maxsize=2)
def load_vlm(model_path: str, dtype: str, device: str, min_pixels: int, max_pixels: int) -> Any:
    """(model, processor) from a local directory, cached per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if not (Path(model_path) / "config.json").is_file():
        raise FileNotFoundError(f"no Hugging Face model in {model_path!r} (config.json missing)")
    kwargs: dict[str, Any] = {"local_files_only": True}
    if min_pixels:
        kwargs["min_pixels"] = min_pixels
    if max_pixels:
        kwargs["max_pixels"] = max_pixels
    processor = AutoProcessor.from_pretrained(model_path, **kwargs)
    processor.tokenizer.padding_side = "left"
    torch_dtype = getattr(torch, dtype) if device.startswith("cuda") else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(
        model_path, dtype=torch_dtype, local_files_only=True
    )
    return model.to(device).eval(), processor


class TransformersBackend:
    """Batched greedy generation with a local VLM (see the module docstring)."""

    def __init__(self, cfg: TransformersConfig) -> None:
        if not cfg.model_path:
            raise ValueError(
                "pseudolabel.transformers.model_path is empty: point it at a local Qwen3-VL "
                "directory (see README, 'Real VLM weights')"
            )
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.batch_size = cfg.batch_size
        self.model_id = f"transformers:{model_fingerprint(cfg.model_path)}"

    def settings(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.cfg.max_new_tokens,
            "dtype": self.cfg.dtype if self.device.startswith("cuda") else "float32",
            "min_pixels": self.cfg.min_pixels,
            "max_pixels": self.cfg.max_pixels,
        }

    def generate(self, requests: list[tuple[Image.Image, str]]) -> list[str]:
        import torch

        model, processor = load_vlm(
            self.cfg.model_path, self.cfg.dtype, self.device, self.cfg.min_pixels,
            self.cfg.max_pixels,
        )  # fmt: skip
        messages = [
            [{"role": "user", "content": [{"type": "image", "image": img},
                                          {"type": "text", "text": prompt}]}]
            for img, prompt in requests
        ]  # fmt: skip
        inputs = processor.apply_chat_template(
            messages,
            tokenize=True,
            add_generation_prompt=True,
            return_dict=True,
            return_tensors="pt",
            padding=True,
        ).to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=self.cfg.max_new_tokens,
                                 do_sample=False)  # fmt: skip
        new = out[:, inputs["input_ids"].shape[1] :]
        return [str(t) for t in processor.batch_decode(new, skip_special_tokens=True)]
