"""One detector or mitigation at given settings on the reference zoo's models, at several seeds.

The tests' CI settings are chosen with this: a test asserts a verdict only where every seed measured
here gives it. Prints, per model and seed: the verdict (flagged, target, score) and what the method
recorded (BTI-DBF's histogram, NC/Tabor's anomaly indices, FeatureRE/Unicorn's per-target inversion
ASR and mask size) or, for a repair, BA/ASR before and after; seconds each.

Usage:
  python benchmarks/seed_sweep.py btidbf --seeds 0,1,2 --models badnets,clean \\
      --param n_samples=300 --param epochs=10 ...
  python benchmarks/seed_sweep.py ibau --mitigation --seeds 0,1 --param clean_samples=3000
Models: the reference zoo (ban.zoo, cached in .cache/test-models: the same files the tests use).
Clean data: the zoo's defender pool, class-balanced samples (detectors: the whole pool, as the tests).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from ban.clean_data import CleanData
from ban.data import balanced_sample
from ban.detectors import create_detector
from ban.mitigations import create_mitigation
from ban.zoo import Zoo, cache_folder

ROOT = Path(__file__).resolve().parents[1]


def parse_params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def describe_verdict(details: dict[str, Any]) -> str:
    if "histogram" in details:
        return f"histogram {details['histogram']}"
    if "anomaly_index" in details:
        return "anomaly index " + " ".join(f"{a:.2f}" for a in details["anomaly_index"])
    if "per_target" in details:
        asr = " ".join(f"{s.get('asr', float('nan')):.2f}" for s in details["per_target"])
        l1 = " ".join(f"{s.get('mask_l1', float('nan')):.3g}" for s in details["per_target"])
        mixed = " ".join(f"{v:.2f}" for v in details["mixed_value"])
        return f"inverted ASR [{asr}] mask L1 [{l1}] mixed [{mixed}]"
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method")
    ap.add_argument("--mitigation", action="store_true", help="METHOD is a repair, not a detector")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--models", default="badnets,clean", help="zoo recipes (ban.zoo.RECIPES)")
    ap.add_argument("--param", action="append", default=[], help="KEY=VALUE, a setting of the method")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = parse_params(args.param)
    zoo = Zoo(cache_folder(ROOT))
    if args.mitigation:  # a class-balanced sample of the size the repair asks for, as the mitigation tests
        n = create_mitigation(args.method, device="cpu", quiet=True, **params).clean_samples
        clean = CleanData.from_images(balanced_sample(zoo.defender, n, seed=1))
    else:  # the whole defender pool, as the detector tests
        clean = CleanData.from_images(zoo.defender)
    print(f"{args.method} {params}")
    for name in args.models.split(","):
        ckpt = zoo.get(name)
        for seed in [int(s) for s in args.seeds.split(",")]:
            start = time.perf_counter()
            if args.mitigation:
                m = create_mitigation(args.method, seed=seed, device="cpu", quiet=True, **params)
                _, report = m.run(ckpt.model, clean, zoo.test, ckpt.attack)
                b, a = report.before, report.after
                assert b is not None and a is not None
                line = f"BA {b.ba:.3f} -> {a.ba:.3f}  ASR {rate(b.asr)} -> {rate(a.asr)}"
            else:
                detector = create_detector(args.method, seed=seed, device="cpu", quiet=True, **params)
                v = detector.detect(ckpt.model, clean)
                flag = f"flagged {v.target}" if v.backdoored else "not flagged"
                line = f"{flag} score {v.score:.3f}  {describe_verdict(v.details)}"
            print(f"{name:8s} seed {seed}: {line}  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
