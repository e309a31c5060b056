"""FLOPs a cell costs, counted by hand on the real model: forward and training FLOPs per example.

Why hand-written: the count must say what backward costs for each method (which inputs need gradients, which
weights train), and must not depend on which attention kernel ran. torch's ``FlopCounterMode`` counts only the ops
it has formulas for: on the CPU it misses attention done by the fused ``_scaled_dot_product_flash_attention_for_cpu``
kernel (MiniLM at 128 tokens: 5% low), and it cannot split a backward by method. The issue feared it overcounts
depthwise convolutions; with torch 2.14.1 it does not (it reads ``c_in / groups`` from the weight's shape), and on
EfficientNet-Lite0 it agrees with this count exactly (``tests/test_flops.py`` keeps both claims checked). A count
from forward hooks on the actual modules, with the actual input shapes of a real batch, works for every backbone in
the registry, peft layers included (a LoRA layer is an ``nn.Linear`` base plus ``nn.Linear`` A and B, all hooked),
and sees prompt-tuning virtual tokens and prefix-tuning key/values because it reads the shapes that really flow.
Validated against FlopCounterMode with attention forced to the math kernel: forward and full-backprop training
counts agree exactly on MiniLM, a tiny BERT and timm's test_resnet.

What is counted (multiply-adds as 2 FLOPs; elementwise ops, norms, activations, softmax and biases are not, as
in FlopCounterMode):
- ``nn.Linear`` (and subclasses: bitsandbytes 4-bit layers): ``2 * in * out`` per token (``in_features`` /
  ``out_features``, so packed 4-bit weights count as the matmul they stand for);
- ``nn.Conv1d/2d/3d``: ``2 * prod(kernel) * (c_in / groups) * numel(output)``, correct for depthwise;
- matmuls outside those modules (attention): ``torch.matmul``/``bmm``/``baddbmm``/``@`` as ``2 * m * k * n`` per
  batch element, and ``F.scaled_dot_product_attention`` as ``QK^T`` plus ``AV`` (``2*L*S*E + 2*L*S*Ev`` per head),
  read through a ``TorchFunctionMode`` and ignored while inside a hooked module (no double count).
A module with a weight of two or more dimensions of any other type (not an embedding, a norm, or an elementwise
scale such as IA3's; e.g. DoRA's magnitude vector on a CNN, shaped 1 x C x 1 x 1) is not counted: the count is what
the known modules cost (a lower bound) and ``note`` says "not counted: " with each such parameter's name and shape.

Training FLOPs per example (the rule, an approximation stated once): each counted op costs its forward F, plus
F for the gradient of each input that needs one (an activation gradient: there is a trainable parameter upstream
of it, so backward must pass through this op), plus F for the gradient of its weight if that weight trains. So:
- full fine-tuning: ~3x forward (the first layer's input, the pixels or the embedding output of a frozen
  embedding, needs no gradient, so a CNN's stem costs 2x);
- a frozen backbone with a trainable head: backbone forward only, head 2x (no gradient flows into the backbone);
- LoRA and other adapters: the frozen layers above the lowest adapter cost 2x (activation gradients), the adapters
  3x, the frozen layers below the lowest adapter 1x;
- ``cache_features`` methods (``frozen``): the backbone runs once per training example for the whole cell, so per
  example *seen* (``train_samples_per_s`` counts an example once per epoch) it costs ``forward / epochs``, plus the
  head's forward and weight gradient every epoch;
- methods whose trainable set changes during training (``on_step``, e.g. ``gradual``) are counted with the final
  set (the most that trains: an upper bound), said in ``note``.
Gradient checkpointing would add one forward; no method here uses it. The count is made on one batch of test
examples (their padded length), so for text it is per example at that batch's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from bench.core.api import Method
from bench.run.machine import peak_for

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_MATMULS = {torch.matmul, torch.bmm, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.bmm}
_BADDBMM = {torch.baddbmm, torch.Tensor.baddbmm}


@dataclass
class FlopCount:
    """Totals over one batch of ``n`` examples: forward, activation-gradient and weight-gradient FLOPs, and the
    forward FLOPs per top-level child of the model (e.g. ``encoder`` / ``head``)."""

    n: int
    forward: float = 0.0
    grad_inputs: float = 0.0
    grad_weights: float = 0.0
    forward_by_child: dict[str, float] = field(default_factory=dict)
    uncounted: list[str] = field(default_factory=list)  # "name (shape, Module)": weights of a kind not counted

    @property
    def train(self) -> float:
        return self.forward + self.grad_inputs + self.grad_weights


def _needs_grad(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.requires_grad


def _weight_trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters(recurse=False) if p.ndim >= 2)


def module_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> float | None:
    """Forward FLOPs of one Linear or Conv call from its real input and output; None for other modules."""
    if isinstance(module, nn.Linear):
        return 2.0 * module.in_features * module.out_features * (inp.numel() / module.in_features)
    if isinstance(module, CONV_TYPES):
        kernel = math.prod(module.kernel_size)
        return 2.0 * kernel * (module.in_channels / module.groups) * out.numel()
    return None


def _matmul_flops(a: torch.Tensor, b: torch.Tensor) -> float:
    """2 * m * k * n times the broadcast batch size, for ``a @ b`` with torch.matmul's rules."""
    if a.ndim == 1 and b.ndim == 1:
        return 2.0 * a.shape[0]
    k = a.shape[-1]
    m = a.shape[-2] if a.ndim >= 2 else 1
    n = b.shape[-1] if b.ndim >= 2 else 1
    batch = torch.broadcast_shapes(a.shape[:-2] if a.ndim > 2 else (), b.shape[:-2] if b.ndim > 2 else ())
    return 2.0 * math.prod(batch) * m * k * n


class _Counter(TorchFunctionMode):
    """Counts the hooked modules (via hooks it installs) and the free matmuls (via torch functions) of a forward."""

    def __init__(self, model: nn.Module, n: int) -> None:
        super().__init__()
        self.count = FlopCount(n)
        self.inside = 0  # depth inside hooked modules: their internal matmuls are theirs, not counted again
        self.child = ""
        self.handles = []
        known = (nn.Linear, *CONV_TYPES)
        for name, module in model.named_modules():
            child = name.split(".")[0]
            if isinstance(module, known):
                self.handles.append(module.register_forward_pre_hook(self._enter))
                self.handles.append(module.register_forward_hook(self._make_exit(child)))
            elif _unknown_weights(module):
                self.count.uncounted += [
                    f"{name}.{p_name} ({'x'.join(map(str, p.shape))}, {type(module).__name__})".lstrip(".")
                    for p_name, p in module.named_parameters(recurse=False)
                    if p.ndim >= 2
                ]
        for child, module in model.named_children():
            self.handles.append(module.register_forward_pre_hook(self._set_child(child)))

    def _set_child(self, child: str):
        def hook(module, args):
            self.child = child

        return hook

    def _enter(self, module, args) -> None:
        self.inside += 1

    def _make_exit(self, child: str):
        def hook(module, args, out) -> None:
            self.inside -= 1
            inp = args[0] if args else None
            if self.inside or not isinstance(inp, torch.Tensor) or not isinstance(out, torch.Tensor):
                return
            self._add(module_flops(module, inp, out) or 0.0, _needs_grad(inp), _weight_trains(module), child)

        return hook

    def _add(self, f: float, grad_in: float, grad_w: bool, child: str | None = None) -> None:
        c = self.count
        c.forward += f
        c.grad_inputs += f * float(grad_in)
        c.grad_weights += f if grad_w else 0.0
        key = child or self.child
        c.forward_by_child[key] = c.forward_by_child.get(key, 0.0) + f

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.inside:
            if func in _MATMULS and len(args) >= 2:
                a, b = args[0], args[1]
                self._add(_matmul_flops(a, b), _needs_grad(a) + _needs_grad(b), False)
            elif func in _BADDBMM and len(args) >= 3:
                a, b = args[1], args[2]
                self._add(_matmul_flops(a, b), _needs_grad(a) + _needs_grad(b), False)
            elif func is nn.functional.scaled_dot_product_attention:
                q, k, v = args[:3]
                scores = _matmul_flops(q, k.transpose(-2, -1))
                mix = 2.0 * math.prod(q.shape[:-1]) * k.shape[-2] * v.shape[-1]
                # backward: dP (mix) if q or k need grads, dV (mix) if v does, dQ and dK (scores each)
                grad = mix * float(_needs_grad(q) or _needs_grad(k)) + mix * float(_needs_grad(v))
                grad += scores * (float(_needs_grad(q)) + float(_needs_grad(k)))
                self.count.forward += scores + mix
                self.count.grad_inputs += grad
                by = self.count.forward_by_child
                by[self.child] = by.get(self.child, 0.0) + scores + mix
        return func(*args, **kwargs)

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _unknown_weights(module: nn.Module) -> bool:
    """A module holding a weight of 2+ dimensions itself that is not a kind this module counts or knows to be free
    of matmuls (embeddings are lookups; norms and IA3-style scales are elementwise)."""
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) or "Norm" in type(module).__name__:
        return False
    return any(p.ndim >= 2 for p in module.parameters(recurse=False))


def count(model: nn.Module, batch: dict[str, torch.Tensor]) -> FlopCount:
    """Run ``model(**batch)`` once with gradients enabled (so every tensor says whether backward would need its
    gradient; nothing is stepped) and count its FLOPs. Put the model in eval mode first if batch-norm statistics
    must not move."""
    n = len(next(iter(batch.values())))
    counter = _Counter(model, n)
    compiled = getattr(model, "_compiled_call_impl", None)
    if compiled is not None:
        model._compiled_call_impl = None  # count the eager forward (hooks and function modes see every op)
    try:
        with torch.enable_grad(), counter:
            model(**batch)
    finally:
        counter.close()
        if compiled is not None:
            model._compiled_call_impl = compiled
    return counter.count


def uncounted_note(c: FlopCount, shown: int = 3) -> str | None:
    """What the count leaves out, by parameter name and shape (None when it leaves nothing out): the counts are then
    a lower bound, and so are the achieved FLOP/s and MFU computed from them."""
    if not c.uncounted:
        return None
    more = f" and {len(c.uncounted) - shown} more" if len(c.uncounted) > shown else ""
    return (
        f"not counted: {', '.join(c.uncounted[:shown])}{more} (weights of a kind this counter has no formula for; "
        "the FLOPs, FLOP/s and MFU leave them out: a lower bound)"
    )


@dataclass
class FlopsCost:
    """What a record's cost section says about FLOPs (see bench.core.record.Cost)."""

    fwd_flops_per_example: float | None = None
    train_flops_per_example: float | None = None
    flops_method: str | None = None
    flops_note: str | None = None
    achieved_train_flops_per_s: float | None = None
    machine_peak_flops_per_s: float | None = None
    nominal_peak_flops_per_s: float | None = None
    mfu: float | None = None
    mfu_basis: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def training_flops(c: FlopCount, *, trains: bool, cached: bool, epochs: float, steps_change: bool) -> tuple:
    """(train FLOPs per example seen, note) by the rule in the module docstring."""
    if not trains:
        return None, "no gradient steps (the method builds its predictor without training)"
    if cached:
        backbone = sum(v for k, v in c.forward_by_child.items() if k != "head")
        head = c.forward_by_child.get("head", 0.0)
        # the head trains on cached features: forward and weight gradient, no input gradient
        per_seen = backbone / max(epochs, 1e-9) + 2 * head
        return per_seen / c.n, "cached features: the backbone forward is counted once per example over all epochs"
    note = (
        "trainable set changes during training: counted with the final one (an upper bound)" if steps_change else None
    )
    return c.train / c.n, note


def cell_flops(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    *,
    method: Any,
    fit: Any,
    device: str,
    precision: str,
    threads: int,
) -> FlopsCost:
    """The FLOP fields of a cell's record: counted on ``batch`` (the model in eval mode), training FLOPs by the
    rule above, achieved FLOP/s from the measured training throughput, and MFU against this machine's peak."""
    out = FlopsCost(flops_method="analytic-hooks")
    try:
        c = count(model, batch)
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
        out.flops_note = f"count failed: {type(e).__name__}: {e}"[:300]
        return out
    out.fwd_flops_per_example = c.forward / c.n
    steps_change = getattr(type(method), "on_step", Method.on_step) is not Method.on_step
    out.train_flops_per_example, note = training_flops(
        c,
        trains=method.trains,
        cached=method.cache_features,
        epochs=fit.epochs if fit else 0.0,
        steps_change=steps_change,
    )
    out.flops_note = "; ".join(n for n in (uncounted_note(c), note) if n) or None
    peak = peak_for(device, threads, precision)
    out.machine_peak_flops_per_s, out.nominal_peak_flops_per_s = peak.measured, peak.nominal
    rate = fit.train_samples_per_s if fit else None
    if out.train_flops_per_example is not None and rate and math.isfinite(rate):
        out.achieved_train_flops_per_s = out.train_flops_per_example * rate
        basis = peak.nominal or peak.measured
        if basis:
            out.mfu = out.achieved_train_flops_per_s / basis
            out.mfu_basis = peak.basis
    return out
