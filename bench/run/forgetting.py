"""Forgetting in a cell: a probe measured on the untouched pretrained backbone and again on the adapted one, each
measurement cached by the weights' sha256 (identical weights and preprocessing give identical numbers, so a hit is
the same measurement), and the record's ``Forgetting`` section built from the two. The probes themselves (what they
read, how they score) are declared in ``bench.probes``.
"""

from __future__ import annotations

import json

from bench.catalog import PROBE_VERSION, PROBES
from bench.core.cache import cache_dir, digest, unreadable
from bench.core.data import DataRoot
from bench.core.model import fingerprint as weights_sha256
from bench.core.record import Forgetting
from bench.core.store import atomic_write_text


def run_probe(
    name: str,
    loaded,
    data: DataRoot,
    device: str,
    limit: int = 0,
    digests: dict[str, str] | None = None,
    fingerprint: str | None = None,
    subset: str = "first",
) -> tuple[float, bool]:
    """(value, from_cache). Cached by (probe, version, limit, backbone entry, weights sha256): identical weights
    and preprocessing give identical numbers, so a hit is the same measurement. ``digests`` / ``fingerprint``:
    the encoder's ``tensor_digests`` or its fingerprint, if the caller already computed them. An entry whose
    checksum fails is deleted and recomputed, never trusted."""
    spec = PROBES[name]
    limit = spec.effective_limit(limit)
    fp = fingerprint or weights_sha256(loaded.encoder, digests)
    ident = {"probe": name, "version": PROBE_VERSION, "limit": limit, "backbone": loaded.spec.name, "weights": fp}
    subset = spec.effective_subset(limit, subset)
    if subset != "first":
        ident["subset"] = subset  # earlier entries (first rows) keep their keys
    path = cache_dir() / "probes" / f"{name}-{digest(ident)[:32]}.json"
    if path.exists():
        try:
            entry = json.loads(path.read_text())
            if entry["check"] != digest({**ident, "value": entry["value"]}):
                raise ValueError("checksum mismatch")
            return float(entry["value"]), True
        except (OSError, ValueError, KeyError, TypeError) as e:  # a torn or altered entry is recomputed, never trusted
            unreadable(path, e)
    value = float(spec.fn(loaded, data, device, limit=limit, **({"subset": subset} if subset != "first" else {})))
    entry = {**ident, "value": value, "check": digest({**ident, "value": value})}
    atomic_write_text(path, json.dumps(entry))
    return value, False


def probe_forgetting(probe, before, before_cached, pretrained, loaded, data, device, cfg, digests, task) -> Forgetting:
    """The probe on the adapted backbone beside its value on the untouched pretrained one; a probe that reads the
    task's own data is marked not held out (it then measures learning the task, not forgetting)."""
    spec, limit = PROBES[probe], cfg.probe_limit
    subset = spec.effective_subset(limit, cfg.probe_subset)
    subset = None if subset == "first" else subset  # recorded only when the examples were not the first ones
    if not pretrained:
        return Forgetting(
            probe,
            before,
            before_from_cache=before_cached,
            note="not applicable: scratch never had the pretrained weights",
            subset=subset,
        )
    after, after_cached = run_probe(probe, loaded, data, device, limit, digests=digests, subset=cfg.probe_subset)
    shared = task in spec.shares_data_with
    return Forgetting(
        probe,
        before,
        after,
        # positive = forgot, whichever way the probe's metric points
        drop=(before - after) if spec.higher_is_better else (after - before),
        higher_is_better=spec.higher_is_better,
        after_from_identical_weights=after_cached,
        before_from_cache=before_cached,
        limit=spec.effective_limit(limit),
        subset=subset,
        held_out=False if shared else None,
        note=f"not held out: {probe} reads {task}'s own data; left out of forgetting summaries" if shared else None,
    )
