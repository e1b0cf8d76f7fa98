"""Measure BAN's statistics over clean and backdoored models to choose its default statistic, eps and threshold.

For every model (the reference zoo's recipes, ban.zoo, plus the extra seeds/targets in benchmarks/_ban_models.py) and
every setting, print one row: the share of held-out clean images in the argmax class of the
no-mask and the (1-m) histograms under noise, that class, and the clean-loss rise.
Usage: python benchmarks/ban_defaults.py [--budget 0.25] [--eps 0.1,0.2,0.3] [--models a,b] [--faithful-eps 0.3]
       [--recalibrate-bn on,off]
Each row also gives the verdict and score of the detector's rule (default: the per-class rule).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ban_models import NAMES, models  # noqa: E402

from ban.checkpoint import load_model  # noqa: E402
from ban.clean_data import CleanData  # noqa: E402
from ban.detectors import create_detector  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget", type=float, default=0.25)
    p.add_argument("--eps", default="0.1,0.2,0.3")
    p.add_argument("--faithful-eps", default="0.3")
    p.add_argument("--models", default=",".join(NAMES), help="zoo recipes (benchmarks/_ban_models.py); '' for none")
    p.add_argument("--dir", default=None, help="also every checkpoint in this folder (e.g. runs/attack-zoo)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument(
        "--recalibrate-bn", default="preset", help="preset, on, off or on,off: BatchNorm statistics under the noise"
    )
    p.add_argument("--out", default="runs/ban-defaults/rows.jsonl")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(
        "model | target | preset | eps | recal. BN | verdict (target) | score | no-mask share (class) | "
        "(1-m) share (class) | loss rise | s",
        flush=True,
    )
    jobs: list[tuple[str, Any]] = [(n, None) for n in a.models.split(",") if n]
    if a.dir:
        jobs += [(f.stem, f) for f in sorted(Path(a.dir).glob("*.safetensors"))]
    z = None
    for name, path in jobs:
        if path is None:
            z, ms = models([name])
            if name not in ms:
                continue
            ckpt = ms[name]
        else:
            ckpt = load_model(path)
        if z is None:
            z, _ = models([])
        clean = CleanData.from_images(z.defender)
        presets = [("paper", float(e)) for e in a.eps.split(",") if e] + [
            ("faithful", float(e)) for e in a.faithful_eps.split(",") if e
        ]
        choice = {"on": True, "off": False, "preset": None}
        grid = [(p, e, choice[r]) for p, e in presets for r in a.recalibrate_bn.split(",")]
        for preset, eps, recal in grid:
            det = create_detector(
                "ban",
                preset=preset,
                eps=eps,
                budget=a.budget,
                eval_samples=a.eval_samples,
                early_stop=False,
                recalibrate_bn=recal,
            )
            v = det.detect(ckpt.model, clean)
            d = v.details
            nm, ng = d["histogram_no_mask"], d["histogram_negative_mask"]
            row = {
                "model": name,
                "target": ckpt.meta.get("target"),
                "asr": ckpt.meta.get("asr"),
                "ba": ckpt.meta.get("ba"),
                "preset": preset,
                "eps": eps,
                "recalibrate_bn": v.settings["recalibrate_bn"],
                "budget": a.budget,
                "backdoored": v.backdoored,
                "flagged_target": v.target,
                "score": v.score,
                "no_mask": nm,
                "negative_mask": ng,
                "loss_rise": d["loss_rise"],
                "confusion_no_mask": d["confusion_no_mask"],
                "confusion_negative_mask": d["confusion_negative_mask"],
                "confusion_negative_mask_no_noise": d["confusion_negative_mask_no_noise"],
                "seconds": v.seconds,
            }
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"{name} | {ckpt.meta.get('target')} | {preset} | {eps} | {v.settings['recalibrate_bn']} | "
                f"{'flagged' if v.backdoored else 'clean'} ({v.target}) | {v.score:.3f} | "
                f"{max(nm) / sum(nm):.3f} ({nm.index(max(nm))}) | "
                f"{max(ng) / sum(ng):.3f} ({ng.index(max(ng))}) | {d['loss_rise']:.2f} | {v.seconds:.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
