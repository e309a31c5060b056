"""The adapted model (encoder + head) and the helpers every method uses to freeze, count and fingerprint it."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


class AdaptModel(nn.Module):
    """``encoder`` (pretrained or random backbone returning pooled features) followed by a new ``head``.

    Methods change the encoder in place (freeze it, inject LoRA layers, ...) so ``model.encoder`` and
    ``model.head`` keep their meaning for every method, and the forgetting probe can always reach the backbone.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(**inputs))


class VisionEncoder(nn.Module):
    """A timm classifier with its classifier removed: images -> globally pooled features."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)

    def blocks(self) -> list[nn.Module]:
        """The backbone as ordered stages, input first (partial / gradual / LLRD): stem, each stage, head layers."""
        from bench.core.backbone import cnn_blocks

        return cnn_blocks(self.net)


class TextEncoder(nn.Module):
    """A BERT-style encoder -> mean of the token states under the attention mask (sentence-transformers pooling)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        if hidden.shape[1] > attention_mask.shape[1]:  # prompt tuning prepended virtual tokens: pool real ones
            hidden = hidden[:, -attention_mask.shape[1] :]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    @property
    def transformer(self) -> nn.Module:
        """The Hugging Face model inside (what quantization preparation and structure queries work on)."""
        return self.bert

    @transformer.setter
    def transformer(self, module: nn.Module) -> None:
        self.bert = module

    def wrap_transformer(self, wrap) -> None:
        """Replace the transformer with ``wrap(transformer)`` (e.g. a peft prompt-learning model)."""
        self.bert = wrap(self.bert)

    def blocks(self) -> list[nn.Module]:
        """The backbone as ordered stages, input first: embeddings, each transformer layer, any final norm."""
        from bench.core.backbone import transformer_blocks, unwrap

        return transformer_blocks(unwrap(self.bert))


class CausalLMEncoder(nn.Module):
    """A causal LM: features are the final hidden state of the last real token (right padding), as
    LlamaForSequenceClassification pools. ``lm`` keeps its LM head for scoring label words and perplexity.
    Prompt-learning methods wrap ``lm.base_model`` (the decoder stack, ``wrap_transformer``), so both the features
    and the LM head (the forgetting probe) see the learned prompt or prefix."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if hidden.shape[1] > attention_mask.shape[1]:  # prompt tuning prepended virtual tokens
            hidden = hidden[:, -attention_mask.shape[1] :]
        last = attention_mask.sum(1).long() - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    @property
    def transformer(self) -> nn.Module:
        return self.lm

    @transformer.setter
    def transformer(self, module: nn.Module) -> None:
        self.lm = module

    def wrap_transformer(self, wrap) -> None:
        setattr(self.lm, self.lm.base_model_prefix, wrap(self.lm.base_model))

    def blocks(self) -> list[nn.Module]:
        """Embeddings, each decoder layer, final norm; the LM head (tied to the embeddings) is not a block."""
        from bench.core.backbone import transformer_blocks, unwrap

        return transformer_blocks(unwrap(self.lm).base_model)


BATCHNORM = (nn.modules.batchnorm._BatchNorm,)


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


def freeze_batchnorm_stats(module: nn.Module) -> None:
    """Keep batch-norm running statistics fixed (eval mode) inside a module that is otherwise training."""
    for m in module.modules():
        if isinstance(m, BATCHNORM):
            m.eval()


def count_params(model: AdaptModel) -> dict[str, int]:
    head_ids = {id(p) for p in model.head.parameters()}
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in trainable),
        "trainable_no_head": sum(p.numel() for p in trainable if id(p) not in head_ids),
    }


def quantized_share(encoder: nn.Module) -> dict[str, float | int]:
    """How much of the backbone is stored quantized: the number of original weights held in bitsandbytes 4-bit
    layers, and their share of all pretrained backbone weights (counted at full precision, since 4-bit storage
    packs two weights per byte). Adapter parameters (LoRA) are not backbone weights and are left out."""
    quantized, total = 0, 0
    for name, module in encoder.named_modules():
        if "lora_" in name:
            continue
        if type(module).__name__ == "Linear4bit":
            quantized += module.in_features * module.out_features
            total += module.in_features * module.out_features
            total += module.bias.numel() if module.bias is not None else 0
        else:
            total += sum(p.numel() for p in module.parameters(recurse=False))
    out: dict[str, float | int] = {"quantized_weights": quantized}
    if quantized:
        out["quantized_fraction"] = quantized / total
    return out


def tensor_digests(module: nn.Module) -> dict[str, str]:
    """sha1 of every parameter and buffer's bytes, by state-dict name."""
    out = {}
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        out[name] = hashlib.sha1(t.view(torch.uint8).numpy().tobytes()).hexdigest()
    return out


def fingerprint(module: nn.Module, digests: dict[str, str] | None = None) -> str:
    """sha256 over every parameter and buffer (names and bytes): equal iff the weights are identical. ``digests``:
    the module's ``tensor_digests`` when the caller already has them."""
    h = hashlib.sha256()
    for name, digest in sorted((digests or tensor_digests(module)).items()):
        h.update(f"{name}:{digest};".encode())
    return h.hexdigest()


def make_head(in_features: int, num_outputs: int) -> nn.Linear:
    head = nn.Linear(in_features, num_outputs)
    nn.init.zeros_(head.bias)
    nn.init.normal_(head.weight, std=0.01)
    return head
