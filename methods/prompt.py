"""prompt: prompt tuning. Text (Lester et al. 2021, through peft): ``n_tokens`` trainable embeddings are prepended
to the input of the frozen encoder; features are the mean over the real tokens. Vision (Bahng et al. 2022,
written here: peft has no visual prompting): a learnable frame of ``pad`` pixels is added around every input image
(the padding prompter), which works on any CNN. The backbone is frozen (batch-norm statistics too); the head trains.

Parameters: text n_tokens * hidden; vision 3 * (S^2 - (S - 2 pad)^2) for S = the task's image size. At other input
sizes (the 224 px forgetting probe) the frame is resized with the image. DOMAIN.md: 10-100 tokens, LR ~1e-2..3e-1;
expected to lag LoRA on models this small.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.api import TEXT, VISION, TaskSpec
from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import FrozenBackbone


class PadPrompter(nn.Module):
    """Adds a learnable frame of width ``pad`` around ``size`` x ``size`` images (zero inside)."""

    def __init__(self, size: int, pad: int) -> None:
        super().__init__()
        inner = size - 2 * pad
        self.size, self.pad = size, pad
        self.top = nn.Parameter(torch.zeros(3, pad, size))
        self.bottom = nn.Parameter(torch.zeros(3, pad, size))
        self.left = nn.Parameter(torch.zeros(3, inner, pad))
        self.right = nn.Parameter(torch.zeros(3, inner, pad))

    def frame(self) -> torch.Tensor:
        inner = self.size - 2 * self.pad
        middle = torch.cat([self.left, self.top.new_zeros(3, inner, inner), self.right], dim=2)
        return torch.cat([self.top, middle, self.bottom], dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        frame = self.frame().unsqueeze(0)
        if frame.shape[-1] != pixel_values.shape[-1] or frame.shape[-2] != pixel_values.shape[-2]:
            frame = F.interpolate(frame, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
        return pixel_values + frame


class PromptedVision(nn.Module):
    """A vision encoder whose inputs first pass through a visual prompt."""

    def __init__(self, encoder: nn.Module, prompter: PadPrompter) -> None:
        super().__init__()
        self.prompter = prompter
        self.inner = encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.inner(self.prompter(pixel_values))

    def blocks(self) -> list[nn.Module]:
        return self.inner.blocks()


@METHODS.register("prompt")
@dataclass(frozen=True)
class Prompt(FrozenBackbone):
    name = "prompt"
    version = 1
    description = "soft prompt tokens (text, peft) or a learnable pixel frame (vision) + head"

    n_tokens: int = 20  # text
    pad: int = 8  # vision: frame width in pixels at the task's image size (Bahng et al.: 30 at 224 px)
    lr: float = 3e-2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_tokens < 1 or self.pad < 1:
            raise ValueError(f"Invalid n_tokens/pad: {self.n_tokens}/{self.pad} (must be >= 1)")

    @classmethod
    def defaults_for(cls, spec: TaskSpec) -> dict:
        return {"lr": 1e-2} if spec.modality == VISION else {}

    def prepare(self, model, backbone, task):
        set_trainable(model, False)
        if backbone.modality == TEXT:
            from peft import PromptTuningConfig, TaskType, get_peft_model

            config = PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=self.n_tokens)
            model.encoder.wrap_transformer(lambda transformer: get_peft_model(transformer, config))
        else:
            size = task.image_size
            if 2 * self.pad >= size:
                raise ValueError(f"Invalid pad: {self.pad} (a frame of 2 x {self.pad} px leaves no image at {size})")
            prompter = PadPrompter(size, self.pad).to(next(model.encoder.parameters()).device)
            model.encoder = PromptedVision(model.encoder, prompter)
        for name, p in model.encoder.named_parameters():
            p.requires_grad_("prompt_encoder" in name or "prompter" in name)
        set_trainable(model.head, True)
        return model
