"""BAN (NeurIPS 2024): detect a backdoor by adversarial neuron noise and a feature mask.

1. Learn a feature mask m on a few clean images (``ban.blocks.mask``; BAN's L1-regularised objective).
   An epoch is ``batches_per_epoch`` batches drawn with replacement, as in the official code
   (20 epochs x 20 batches = 400 steps); ``batches_per_epoch=0`` makes an epoch one pass instead.
2. Find adversarial neuron noise δ, ξ that maximises the clean loss (``ban.blocks.noise``).
3. With the noise on, predict held-out clean images from (1 − m) ⊙ features ("negative-mask"
   statistic, the paper's) and from the plain features ("no-mask"). Both, and the (1 − m)
   predictions without noise, are recorded as confusion matrices (rows: true class).
4. Decide by one of two rules on the chosen statistic's predictions:
   ``pooled`` (default; the paper's rule, the authors' "> 50 %" from the repository's issue #1):
   score = the share of all held-out images predicted as the argmax class.
   ``per-class``: for every candidate target t, the share r_c,t of each other class c's held-out
   images predicted as t; score(t) = the ``quantile`` (default 0.5, the median) over c ≠ t of
   r_c,t. ``quantile=0.25``: "most images of at least three quarters of the other classes go to t";
   an all-to-one backdoor sends every class to its target, while most clean networks' (1 − m)
   predictions fall into a sink class that leaves whole semantic groups out (footwear, say).
   Flagged when the score exceeds ``threshold``; docs/ban-defaults.md has the measurements.

Presets
-------
``paper``    the paper's equations, done efficiently: features computed once without gradient
             (eval-mode BatchNorm) for mask learning; one PGD run of ``steps`` projected sign
             steps, each on the next batch of the optimisation set (no noise is thrown away),
             with BatchNorm in train mode as in the official code; predicting stops as soon as
             the decision and target are certain.
``faithful`` the official code's optimisation: train-mode BatchNorm (batch statistics, running
             statistics updated) during mask and noise; noise re-initialised for each of 20
             batches and only the last kept; no projection.
``recalibrate_bn`` (on in ``faithful``, off in ``paper``): after the noise search, with the final
noise applied, re-estimate BatchNorm's running statistics on the optimisation images, so the
eval-mode network that predicts the held-out images has the noisy network's own statistics. The
official code instead predicts with whatever its train-mode noise steps left in the running
averages (docs/ban-defaults.md). Both presets restore the model's BatchNorm running statistics
and remove the noise afterwards, and use the same statistic, rule and threshold.
The default decides by the paper's rule on the plain predictions (``statistic="no-mask",
rule="pooled"``); docs/ban-defaults.md has the rules measured against it and why it stays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.blocks.mask import MaskConfig, learn_feature_mask
from ban.blocks.noise import NeuronNoise, PGDConfig, adversarial_neuron_noise, recalibrate_running_stats
from ban.clean_data import CleanData
from ban.detectors.base import Detector, DetectorSettings, Verdict
from ban.errors import BanError
from ban.models import get_split
from ban.progress import track
from ban.utils import batches, eval_mode, make_generator

OPTION_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "project": True,
        "reinit_per_batch": False,
        "mask_train_mode": False,
        "noise_train_mode": True,
        "cache_features": True,
        "early_stop": True,
        "recalibrate_bn": False,
        "mask_batches": 0,  # an epoch is one pass over the optimisation images (4 batches of 500)
        # chosen by measurement (docs/ban-defaults.md, "Two averaged draws of a full-step search"): the noise
        # steps 2.5 eps / steps (the paper: eps / steps), two runs, every class's score averaged over them
        "step_scale": 2.5,
        "restarts": 2,
        "combine": "mean",
    },
    "faithful": {
        "project": False,
        "reinit_per_batch": True,
        "mask_train_mode": True,
        "noise_train_mode": True,
        "cache_features": False,
        "early_stop": False,
        "recalibrate_bn": True,
        "mask_batches": None,  # batches_per_epoch (20) batches drawn with replacement per epoch, as the official code
        "step_scale": 1.0,  # unused: the official noise steps eps / steps from a fresh start per batch
        "restarts": 1,
        "combine": "max",
    },
}
STATISTICS = ("negative-mask", "no-mask")
RULES = ("pooled", "per-class")
COMBINE = ("max", "mean")
# settings whose None means "the preset's choice" (resolved by `BANSettings.options`, recorded resolved)
PRESET_CHOICES = (
    "early_stop",
    "noise_train_mode",
    "recalibrate_bn",
    "mask_train_mode",
    "mask_batches",
    "step_scale",
    "restarts",
    "combine",
)
MIN_PER_CLASS = 10  # clean images per class needed: half for optimisation, half for the histogram


@dataclass(frozen=True)
class BANSettings(DetectorSettings):
    """BAN's settings; budget multiplies mask epochs and noise steps (1.0 = the paper's 20 epochs and 30 steps).

    early_stop, noise_train_mode, recalibrate_bn, mask_train_mode, mask_batches, step_scale, restarts,
    combine: None takes the preset's choice (`options` resolves them); quantile is recorded only under
    the per-class rule.
    restarts: independent runs (mask, noise and held-out images drawn with seeds seed, seed + 1, ...);
    combine: how their scores make the verdict: "max" keeps the highest-scoring run's verdict, "mean"
    averages every class's score over the runs and decides on those means (docs/ban-defaults.md, "One
    noise search is one draw"). step_scale: the noise step is step_scale * eps / steps (1.0: the paper's).
    """

    budgeted: ClassVar[tuple[str, ...]] = ("steps", "mask_epochs")
    may_be_zero: ClassVar[tuple[str, ...]] = ("mask_batches", "batches_per_epoch")  # 0: an epoch is one pass

    preset: str = "paper"
    statistic: str = "no-mask"
    rule: str = "pooled"
    threshold: float = 0.5
    eps: float = 0.3
    steps: int = 30
    step_scale: float | None = None
    mask_lambda: float = 0.75
    mask_lr: float = 0.01
    mask_epochs: int = 20
    batch_size: int = 128
    batches_per_epoch: int = 20
    opt_samples: int = 500
    eval_samples: int | None = 5000
    early_stop: bool | None = None
    noise_train_mode: bool | None = None
    recalibrate_bn: bool | None = None
    mask_train_mode: bool | None = None
    mask_batches: int | None = None
    quantile: float = 0.5
    restarts: int | None = None
    combine: str | None = None

    def validate(self) -> None:
        if self.time_limit is not None:
            raise BanError(
                "BAN runs its fixed budget (the reference of the equal-time comparison); "
                "time_limit applies to the baseline detectors"
            )
        if self.preset not in OPTION_PRESETS:
            raise BanError(f"unknown BAN preset '{self.preset}'; choose one of {', '.join(OPTION_PRESETS)}")
        if self.statistic not in STATISTICS:
            raise BanError(f"unknown BAN statistic '{self.statistic}'; choose one of {', '.join(STATISTICS)}")
        if self.rule not in RULES:
            raise BanError(f"unknown BAN rule '{self.rule}'; choose one of {', '.join(RULES)}")
        if not 0.0 < self.threshold < 1.0:
            raise BanError(f"threshold is a fraction of the held-out images in (0, 1), got {self.threshold}")
        if self.step_scale is not None and not self.step_scale > 0.0:
            raise BanError(f"step_scale (noise step = step_scale * eps / steps) must be > 0, got {self.step_scale}")
        if not 0.0 <= self.quantile <= 1.0:
            raise BanError(f"quantile (per-class rule) is a fraction in [0, 1], got {self.quantile}")
        if self.restarts is not None and self.restarts < 1:  # a whole number: __post_init__ converts it
            raise BanError(f"restarts is a whole number of runs >= 1, got {self.restarts!r}")
        if self.combine is not None and self.combine not in COMBINE:
            raise BanError(f"unknown way to combine restarts '{self.combine}'; choose one of {', '.join(COMBINE)}")
        if self.mask_batches is not None and self.mask_batches < 0:
            raise BanError(
                f"mask_batches must be >= 0 (0: one pass over the images per epoch), got {self.mask_batches}"
            )

    def options(self) -> dict[str, Any]:
        """The preset's optimisation choices with this configuration's overrides applied."""
        options = dict(OPTION_PRESETS[self.preset])
        for key in ("early_stop", "noise_train_mode", "recalibrate_bn"):
            if getattr(self, key) is not None:
                options[key] = bool(getattr(self, key))
        if self.mask_train_mode is not None:  # train-mode BatchNorm needs the features recomputed per batch
            options["mask_train_mode"] = bool(self.mask_train_mode)
            options["cache_features"] = options["cache_features"] and not self.mask_train_mode
        if self.mask_batches is not None:
            options["mask_batches"] = int(self.mask_batches)
        for key in ("step_scale", "restarts", "combine"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        return options

    def record(self) -> dict[str, Any]:
        recorded = {k: v for k, v in super().record().items() if k not in PRESET_CHOICES}
        if self.rule != "per-class":
            del recorded["quantile"]
        return {**recorded, **self.options()}


class BAN(Detector):
    """BAN detector. Settings in `__init__` (`BANSettings`); `detect(model, clean)` returns a Verdict.

    The verdict's artifacts carry the mask (C×H×W), the final noise and the BatchNorm buffers the
    held-out images were predicted with, for figures.
    """

    name: ClassVar[str] = "ban"
    Settings: ClassVar[type[DetectorSettings]] = BANSettings
    #: BAN's presets choose optimisation options (`OPTION_PRESETS`, resolved by `BANSettings.options`)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {name: {} for name in OPTION_PRESETS}
    config: BANSettings

    def __init__(self, seed: int = 0, device: str = "auto", quiet: bool = True, **settings: Any) -> None:
        super().__init__(seed=seed, device=device, quiet=quiet, **settings)
        self.options = MappingProxyType(self.config.options())  # read-only: derived from `config`

    @property
    def threshold(self) -> float:
        return self.config.threshold

    def _mask_batches(self) -> int:
        """Batches per mask epoch (0: one pass over the optimisation images)."""
        mb = self.options["mask_batches"]
        return self.config.batches_per_epoch if mb is None else int(mb)

    # ---- steps -------------------------------------------------------------------------------
    def min_clean_images(self, num_classes: int) -> int:
        return MIN_PER_CLASS * num_classes

    def _split_data(self, clean: CleanData, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        k = clean.num_classes
        need = self.min_clean_images(k)
        if len(clean) < need:
            raise BanError(
                f"BAN needs at least {need} clean images ({MIN_PER_CLASS} per class) to learn its mask and noise and "
                f"to histogram held-out predictions, got {len(clean)}; pass --clean-samples {max(need, 1000)} or more"
            )
        perm = torch.randperm(len(clean), generator=g)
        n_opt = min(self.config.opt_samples, len(clean) // 2)
        opt, rest = perm[:n_opt], perm[n_opt:]
        if self.config.eval_samples is not None:
            rest = rest[: self._eval_per_run(self.config.eval_samples)]
        return clean.x[opt], clean.y[opt], clean.x[rest], clean.y[rest]

    def _noise(
        self, model: nn.Module, noise: NeuronNoise, x: Tensor, y: Tensor, g: torch.Generator, dev: torch.device
    ) -> None:
        steps = self.scaled(self.config.steps)
        if self.options["reinit_per_batch"]:  # official code: re-init per batch, keep the last batch's noise
            model.train(self.options["noise_train_mode"])
            cfg = PGDConfig(steps=steps, random_start=True, project=self.options["project"])
            for _ in track(range(self.config.batches_per_epoch), "neuron noise", quiet=self.quiet):
                idx = torch.randint(0, len(x), (min(self.config.batch_size, len(x)),), generator=g)
                adversarial_neuron_noise(model, noise, x[idx].to(dev), y[idx].to(dev), cfg, g)
            return
        model.train(self.options["noise_train_mode"])
        noise.reset(random=True, generator=g)
        order = torch.randperm(len(x), generator=g)
        chunks = [order[sl] for sl in batches(len(x), self.config.batch_size)]
        step = self.options["step_scale"] * self.config.eps / steps
        with noise.applied():
            for i in track(range(steps), "neuron noise", quiet=self.quiet):
                idx = chunks[i % len(chunks)]
                loss = F.cross_entropy(model(x[idx].to(dev)), y[idx].to(dev))
                noise.ascend(loss, step, project=self.options["project"])

    @torch.no_grad()
    def _loss(self, model: nn.Module, x: Tensor, y: Tensor, dev: torch.device) -> float:
        total = 0.0
        with eval_mode(model):
            for sl in batches(len(x), 512):
                total += float(F.cross_entropy(model(x[sl].to(dev)), y[sl].to(dev), reduction="sum"))
        return total / max(1, len(x))

    @torch.no_grad()
    def _histograms(
        self, model: nn.Module, noise: NeuronNoise, m: Tensor, x: Tensor, y: Tensor, k: int, dev: torch.device
    ) -> tuple[Tensor, Tensor, Tensor, int]:
        """Confusion matrices, rows = true class, columns = predicted class: (negative-mask under
        noise, no-mask under noise, negative-mask without noise, images predicted).
        Column sums are the histograms."""
        split = get_split(model)
        neg = torch.zeros(k, k, dtype=torch.long)
        plain = torch.zeros(k, k, dtype=torch.long)
        neg_quiet = torch.zeros(k, k, dtype=torch.long)
        n_total, seen = len(x), 0
        per_class_total = torch.bincount(y, minlength=k)
        with eval_mode(model):
            for sl in batches(n_total, 256):
                xb = x[sl].to(dev)
                f = split.features(xb)
                logits_neg, logits_plain = split.head((1 - m) * f), split.head(f)
                if not (torch.isfinite(logits_neg).all() and torch.isfinite(logits_plain).all()):
                    raise BanError(
                        "the model outputs NaN/Inf under neuron noise; lower eps (e.g. eps=0.1) or check the model"
                    )
                yt = y[sl]
                noise.noise_on = False
                logits_quiet = split.head((1 - m) * split.features(xb))
                noise.noise_on = True
                neg_quiet += torch.bincount(yt * k + logits_quiet.argmax(1).cpu(), minlength=k * k).view(k, k)
                neg += torch.bincount(yt * k + logits_neg.argmax(1).cpu(), minlength=k * k).view(k, k)
                plain += torch.bincount(yt * k + logits_plain.argmax(1).cpu(), minlength=k * k).view(k, k)
                seen = sl.stop
                chosen = neg if self.config.statistic == "negative-mask" else plain
                if self._stops_early() and self._decided(chosen, per_class_total):
                    break
        return neg, plain, neg_quiet, seen

    def _averaged(self) -> bool:
        """True when the verdict is a mean over several runs."""
        return self.options["restarts"] > 1 and self.options["combine"] == "mean"

    def _stops_early(self) -> bool:
        """Early stop settles one run's decision; a mean over restarts needs every run's shares whole."""
        return bool(self.options["early_stop"]) and not self._averaged()

    def _eval_per_run(self, n: int) -> int:
        """Held-out images a run predicts of the `n` asked for: shared out among averaged restarts (each run's
        shares are then estimated from n / restarts images; the mean from all of them)."""
        return -(-n // self.options["restarts"]) if self._averaged() else n

    def _scores(self, confusion: Tensor) -> Tensor:
        """Score of every candidate target class under the chosen rule."""
        return (
            per_class_scores(confusion, q=self.config.quantile)
            if self.config.rule == "per-class"
            else pooled_scores(confusion)
        )

    def _decided(self, confusion: Tensor, totals: Tensor) -> bool:
        """True when neither the decision nor the target can change, whatever the unseen images give."""
        seen = confusion.sum(1)
        unseen = totals - seen
        if self.config.rule == "per-class":
            low = per_class_scores(confusion, totals, self.config.quantile)  # unseen images all elsewhere
            # upper bound: every unseen image of class c goes to t, for every t at once
            high = per_class_scores(confusion + unseen[:, None].expand_as(confusion), totals, self.config.quantile)
        else:
            n = totals.sum().clamp_min(1).double()
            counts = confusion.sum(0).double()
            low, high = counts / n, (counts + unseen.sum()) / n
        best = int(low.argmax())
        others = torch.cat([high[:best], high[best + 1 :]])
        if low[best] > self.config.threshold and bool((others < low[best]).all()):
            return True  # flagged, and no other class can overtake
        return bool((high <= self.config.threshold).all())  # no class can pass the threshold any more

    # ---- the detector ------------------------------------------------------------------------
    def detect(self, model: nn.Module, clean: CleanData) -> Verdict:
        """One run at `seed`; with `restarts` = K, K runs at seeds seed .. seed + K - 1, combined by
        `combine` (the highest-scoring run, or every class's mean score), every run's score and class
        recorded. The chosen run (the one scoring highest on the verdict's class) gives the details."""
        start = time.perf_counter()
        model, dev = self.prepare(model, clean, frozen_copy=False)  # BAN restores what it changes
        get_split(model)
        runs = [self._run(model, dev, clean, self.seed + i) for i in range(self.options["restarts"])]
        if len(runs) == 1:
            return runs[0]
        combined: dict[str, Any] = {}
        if self._averaged():
            per_class = torch.tensor([v.details["scores_per_class"] for v in runs], dtype=torch.float64)
            scores = per_class.mean(0)
            flagged, target = flag_and_target(scores, self.config.threshold)
            score = float(scores.max())
            best = int(per_class[:, int(scores.argmax())].argmax())
            combined["scores_per_class"] = [round(float(v), 6) for v in scores]
        else:
            best = max(range(len(runs)), key=lambda i: runs[i].score)
            flagged, target, score = runs[best].backdoored, runs[best].target, runs[best].score
        chosen = runs[best]
        details = {
            **chosen.details,
            "restarts": [
                {
                    "seed": self.seed + i,
                    "score": v.score,
                    "argmax_class": v.details["argmax_class"],
                    "scores_per_class": v.details["scores_per_class"],
                }
                for i, v in enumerate(runs)
            ],
            "restart_chosen": best,
            **combined,
        }
        return self.verdict(flagged, target, score, chosen.threshold, start, details, chosen.artifacts)

    def _run(self, model: nn.Module, dev: torch.device, clean: CleanData, seed: int) -> Verdict:
        """One run on the prepared model: mask, noise and held-out predictions, every random draw from `seed`."""
        start = time.perf_counter()
        g = make_generator(seed)
        xo, yo, xe, ye = self._split_data(clean, g)
        k = clean.num_classes
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        was_training = model.training
        noise = NeuronNoise(model, self.config.eps)
        timings: dict[str, float] = {}
        clean_loss = self._loss(model, xo, yo, dev)
        try:
            t = time.perf_counter()
            mask_cfg = MaskConfig(
                parametrization="clamp",
                lam=self.config.mask_lambda,
                lr=self.config.mask_lr,
                epochs=self.scaled(self.config.mask_epochs),
                batch_size=self.config.batch_size,
                batches_per_epoch=self._mask_batches() or None,
                cache_features=self.options["cache_features"],
                train_mode=self.options["mask_train_mode"],
            )
            result = learn_feature_mask(model, xo, yo, mask_cfg, g, dev, self.quiet)
            m = result.value()
            timings["mask"] = time.perf_counter() - t
            t = time.perf_counter()
            self._noise(model, noise, xo, yo, g, dev)
            if self.options["recalibrate_bn"]:
                with noise.applied():
                    recalibrate_running_stats(model, xo, self.config.batch_size)
            timings["noise"] = time.perf_counter() - t
            t = time.perf_counter()
            with noise.applied():
                noisy_loss = self._loss(model, xo, yo, dev)  # faithful: with the noise-time running statistics
                conf_neg, conf_plain, conf_quiet, seen = self._histograms(model, noise, m, xe, ye, k, dev)
                neg, plain = conf_neg.sum(0), conf_plain.sum(0)
            timings["histogram"] = time.perf_counter() - t
            artifacts = {  # what the histograms were computed with, for figures (never serialised)
                "mask": m.detach().cpu(),
                "noise": [v.detach().cpu().clone() for v in noise.noise_tensors()],
                "buffers": {n: b.detach().cpu().clone() for n, b in model.named_buffers()},
            }
        finally:
            noise.detach()
            with torch.no_grad():
                for n, b in model.named_buffers():
                    b.copy_(buffers[n])
            model.train(was_training)
        confusion = conf_neg if self.config.statistic == "negative-mask" else conf_plain
        counts = confusion.sum(0)
        scores = self._scores(confusion)
        target = int(scores.argmax())
        score = float(scores[target])
        flagged, _ = flag_and_target(scores, self.config.threshold)
        details = {
            "histogram": [int(c) for c in counts],
            "histogram_negative_mask": [int(c) for c in neg],
            "histogram_no_mask": [int(c) for c in plain],
            "confusion_negative_mask": conf_neg.tolist(),
            "confusion_no_mask": conf_plain.tolist(),
            "confusion_negative_mask_no_noise": conf_quiet.tolist(),
            "argmax_class": int(counts.argmax()),
            "scores_per_class": [round(float(v), 6) for v in scores],
            "flip_rates": _flip_rates(confusion, target).tolist(),
            "fraction_negative_mask": float(neg.max()) / max(1, seen),
            "fraction_no_mask": float(plain.max()) / max(1, seen),
            "images_predicted": int(seen),
            "images_held_out": len(xe),
            "optimisation_images": len(xo),
            "clean_loss": clean_loss,
            "noisy_loss": noisy_loss,
            "loss_rise": noisy_loss - clean_loss,
            "noise_layers": noise.kind,
            "noise_neurons": noise.num_neurons,
            "noise_max_abs": noise.magnitude(),
            "mask_mean": float(m.mean()),
            "mask_history": result.history[-1:] if result.history else [],
            "seconds_per_stage": timings,
        }
        return self.verdict(
            flagged, target if flagged else None, score, self.config.threshold, start, details, artifacts
        )


def flag_and_target(scores: Tensor, threshold: float) -> tuple[bool, int | None]:
    """(flagged, target): the best-scoring class, flagged when its score exceeds the threshold."""
    best = int(scores.argmax())
    return (True, best) if float(scores[best]) > threshold else (False, None)


def _flip_rates(confusion: Tensor, target: int) -> Tensor:
    """Share of each true class's images predicted as `target` (the target's own row included)."""
    return class_rates(confusion)[:, target]


def class_rates(confusion: Tensor, totals: Tensor | None = None) -> Tensor:
    """rates[c, t] = (images of class c predicted t) / (images of c); `totals` replaces the row sums."""
    rows = confusion.sum(1) if totals is None else totals
    return confusion.double() / rows.clamp_min(1).double()[:, None]


def pooled_scores(confusion: Tensor) -> Tensor:
    """score(t) = share of all predicted images that went to t (the paper's rule)."""
    counts = confusion.sum(0).double()
    return counts / counts.sum().clamp_min(1)


def per_class_scores(confusion: Tensor, totals: Tensor | None = None, q: float = 0.5) -> Tensor:
    """score(t) = q-quantile (default: median) over classes c ≠ t of (images of c predicted t) / (images of c).

    `totals` (images per class in the whole held-out set) replaces the row sums, which gives
    the lower bound of the score while only part of the set has been predicted."""
    k = confusion.shape[0]
    rates = class_rates(confusion, totals)
    present = (confusion.sum(1) if totals is None else totals) > 0
    out = torch.zeros(k, dtype=torch.float64)
    for t in range(k):
        keep = present.clone()
        keep[t] = False
        if keep.any():
            out[t] = torch.quantile(rates[keep, t], q)
    return out


def averaged_scores(verdict: Verdict) -> tuple[list[float], list[list[float]], list[int]] | None:
    """What a verdict averaged over restarts computed: every class's mean score (the verdict's score is
    the largest), each run's per-class scores and the runs' seeds; None for a single run or a best-of."""
    runs = verdict.details.get("restarts") or []
    if verdict.settings.get("combine") != "mean" or len(runs) < 2 or "scores_per_class" not in verdict.details:
        return None
    if not all("scores_per_class" in r for r in runs):  # written before the runs' scores were recorded
        return None
    return (
        [float(v) for v in verdict.details["scores_per_class"]],
        [[float(v) for v in r["scores_per_class"]] for r in runs],
        [int(r["seed"]) for r in runs],
    )
