"""frozen: feature extraction. The backbone is frozen (weights and batch-norm statistics), its pooled features
are computed once per cell and reused for every epoch, and only a linear head trains on them.

The head is a linear probe fitted as linear probes usually are: full-batch L-BFGS on the L2-regularised loss
(logistic regression for classification, ridge for regression), the L2 strength chosen on validation from
``l2`` (fitted as a regularisation path: strongest first, each warm-started; see bench.run.linear_probe).

Fastest and forgets nothing by construction; expected to be weak when the target domain is far from pretraining.
Version history: 1 - mini-batch AdamW on the head (lr 1e-3, >= 1000 steps); 2 - L-BFGS probe over an L2 grid
(converged, tuned, and 5-10x cheaper than the thousands of mini-batch steps).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.api import Method
from bench.core.model import set_trainable
from bench.core.registry import METHODS


@METHODS.register("frozen")
@dataclass(frozen=True)
class Frozen(Method):
    name = "frozen"
    version = 2
    cache_features = True
    linear_probe = True
    description = "backbone frozen (BN stats too), features cached once, linear probe fitted by L-BFGS over an L2 grid"

    # L2 strengths of the probe's objective (mean loss + l2/2 ||W||^2; scikit-learn's C = 1 / (l2 * n)), a log grid
    l2: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    max_iter: int = 200  # L-BFGS iterations per strength

    def __post_init__(self) -> None:
        object.__setattr__(self, "l2", tuple(float(v) for v in self.l2))
        if not self.l2 or any(not (v >= 0 and v < float("inf")) for v in self.l2):
            raise ValueError(f"Invalid l2: {self.l2} (non-negative L2 strengths, e.g. 1e-4,1e-3,1e-2)")
        if self.max_iter < 1:
            raise ValueError(f"Invalid max_iter: {self.max_iter} (must be >= 1)")

    def prepare(self, model, backbone, task):
        set_trainable(model.encoder, False)
        set_trainable(model.head, True)
        model.encoder.eval()
        return model

    def train_mode(self, model) -> None:
        model.head.train()
        model.encoder.eval()  # batch-norm statistics and dropout of a frozen backbone stay fixed

    def param_groups(self, model):
        # the probe is fitted by L-BFGS (Runner._fit_probe), not by these groups; they say what trains, at
        # L-BFGS's unit step, for code that steps methods generically (the one-step contract test)
        return [{"params": list(model.head.parameters()), "lr": 1.0}]
