"""What a detector's score means: its rank among the clean models of a reference zoo.

A reference file holds, per (detector, architecture), the scores that detector gave the clean models
of a benchmark zoo, with the settings it ran under. A new model's score is then read as "k of the n
clean reference models scored at least this much": an empirical false-alarm rate k/n, and the
conservative p-value (k + 1)/(n + 1) (the model's score treated as one more draw from the clean
population). `ban bench reference DIR --out FILE` writes the file; `ban detect --reference FILE`
reads it. A reference only speaks for models like its own: the same detector settings, architecture,
width, dataset and class count, and at least `MIN_CLEAN` clean models; anything else is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ban.errors import BanError
from ban.utils import atomic_write_text, versions

FORMAT = "ban-reference/1"
MIN_CLEAN = 5
MAX_BYTES = 16 * 2**20  # a reference holds a few numbers per clean model
# Resolved detector settings that change what a score means; a reference must agree on all it records.
SETTINGS_IGNORED = ("quiet", "device", "seed")


@dataclass(frozen=True)
class Reference:
    """The clean models' scores of one detector on one architecture of one zoo."""

    detector: str
    arch: str
    width: float
    dataset: str
    num_classes: int
    settings: dict[str, Any]
    clean_scores: tuple[float, ...]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        w = "" if self.width == 1.0 else f"-w{self.width:g}"
        return f"{self.detector} on {self.arch}{w} ({self.dataset}, {self.num_classes} classes)"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["clean_scores"] = list(self.clean_scores)
        return d


@dataclass(frozen=True)
class Calibration:
    """A score's rank among a reference's clean scores."""

    score: float
    clean_models: int
    clean_at_or_above: int
    false_alarm_rate: float
    p_value: float
    reference: str

    def sentence(self) -> str:
        n, k = self.clean_models, self.clean_at_or_above
        if k == 0:
            head = f"higher than all {n} clean models"
        elif k == n:
            head = f"not higher than any of the {n} clean models"
        else:
            head = f"{k} of {n} clean models scored at least this much"
        return f"{head} of {self.reference} (false-alarm rate {k}/{n}, p = {self.p_value:.3f})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.sentence()}


def calibrate(reference: Reference, score: float) -> Calibration:
    """Rank `score` among the reference's clean scores (ties count against the model: at or above)."""
    n = len(reference.clean_scores)
    k = sum(1 for s in reference.clean_scores if s >= score)
    return Calibration(float(score), n, k, k / n, (k + 1) / (n + 1), reference.label)


def comparable_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in SETTINGS_IGNORED}


def _canonical(kind: str, name: str) -> str:
    """The registered spelling of a detector or architecture name (a name no registry knows is kept)."""
    if kind == "detector":
        from ban.detectors import DETECTORS as registry
    else:
        from ban.models.registry import MODELS as registry
    return registry.resolve(name) or name


def references_from_detections(detections: list[dict[str, Any]], dataset: str, source: str) -> list[Reference]:
    """One Reference per (method column, architecture) from a bench folder's detection results."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in detections:
        if r["model"].get("backdoored"):
            continue
        groups.setdefault((r["method"], r["model"]["arch_label"]), []).append(r)
    refs = []
    for (method, _arch), rows in sorted(groups.items()):
        first = rows[0]
        settings = comparable_settings(first["verdict"]["settings"])
        if any(comparable_settings(r["verdict"]["settings"]) != settings for r in rows[1:]):
            raise BanError(
                f"{source}: the clean results of '{method}' were computed under different settings; "
                "rerun `ban bench run` so that every result is current"
            )
        details = first["verdict"].get("details") or {}
        k = len(details.get("histogram") or details.get("scores_per_class") or [])
        refs.append(
            Reference(
                detector=_canonical("detector", first["detector"]),
                arch=_canonical("arch", first["model"]["arch"]),
                width=float(first["model"]["width"]),
                dataset=dataset,
                num_classes=k,
                settings=settings,
                clean_scores=tuple(sorted(float(r["verdict"]["score"]) for r in rows)),
                source=f"{source} ({method})",
            )
        )
    return refs


def save_references(path: str | Path, refs: list[Reference]) -> Path:
    payload = {"format": FORMAT, "versions": versions(), "references": [r.to_dict() for r in refs]}
    path = Path(path)
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def load_references(path: str | Path) -> list[Reference]:
    """Read a reference file (plain JSON; nothing in it is executed), or a one-line BanError."""
    from ban.untrusted.files import read_bytes
    from ban.untrusted.json_io import parse_json_object

    path = Path(path)
    fix = "write one with `ban bench reference DIR --out FILE`"
    raw = parse_json_object(read_bytes(path, "reference file", limit=MAX_BYTES), f"reference file {path}", fix)
    if raw.get("format") != FORMAT or not isinstance(raw.get("references"), list):
        raise BanError(f"{path} is not a ban reference file (format {FORMAT}); {fix}")
    refs = []
    for i, r in enumerate(raw["references"]):
        try:
            refs.append(
                Reference(
                    detector=str(r["detector"]),
                    arch=str(r["arch"]),
                    width=float(r["width"]),
                    dataset=str(r["dataset"]),
                    num_classes=int(r["num_classes"]),
                    settings=dict(r["settings"]),
                    clean_scores=tuple(float(s) for s in r["clean_scores"]),
                    source=str(r.get("source", "")),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BanError(f"{path}: reference {i} is malformed ({exc!r}); {fix}") from exc
    if not refs:
        raise BanError(f"{path} holds no references (its zoo had no clean models); {fix}")
    return refs


def select_reference(
    refs: list[Reference],
    detector: str,
    arch: str,
    width: float,
    dataset: str,
    num_classes: int,
    settings: dict[str, Any],
    source: str = "the reference file",
) -> Reference:
    """The reference for this model and these settings, or a one-line BanError naming the mismatch."""
    detector, arch = _canonical("detector", detector), _canonical("arch", arch)
    mine = [r for r in refs if _canonical("detector", r.detector) == detector]
    if not mine:
        have = ", ".join(sorted({r.detector for r in refs}))
        raise BanError(f"{source} has no reference for detector '{detector}' (it has: {have})")
    want = {"architecture": arch, "width": float(width), "dataset": dataset, "class count": num_classes}

    def facts(r: Reference) -> dict[str, Any]:
        return {
            "architecture": _canonical("arch", r.arch),
            "width": r.width,
            "dataset": r.dataset,
            "class count": r.num_classes,
        }

    same = [r for r in mine if facts(r) == want]
    if not same:
        got = facts(mine[0])
        key = next(k for k in want if got[k] != want[k])
        raise BanError(
            f"{source} is for {key} {got[key]}, this model has {want[key]}; use a reference made from a zoo "
            "of the same architecture, width, dataset and class count"
        )
    ours = comparable_settings(settings)

    def differs(r: Reference) -> str | None:  # the first setting this scan does not share with `r`
        return next((k for k in sorted(r.settings) if r.settings[k] != ours.get(k)), None)

    r = next((r for r in same if differs(r) is None), None)
    if r is None:
        r = same[0]
        key = differs(r)
        raise BanError(
            f"{source} was made with {detector} setting {key}={r.settings.get(key)!r}, this scan uses "
            f"{ours.get(key)!r}; scan with the reference's settings or build a reference with these"
        )
    if len(r.clean_scores) < MIN_CLEAN:
        raise BanError(
            f"{source} holds {len(r.clean_scores)} clean models for {r.label}, fewer than {MIN_CLEAN}; "
            f"build it from a zoo with at least {MIN_CLEAN} clean models"
        )
    return r
