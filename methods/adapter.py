"""adapter: bottleneck adapters, written here because peft has none and the ``adapters`` package pins an older
transformers (ENVIRONMENT.md). Small on purpose; every parameter count has a closed form tested against the model.

- Transformers (Houlsby et al. 2019, Pfeiffer et al. 2021): a bottleneck MLP x + W_up f(W_down x) inserted after
  a sublayer's output projection, before its residual add and LayerNorm. ``placement=houlsby`` inserts one after
  the attention output and one after the feed-forward output of every layer; ``pfeiffer`` only after the
  feed-forward output. Parameters per insertion: 2*d*b + b + d (d = hidden size, b = ``bottleneck``).
- CNNs (residual adapters, Rebuffi et al. 2017/2018): a 1x1-conv bottleneck in parallel with every depthwise
  (spatial) convolution (every spatial convolution after the stem, for CNNs without depthwise ones),
  y = dw(x) + W_up W_down x, with the depthwise stride on W_down; the pointwise convolutions are where LoRA goes,
  the spatial ones are where these go. Parameters per insertion: b*(c_in+c_out).
Where they go is the backbone's answer (``Backbone.adapter_points``). W_up starts at zero, so training starts
exactly from the pretrained function. The rest of the backbone is frozen (batch-norm statistics too); the head
trains. Adapters are not mergeable: they cost inference time.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import FrozenBackbone


@METHODS.register("adapter")
@dataclass(frozen=True)
class Adapter(FrozenBackbone):
    name = "adapter"
    version = 1
    description = "bottleneck adapters (Houlsby/Pfeiffer; parallel residual adapters on CNNs) + head"

    bottleneck: int = 32
    placement: str = "houlsby"  # transformers only: "houlsby" (attention + FFN) or "pfeiffer" (FFN)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bottleneck < 1:
            raise ValueError(f"Invalid bottleneck: {self.bottleneck} (must be >= 1; usual 16-64)")
        if self.placement not in ("houlsby", "pfeiffer"):
            raise ValueError(f"Invalid placement: {self.placement!r} (use 'houlsby' or 'pfeiffer')")

    def prepare(self, model, backbone, task):
        from torch import nn

        from methods._adapter_nn import AfterLinear, ParallelConv

        set_trainable(model, False)
        points = backbone.adapter_points(model.encoder, self.placement)
        if not points:
            raise ValueError(f"backbone {backbone.name} offers no adapter insertion points")
        for parent, attr in points:
            inner = getattr(parent, attr)
            wrapped = (
                AfterLinear(inner, self.bottleneck)
                if isinstance(inner, nn.Linear)
                else ParallelConv(inner, self.bottleneck)
            )
            set_trainable(inner, False)
            setattr(parent, attr, wrapped.to(next(inner.parameters()).device))
        set_trainable(model.head, True)
        return model
