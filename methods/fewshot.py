"""fewshot and zeroshot: prediction without gradient updates.

Text (in-context learning, Brown et al. 2020) on a causal LM (the registry's default causal LM, smollm2-135m,
chosen automatically; any backbone whose traits say causal LM works): the prompt is the task's instruction (its
``PromptSpec``), then ``k`` labelled demonstrations drawn from the cell's training subset with the cell's
seed, then the test input; the prediction is the label word with the highest next-token log-probability (the
first token of " positive", " negative", ...). Demonstrations are class-balanced and interleaved class by class in
a seeded order, because SmolLM2 is very sensitive to imbalance and to runs of one label at the end of the prompt
(ENVIRONMENT.md). The shared prefix (instruction + demonstrations) is encoded once and its key/value cache is
reused for every test example (``reuse_cache``; ``reuse_cache=false`` re-encodes it per example, the baseline of
the speed benchmark). ``zeroshot`` is the same with the instruction alone.

The seed also picks the prompt's phrasing (``PromptSpec.draw``: instruction, template and label words; seed 0 is the
task's own prompt): a prompted result depends on its wording as much as a trained one on its seed, so each is a
draw, and a ranking needs 5 of them (``min_seeds``), zeroshot's as fewshot's.

Vision (few-shot counterpart without gradients): nearest class mean on frozen backbone features (cosine
similarity to each class's mean feature over the training subset); features are computed once per cell.
Version history: 1 - first version. 2 - the seed draws the prompt's phrasing too (seed 0 unchanged); zeroshot is
no longer seedless (5 draws for a ranking). 3 - SST-2 declares 10 phrasings (seeds 0-4 unchanged; seeds 5-9 draw
the five new ones), so a second replicate of a suite (seeds offset by 105) uses none of the first's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.core.api import CLASSIFICATION, TEXT, VISION, FitContext, Method, Predictor, TaskSpec
from bench.core.backbone import BACKBONES
from bench.core.model import set_trainable
from bench.core.registry import METHODS


def pick_demonstrations(labels: np.ndarray, k: int, seed: int) -> list[int]:
    """k class-balanced indices, interleaved one class at a time with the class order reshuffled every round."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in classes}
    out: list[int] = []
    while len(out) < k and any(per_class.values()):
        for c in rng.permutation(classes):
            if per_class[c] and len(out) < k:
                out.append(int(per_class[c].pop()))
    return out


@METHODS.register("fewshot")
@dataclass(frozen=True)
class FewShot(Method):
    name = "fewshot"
    version = 3
    trains = False
    description = "no gradients: k-shot in-context prompting (text, causal LM) / nearest class mean (vision)"
    min_seeds = 5  # the seed picks the demonstrations and the phrasing: in-context results swing with the draw

    k: int = 8
    reuse_cache: bool = True

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError(f"Invalid k: {self.k} (number of demonstrations, >= 0)")

    @classmethod
    def backbone_for(cls, spec: TaskSpec) -> str | None:
        return BACKBONES.default("causal-lm") if spec.modality == TEXT else None

    @classmethod
    def mechanism(cls, spec: TaskSpec) -> str | None:
        return "in-context LM" if spec.modality == TEXT else "nearest class mean"

    def unsupported_reason(self, task: TaskSpec, backbone) -> str | None:
        if task.kind != CLASSIFICATION:
            return "prompting with label words needs a classification task"
        if task.modality == TEXT and task.prompt is None:
            return f"task {task.name} declares no prompt (TaskSpec.prompt: label words, instruction, template)"
        if task.modality == TEXT and not backbone.traits().causal_lm:
            return (
                f"in-context prompting needs a causal LM with a language-model head; {backbone.name} is an encoder "
                f"(use backbone={BACKBONES.default('causal-lm')} or hf-causal:<model>)"
            )
        return None

    def prepare(self, model, backbone, task):
        set_trainable(model, False)
        return model

    def predictor(self, ctx: FitContext) -> Predictor:
        spec, train = ctx.task.spec, ctx.train
        if spec.modality == VISION:
            import torch

            from methods._fewshot_nn import CosineNCM

            features = ctx.features(train)
            labels = torch.as_tensor(train.labels, device=features.device)
            means = torch.stack([features[labels == c].mean(0) for c in range(spec.num_labels)])
            return Predictor(CosineNCM(means), on_features=True)
        from methods._fewshot_nn import PromptScorer

        prompt, tokenizer = spec.prompt.draw(ctx.seed), ctx.tokenizer
        demos = pick_demonstrations(train.labels, self.k, ctx.seed) if self.k else []
        prefix = (
            prompt.instruction
            + "\n\n"
            + "".join(prompt.format(train.inputs[i]) + f" {prompt.label_words[train.labels[i]]}\n\n" for i in demos)
        )
        label_ids = [tokenizer(" " + w, add_special_tokens=False).input_ids[0] for w in prompt.label_words]
        if len(set(label_ids)) != len(label_ids):
            raise ValueError(f"label words {prompt.label_words} share their first token; choose distinct words")
        prefix_ids = tokenizer(prefix, add_special_tokens=False, return_tensors="pt").input_ids.to(ctx.device)
        scorer = PromptScorer(ctx.encoder.lm.eval(), prefix_ids, label_ids, self.reuse_cache)
        max_len = ctx.task.input_size["max_len"]

        def batcher(texts):
            queries = [prompt.format(t) for t in texts]
            return dict(
                tokenizer(
                    queries,
                    add_special_tokens=False,
                    padding=True,
                    truncation=True,
                    max_length=max_len + 16,
                    return_tensors="pt",
                )
            )

        notes = {
            "demonstrations": len(demos),
            "prefix_tokens": int(prefix_ids.shape[1]),
            "phrasing": ctx.seed % len(spec.prompt.phrasings),  # 0: the task's own prompt
        }
        return Predictor(scorer, batcher=batcher, notes=notes)


@METHODS.register("zeroshot")
@dataclass(frozen=True)
class ZeroShot(FewShot):
    name = "zeroshot"
    version = 3
    description = "no gradients: the task instruction alone, label words scored by a causal LM (text only)"
    budget_free = True  # it reads no training example: the same cell at every budget
    min_seeds = 5  # its seed draws the prompt's phrasing

    k: int = 0

    def __post_init__(self) -> None:
        if self.k != 0:
            raise ValueError(f"Invalid k: {self.k} (zeroshot uses no demonstrations; use fewshot)")

    @classmethod
    def mechanism(cls, spec: TaskSpec) -> str | None:
        return None  # one mechanism: the name says it

    def unsupported_reason(self, task: TaskSpec, backbone) -> str | None:
        if task.modality != TEXT:
            return "zero-shot needs label words a model can score; an ImageNet classifier has none for these classes"
        return super().unsupported_reason(task, backbone)
