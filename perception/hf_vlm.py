"""The "hf" backend: a local vision-language model through transformers' AutoProcessor and
AutoModelForImageTextToText, prompted with the processor's chat template.

Any image-text-to-text model whose processor builds here works (SmolVLM v1 / Idefics3, LLaVA, ...).
The processors of the Qwen2-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL), SmolVLM2, InternVL and
LLaVA-OneVision need torchvision, which cannot be installed next to this project's CPU torch: they
fail to load here with a BackendError saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from mstt.perception.chat import decode_data_url
from mstt.perception.errors import BackendError, check_field, is_count
from mstt.perception.vlm import VLMConfig, VLMPerceiver

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEFAULT_MAX_NEW_TOKENS = 512


@dataclass(frozen=True, kw_only=True)
class HFConfig(VLMConfig):
    """A local transformers VLM."""

    model: str
    """Local model directory (or a hub id where a network and the weights are available)."""
    device: str = "cpu"
    """'cpu', 'cuda', 'cuda:N', or 'auto' (cuda when available)."""
    dtype: str = "auto"
    """Weights' dtype: 'auto' (as saved), 'float32', 'bfloat16' or 'float16'."""
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    """Generation budget of one answer; a route of ~20 points needs ~200 tokens."""
    local_files_only: bool = False
    """Never touch the network (set it on offline machines to fail fast instead of retrying)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        cls = "HFConfig"
        check_field(cls, isinstance(self.model, str) and bool(self.model), "model", self.model, "must name a model")
        check_field(cls, self.dtype in DTYPES, "dtype", self.dtype, f"must be one of {list(DTYPES)}")
        tokens = self.max_new_tokens
        check_field(cls, is_count(tokens, 1), "max_new_tokens", tokens, "must be an integer > 0")


def to_hf_conversation(messages: Sequence[BaseMessage]) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    """langchain-core messages -> (the processor's chat format, the images in order of appearance).

    Every turn's content becomes a list of parts; an image_url part (a data URL) becomes an
    {"type": "image"} placeholder, its pixels going to the processor separately.
    """
    conversation, images = [], []
    for message in messages:
        role = "user"
        if isinstance(message, SystemMessage):
            role = "system"
        elif isinstance(message, AIMessage):
            role = "assistant"
        parts: list[dict[str, Any]] = []
        content = message.content if isinstance(message.content, list) else [message.content]
        for part in content:
            if isinstance(part, str):
                parts.append({"type": "text", "text": part})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
                images.append(decode_data_url(url))
                parts.append({"type": "image"})
            else:
                raise ValueError(f"unsupported message part of type {part.get('type')!r}")
        conversation.append({"role": role, "content": parts})
    return conversation, images


class HFChat:
    """A ChatModel running a local transformers VLM (greedy decoding)."""

    def __init__(self, config: HFConfig) -> None:

        self.config = config
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.processor = AutoProcessor.from_pretrained(config.model, local_files_only=config.local_files_only)
            self.model = AutoModelForImageTextToText.from_pretrained(
                config.model,
                dtype=config.dtype if config.dtype == "auto" else getattr(torch, config.dtype),
                local_files_only=config.local_files_only,
            )
        except ImportError as error:
            raise BackendError(
                f"hf backend: the processor or model of {config.model!r} needs a package that is missing: "
                f"{error}. Qwen2-VL-family, SmolVLM2, InternVL and LLaVA-OneVision processors need torchvision, "
                "which cannot be installed here; use an Idefics3/SmolVLM-v1 or LLaVA model, or the openai "
                "backend against a server that runs the model"
            ) from None
        except (OSError, ValueError) as error:
            raise BackendError(
                f"hf backend: cannot load {config.model!r} (HFConfig.model): {error}. Give a local directory "
                "holding the model and its processor; no hub is reachable on offline machines"
            ) from None
        self.model.to(device).eval()

    def __repr__(self) -> str:
        return f"HFChat(model={self.config.model!r}, device={str(self.model.device)!r})"

    def complete(self, messages: Sequence[BaseMessage]) -> str:

        conversation, images = to_hf_conversation(messages)
        prompt = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        inputs = self.processor(text=prompt, images=images or None, return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False)
        answer = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(answer, skip_special_tokens=True)[0]


class HFPerceiver(VLMPerceiver):
    """The "hf" backend: VLMPerceiver over a local transformers model."""

    def __init__(self, config: HFConfig) -> None:
        super().__init__(HFChat(config), config, "hf")


__all__ = ["HFChat", "HFConfig", "HFPerceiver", "to_hf_conversation"]
