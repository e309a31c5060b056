"""full: full fine-tuning. Every weight trains; AdamW with warmup then linear decay (the loop), weight decay
0.01, and a lower learning rate for the pretrained backbone than for the new head.

Usual settings (DOMAIN.md): LR 2e-5..5e-5 for BERT-like encoders (we use 5e-5: MiniLM is small), 1e-5..1e-4 for
vision (1e-4), head 1e-3. Best ceiling with enough data; most memory; most forgetting.

Batch-norm statistics (``bn_stats``): the running means/variances are buffers, not weights. By default they stay
at their pretrained values while every weight (BN's affine scale and shift included) trains, as detection and
segmentation fine-tuning usually does. Measured on pneumonia-mnist (64 px, seed 0): updating them during training
gave test AUROC 0.742 / 0.813 / 0.909 at budgets 64 / 256 / 1024 (validation AUROC fell to ~0.45 after a few
steps while the running statistics chased the X-ray batches), keeping them gave 0.904 / 0.937 / 0.966.
``bn_stats=update`` restores the textbook behaviour. No effect on backbones without batch norm (MiniLM).
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import FineTune


@METHODS.register("full")
@dataclass(frozen=True)
class Full(FineTune):
    name = "full"
    version = 1
    description = "all weights train; backbone LR below head LR"

    def prepare(self, model, backbone, task):
        set_trainable(model, True)
        return model
