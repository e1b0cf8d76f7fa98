"""Time BAN's `paper` and `faithful` presets on the same models in one run and print the speed ratio.

Usage: python benchmarks/ban_speed.py [--budget 1.0] [--models badnets,clean] [--threads 1]
Models come from the reference zoo (ban.zoo, cached with the tests' models); held-out pool: its 6000 defender images.
With `--folder DIR` they are the first `--limit` models of a `ban bench run` folder (ResNet18 zoos), with that
spec's defender images; `--presets paper` times the default alone (the faithful preset is ~15x slower), and
`paper-single` the paper's single search (one run at eps / steps, the default until 2026-12-04).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ban.bench.store import load_bench_spec
from ban.checkpoint import load_model
from ban.clean_data import CleanData
from ban.data.registry import load_dataset
from ban.data.split import defender_split
from ban.detectors import create_detector
from ban.zoo import Zoo, cache_folder

# timed variants that are not presets of their own
VARIANTS: dict[str, dict[str, object]] = {"paper-single": {"preset": "paper", "restarts": 1, "step_scale": 1.0}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--models", default="badnets,clean")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=5000)
    p.add_argument("--folder", type=Path, help="time the models of this `ban bench run` folder instead")
    p.add_argument("--limit", type=int, default=4, help="with --folder: the first N models (sorted by name)")
    p.add_argument("--presets", default="faithful,paper")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.folder is not None:
        d = load_bench_spec(a.folder).data
        pool = defender_split(load_dataset(d.dataset, "train", d.data_dir), d.defender_fraction, d.split_seed)[1]
        clean = CleanData.from_images(pool)
        paths = sorted((a.folder / "models").glob("*.safetensors"))[: a.limit]
        models = {path.stem: (lambda path=path: load_model(path).model) for path in paths}
    else:
        z = Zoo(cache_folder(Path(__file__).resolve().parents[1]))
        clean = CleanData.from_images(z.defender)
        models = {name: (lambda name=name: z.get(name).model) for name in a.models.split(",")}
    presets = a.presets.split(",")
    totals = dict.fromkeys(presets, 0.0)
    print(f"budget {a.budget}, held-out images up to {a.eval_samples}, torch threads {a.threads}")
    print("model | preset | flagged | target | score | seconds | stages (s)")
    for name, get in models.items():
        model = get()
        for preset in presets:
            det = create_detector(
                "ban", **VARIANTS.get(preset, {"preset": preset}), budget=a.budget, eval_samples=a.eval_samples
            )
            start = time.perf_counter()
            v = det.detect(model, clean)
            seconds = time.perf_counter() - start
            totals[preset] += seconds
            stages = {k: round(t, 1) for k, t in v.details["seconds_per_stage"].items()}
            print(
                f"{name} | {preset} | {v.backdoored} | {v.target} | {v.score:.3f} | {seconds:.1f} | {stages}",
                flush=True,
            )
    n = len(models)
    print("total: " + ", ".join(f"{k} {t:.1f} s ({t / n:.1f} s a model)" for k, t in totals.items()))
    if {"faithful", "paper"} <= totals.keys():
        print(f"paper is {totals['faithful'] / max(totals['paper'], 1e-9):.1f}x faster")
    if {"paper-single", "paper"} <= totals.keys():
        print(f"the default costs {totals['paper'] / max(totals['paper-single'], 1e-9):.2f}x the paper's single search")


if __name__ == "__main__":
    main()
