"""The backbone plugins: named entries (``efficientnet-lite0``, ``minilm-l6``, ...) and the generic families that need
no code: ``timm:<model name>``, ``hf:<model id or local dir>``, ``hf-causal:<model id or local dir>``.

Add a backbone: one ``BACKBONES.add(...)`` entry in a family module (``vision.py`` for timm architectures,
``text.py`` for Hugging Face models), or point a cell at a family with ``--set backbone=hf:/path/to/model``.
What an entry provides, and the registry, are in ``bench.core.backbone``; ``bench.catalog`` imports this package.
Importing it imports no heavy library.
"""

from __future__ import annotations

from bench.backbones import text, vision
from bench.core.backbone import BACKBONES

BACKBONES.add_family("timm", vision.timm_family)
BACKBONES.add_family("hf", text.hf_family)
BACKBONES.add_family("hf-causal", text.hf_causal_family)
