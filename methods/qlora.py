"""qlora: QLoRA (Dettmers et al. 2023). The pretrained backbone is loaded with its linear layers in 4-bit NF4 with
double quantization (bitsandbytes), prepared for k-bit training (peft), and LoRA trains on top in the compute
dtype (bf16 on CUDA, fp32 on the CPU, where bitsandbytes >= 0.45 runs 4-bit kernels); the head trains in full
precision. Same LoRA targets and defaults as ``lora``, so the two differ only by the quantized base.

Only ``nn.Linear`` weights are quantized: on MiniLM that is every attention and feed-forward matrix (~47% of the
weights; the embeddings stay in full precision) and the record says so (``params.quantized_fraction``).
A CNN's weights are convolutions, so nothing would be quantized: unsupported there, with that reason
(``Traits.quantizable``).
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.registry import METHODS
from methods.lora import LoRA


@METHODS.register("qlora")
@dataclass(frozen=True)
class QLoRA(LoRA):
    name = "qlora"
    version = 1
    quantize = "nf4"
    description = "LoRA on a 4-bit NF4 (double-quantized) base via bitsandbytes + head"

    def unsupported_reason(self, task, backbone) -> str | None:
        if not backbone.traits().quantizable:
            return (
                f"bitsandbytes 4-bit loading quantizes the linear layers of Hugging Face models; {backbone.name} is "
                "not one (a CNN's weights are convolutions, so no backbone weight would be quantized): use lora"
            )
        return None

    def prepare(self, model, backbone, task):
        from peft import prepare_model_for_kbit_training

        # casts layer norms to fp32 and enables input gradients; no gradient checkpointing at these sizes
        # bitsandbytes 0.50 on CPUs with AVX512-BF16 repacks 4-bit weights for inference at the first eval-mode
        # forward and never unpacks them, after which training fails ("a view of a leaf Variable ... in-place")
        # and merging fails: keep the training layout throughout.
        for module in model.encoder.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
        encoder = model.encoder
        encoder.transformer = prepare_model_for_kbit_training(encoder.transformer, use_gradient_checkpointing=False)
        return super().prepare(model, backbone, task)
