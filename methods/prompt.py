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

from bench.core.api import TEXT, VISION, TaskSpec
from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import FrozenBackbone


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
            from methods._prompt_nn import PadPrompter, PromptedVision

            size = task.input_size["image_size"]
            if 2 * self.pad >= size:
                raise ValueError(f"Invalid pad: {self.pad} (a frame of 2 x {self.pad} px leaves no image at {size})")
            prompter = PadPrompter(size, self.pad).to(next(model.encoder.parameters()).device)
            model.encoder = PromptedVision(model.encoder, prompter)
        for name, p in model.encoder.named_parameters():
            p.requires_grad_("prompt_encoder" in name or "prompter" in name)
        set_trainable(model.head, True)
        return model
