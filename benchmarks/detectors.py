"""All seven detectors (six baselines + BAN) on the same models with the same clean data.

Models: a clean small CNN and one per attack registered in `ban.attacks` (Fashion-MNIST, the
reference zoo's recipe, ban.zoo: 8000 images, 4 epochs; cached in .cache/test-models, trained on first use).
Clean data: the zoo's defender pool (the held-out 10% of the training set) for every detector.
Prints flagged / target / score / seconds per detector and model, the time of each baseline
relative to BAN, and writes every verdict to --out (JSON).

Usage (CPU, minutes):  python benchmarks/detectors.py --budget 0.02 --preset cpu
      (GPU, the papers' settings):  python benchmarks/detectors.py --budget 1 --preset paper --device cuda
`--preset cpu` takes each detector's `cpu` preset (smaller samples and UNets, `ban info`); the budget
scales every detector's epochs. Missing detectors or attacks are skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ban.attacks import ATTACKS
from ban.checkpoint import load_model
from ban.clean_data import CleanData
from ban.detectors import DETECTORS, create_detector
from ban.utils import atomic_write_text
from ban.zoo import BASE, Zoo, cache_folder

DETECTOR_NAMES = ["ban", "nc", "tabor", "featurere", "unicorn", "btidbf", "btidbf-star"]
TARGET = 3
# attack-specific recipe parameters (all2one, target 3; SSDT is source-specific with victim 1)
ATTACK_PARAMS: dict[str, dict[str, Any]] = {
    "badnets": {"poison_rate": 0.1},
    "blend": {"poison_rate": 0.1},
    "adap-blend": {"poison_rate": 0.01},
    "ssdt": {"victim": 1},
}
# smaller samples / networks for CPU runs (the budget scales epochs on top of this)
CPU_SETTINGS: dict[str, dict[str, Any]] = {
    "nc": {"n_samples": 100, "batch_size": 32},
    "tabor": {"n_samples": 100, "batch_size": 32},
    "featurere": {"filters": 8, "blocks": 3},
    "unicorn": {"filters": 8, "blocks": 3, "inner_steps": 2, "pretrain_epochs": 100, "epochs": 200},
    "btidbf": {"n_samples": 500, "filters": 8, "blocks": 3},
    "btidbf-star": {"n_samples": 500, "filters": 8, "blocks": 3},
    "ban": {},
}


def model_recipes(z: Zoo, attacks: list[str]) -> list[str]:
    """Register one recipe per attack in `z` and return the model names."""
    names = ["clean"]
    for attack in attacks:
        name = "badnets" if attack == "badnets" else f"bench-{attack}"
        params = {"target": TARGET, **ATTACK_PARAMS.get(attack, {})}
        z.add(name, replace(BASE, attack=attack, attack_params=params))
        names.append(name)
    return names


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    torch.set_num_threads(args.threads)
    attacks = [a for a in (args.attacks or list(ATTACKS)) if a in ATTACKS]
    z = Zoo(cache_folder(Path(__file__).resolve().parents[1]))
    clean = CleanData.from_images(z.defender)
    detectors = []
    for name in args.detectors:
        if name not in DETECTORS:
            print(f"skip detector {name}: not registered (yet)", file=sys.stderr)
        else:
            detectors.append(name)
    rows = []
    if args.models_dir:  # every checkpoint in a folder, e.g. the attack benchmark's (benchmarks/attacks.py --save-dir)
        sources: list[tuple[str, Any]] = [(p.stem, p) for p in sorted(Path(args.models_dir).glob("*.safetensors"))]
    else:
        sources = [(n, None) for n in model_recipes(z, attacks)]
    for model_name, path in sources:
        try:
            ckpt = load_model(path) if path is not None else z.get(model_name)
        except Exception as exc:  # an attack that fails to train here
            print(f"skip model {model_name}: {exc}", file=sys.stderr)
            continue
        truth = ckpt.meta.get("target")
        for det_name in detectors:
            # each method's named preset (`cpu`: smaller samples and networks); BAN has none, it runs its paper preset
            presets = DETECTORS[det_name].PRESETS
            settings = {"preset": args.preset} if args.preset in presets and args.preset != "paper" else {}
            budget = args.ban_budget if det_name == "ban" and args.ban_budget is not None else args.budget
            det = create_detector(det_name, seed=args.seed, device=args.device, quiet=True, budget=budget, **settings)
            start = time.perf_counter()
            verdict = det.detect(ckpt.model, clean)
            row = {
                "model": model_name,
                "true_target": truth,
                "asr": ckpt.meta.get("asr"),
                "detector": det_name,
                "flagged": verdict.backdoored,
                "target": verdict.target,
                "score": verdict.score,
                "threshold": verdict.threshold,
                "seconds": verdict.seconds,
                "wall": time.perf_counter() - start,
                "correct": verdict.target == truth if verdict.backdoored else truth is None,
                "verdict": verdict.to_dict(),
            }
            rows.append(row)
            print(
                f"{model_name:>16} {det_name:>12} flagged={str(verdict.backdoored):5} target={verdict.target!s:4} "
                f"(true {truth!s:4}) score={verdict.score:8.3f} thr={verdict.threshold:6.2f} {verdict.seconds:7.1f}s",
                flush=True,
            )
    return rows


def summary(rows: list[dict[str, Any]]) -> str:
    """Per-detector table: correct verdicts, mean seconds, time relative to BAN."""
    by_det: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_det.setdefault(r["detector"], []).append(r)
    ban_time = statistics.mean(r["seconds"] for r in by_det["ban"]) if "ban" in by_det else None
    lines = [f"{'detector':>12} {'correct':>8} {'mean s':>8} {'x BAN':>7}"]
    for det, rs in by_det.items():
        mean_s = statistics.mean(r["seconds"] for r in rs)
        ratio = f"{mean_s / ban_time:7.2f}" if ban_time else "    n/a"
        lines.append(f"{det:>12} {sum(r['correct'] for r in rs):>3}/{len(rs):<4} {mean_s:8.1f} {ratio}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.02, help="epoch multiplier for every detector")
    parser.add_argument("--preset", choices=("cpu", "paper"), default="cpu")
    parser.add_argument("--detectors", nargs="*", default=DETECTOR_NAMES)
    parser.add_argument("--attacks", nargs="*", default=None, help="default: every attack in ban.attacks")
    parser.add_argument("--ban-budget", type=float, default=None, help="BAN's own budget (default: --budget)")
    parser.add_argument("--models-dir", default=None, help="scan these checkpoints instead of the zoo recipes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-detectors.json"))
    args = parser.parse_args()
    rows = run(args)
    print()
    print(summary(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    atomic_write_text(args.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
