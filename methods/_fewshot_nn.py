"""The torch modules fewshot and zeroshot predict with (heavy: ``methods/fewshot.py`` imports this inside
``predictor``, so listing methods stays torch-free)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class PromptScorer(nn.Module):
    """Scores label words after ``prefix + query`` with a causal LM; the prefix's key/value cache is computed once."""

    def __init__(self, lm: nn.Module, prefix_ids: torch.Tensor, label_ids: list[int], reuse_cache: bool) -> None:
        super().__init__()
        self.lm = lm
        self.decoder = lm.base_model  # the stack under the LM head
        self.lm_head = lm.get_output_embeddings()
        self.prefix_ids = prefix_ids  # (1, Lp)
        self.label_ids = label_ids
        self.cache = None
        if reuse_cache:
            with torch.inference_mode():
                self.cache = lm(input_ids=prefix_ids, use_cache=True).past_key_values

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        b, lq = input_ids.shape
        lp = self.prefix_ids.shape[1]
        mask = torch.cat([attention_mask.new_ones(b, lp), attention_mask], dim=1)
        if self.cache is not None:
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(b)
            positions = torch.arange(lp, lp + lq, device=input_ids.device).expand(b, -1)
            hidden = self.decoder(
                input_ids=input_ids, attention_mask=mask, past_key_values=cache, position_ids=positions, use_cache=True
            ).last_hidden_state
        else:
            ids = torch.cat([self.prefix_ids.expand(b, -1), input_ids], dim=1)
            hidden = self.decoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, lp:]
        last = attention_mask.sum(1).long() - 1  # queries are right-padded
        # the vocabulary projection only where the label word is predicted (not at every position)
        next_token = self.lm_head(hidden[torch.arange(b, device=hidden.device), last]).float().log_softmax(-1)
        return next_token[:, self.label_ids]


class CosineNCM(nn.Module):
    """Nearest class mean by cosine similarity: logits = scale * cos(x, mean_c)."""

    def __init__(self, means: torch.Tensor, scale: float = 10.0) -> None:
        super().__init__()
        self.register_buffer("means", nn.functional.normalize(means, dim=-1))
        self.scale = scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.normalize(features, dim=-1) @ self.means.T
