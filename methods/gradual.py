"""gradual: gradual unfreezing (ULMFiT, Howard & Ruder 2018). The head trains alone first; then the backbone's
blocks are unfrozen one at a time from the top down, on an even schedule: with B blocks the run is cut into B + 1
equal stages and stage k trains the head plus the top k blocks, so every block trains in the last stage.
Unfrozen blocks train at the backbone LR (below the head's).

Every parameter is in the optimizer from the start; frozen ones simply have no gradient, which AdamW skips (no
update, no decay). Trainable counts report what trains by the end of the run.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import FineTune


@METHODS.register("gradual")
@dataclass(frozen=True)
class Gradual(FineTune):
    name = "gradual"
    version = 1
    description = "head first, then blocks unfrozen top-down on a schedule"

    def prepare(self, model, backbone, task):
        set_trainable(model, True)
        return model

    def unfrozen_blocks(self, n_blocks: int, step: int, total_steps: int) -> int:
        """How many top blocks train at 1-based ``step``: 0 in the first stage, ``n_blocks`` in the last."""
        stage = (step - 1) * (n_blocks + 1) // max(1, total_steps)
        return min(n_blocks, stage)

    def on_step(self, model, step: int, total_steps: int) -> None:
        blocks = model.encoder.blocks()
        k = self.unfrozen_blocks(len(blocks), step, total_steps)
        for i, block in enumerate(blocks):
            set_trainable(block, i >= len(blocks) - k)
