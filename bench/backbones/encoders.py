"""The encoder modules the families wrap a pretrained network in: images or tokens -> pooled features, with the
network's ordered stages (``blocks``) for partial / gradual / LLRD. Heavy (torch at the top): the families import it
inside ``load``, so listing backbones stays torch-free."""

from __future__ import annotations

import torch
from torch import nn

from bench.backbones.structure import cnn_blocks, transformer_blocks, unwrap


class VisionEncoder(nn.Module):
    """A timm classifier with its classifier removed: images -> globally pooled features."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)

    def blocks(self) -> list[nn.Module]:
        """The backbone as ordered stages, input first (partial / gradual / LLRD): stem, each stage, head layers."""
        return cnn_blocks(self.net)


class GreyVisionEncoder(VisionEncoder):
    """A 1-channel network fed the batcher's 3 equal channels (a grey image repeated): their mean, the grey image."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values.mean(dim=1, keepdim=True))


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
        return transformer_blocks(unwrap(self.lm).base_model)
