"""The zoo spec: one YAML file naming the dataset, models, attacks, detectors and mitigations of a benchmark.

Validated with pydantic (unknown keys are errors); every problem becomes one BanError line that
names the key and the fix. `load_spec(path)` is the entry point.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ban.attacks.implant import IMPLANT_ASR
from ban.errors import BanError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where the images come from and how they are split (paper: attacker 90%, defender 10%)."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    defender_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    split_seed: int = 0
    train_subset: int | None = Field(None, ge=10, description="class-balanced subset of the attacker's part")
    test_subset: int | None = Field(None, ge=10, description="class-balanced subset of the test set for BA/ASR")


class ArchSpec(_Strict):
    """One architecture of the zoo (`width` scales every layer's channels)."""

    arch: str
    width: float = Field(1.0, gt=0.0)

    @property
    def label(self) -> str:
        return self.arch if self.width == 1.0 else f"{self.arch}-w{self.width:g}"


class TrainSpec(_Strict):
    """The training recipe, shared by every model of the zoo (ban.train.TrainConfig's fields)."""

    epochs: int = Field(5, ge=1)
    lr: float = Field(0.01, gt=0.0)
    batch_size: int = Field(128, ge=1)
    momentum: float = Field(0.9, ge=0.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    schedule: Literal["multistep", "cosine", "none"] = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = Field(0.1, gt=0.0)
    augment: bool = True
    crop_pad: int = Field(4, ge=0)


class AttackSpec(_Strict):
    """One attack row: a registered attack with its parameters; `targets` cycle over its models."""

    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    targets: list[int] | None = None
    models: int | None = Field(None, ge=1, description="models of this attack (default: models_per_attack)")

    @property
    def row(self) -> str:
        return self.label or self.name


class MethodSpec(_Strict):
    """A detector or mitigation with its settings; `clean_samples` overrides the spec-wide count.

    `models` limits a costly method to the first N models of every group (same N for each attack
    and for the clean models, so detection accuracy stays balanced); `groups` to the named groups
    (attack rows, `clean`), e.g. a baseline's uncapped run on one BadNets and one clean model.
    """

    name: str
    label: str | None = None
    budget: float | None = Field(None, gt=0.0, description="work multiplier (1 = the method's defaults)")
    settings: dict[str, Any] = Field(default_factory=dict)
    clean_samples: int | None = Field(None, ge=1)
    models: int | None = Field(
        None, ge=1, description="run on the first N models of each attack and of the clean group (default: every model)"
    )
    groups: list[str] | None = Field(
        None, min_length=1, description="run only on these groups: attack rows and/or 'clean' (default: every group)"
    )

    @property
    def column(self) -> str:
        return self.label or self.name

    def kwargs(self) -> dict[str, Any]:
        """Settings passed to the registry's factory (budget only when the spec sets one)."""
        out = dict(self.settings)
        if self.budget is not None:
            out["budget"] = self.budget
        return out


class CleanSamples(_Strict):
    """How many of the defender's held-out clean images each detector / mitigation receives."""

    detect: int = Field(1000, ge=1)
    mitigate: int = Field(500, ge=1)


class Resources(_Strict):
    """What one task asks of the executor (Ray: num_cpus / num_gpus per task)."""

    cpus_per_task: float = Field(1.0, gt=0.0)
    gpus_per_task: float = Field(0.0, ge=0.0)


class BenchSpec(_Strict):
    """A whole benchmark: a zoo of models, the detectors run on each, the mitigations run on the backdoored ones.

    `min_asr`: the ASR a poisoned model needs for the report to count it as backdoored; weaker
    ones are listed apart and counted neither as backdoored nor as clean (it shapes the report
    only, so it is not part of the fingerprint: changing it keeps the folder's results).
    """

    name: str
    description: str = ""
    data: DataSpec = Field(default_factory=DataSpec)
    architectures: list[ArchSpec] = Field(min_length=1)
    train: TrainSpec = Field(default_factory=TrainSpec)
    attacks: list[AttackSpec] = Field(default_factory=list)
    models_per_attack: int = Field(1, ge=1)
    clean_models: int = Field(1, ge=0)
    seed: int = 0
    detectors: list[MethodSpec] = Field(default_factory=list)
    mitigations: list[MethodSpec] = Field(default_factory=list)
    clean_samples: CleanSamples = Field(default_factory=CleanSamples)
    device: str = "auto"
    resources: Resources = Field(default_factory=Resources)
    min_asr: float = IMPLANT_ASR

    @field_validator("min_asr")
    @classmethod
    def _min_asr_in_unit_interval(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError(
                f"key 'min_asr' must lie in (0, 1), got {v:g}: it is the ASR a poisoned model needs to count "
                f"as backdoored (default {IMPLANT_ASR:g})"
            )
        return v

    @field_validator("architectures", mode="before")
    @classmethod
    def _arch_shorthand(cls, v: Any) -> Any:
        """`architectures: [small_cnn, {arch: resnet18, width: 0.25}]`: a bare name means width 1."""
        if isinstance(v, list):
            return [{"arch": a} if isinstance(a, str) else a for a in v]
        return v

    @field_validator("detectors", "mitigations", mode="before")
    @classmethod
    def _method_shorthand(cls, v: Any) -> Any:
        """A bare name stands for `{name: NAME}`."""
        if isinstance(v, list):
            return [{"name": a} if isinstance(a, str) else a for a in v]
        return v

    @model_validator(mode="after")
    def _unique_labels(self) -> BenchSpec:
        for what, labels in (
            ("attacks", [a.row for a in self.attacks]),
            ("detectors", [d.column for d in self.detectors]),
            ("mitigations", [m.column for m in self.mitigations]),
            ("architectures", [a.label for a in self.architectures]),
        ):
            dup = sorted({x for x in labels if labels.count(x) > 1})
            if dup:
                raise ValueError(f"{what} '{dup[0]}' appears twice; give each a distinct 'label'")
        if "clean" in [a.row for a in self.attacks]:
            raise ValueError("attack label 'clean' is reserved for the clean models; choose another label")
        if not self.attacks and not self.clean_models:
            raise ValueError("the zoo is empty; list some attacks or set clean_models")
        return self

    @model_validator(mode="after")
    def _known_groups(self) -> BenchSpec:
        """A method's `groups` name attack rows or `clean`."""
        known = [a.row for a in self.attacks] + ["clean"]
        for what, methods in (("detector", self.detectors), ("mitigation", self.mitigations)):
            for m in methods:
                unknown = [g for g in m.groups or [] if g not in known]
                if unknown:
                    raise ValueError(
                        f"{what} '{m.column}' names group '{unknown[0]}' in 'groups'; choose from {', '.join(known)}"
                    )
        return self

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """Hash of everything that shapes the results (not the name, description, data_dir, device, resources or
        min_asr, which shapes only the report)."""
        skip = {
            "name": True,
            "description": True,
            "device": True,
            "resources": True,
            "min_asr": True,
            "data": {"data_dir"},
        }
        d = self.model_dump(mode="json", exclude=skip)
        for key in ("detectors", "mitigations"):  # unset `groups` (added 2026-12-03) keeps older fingerprints
            d[key] = [{k: v for k, v in m.items() if k != "groups" or v is not None} for m in d[key]]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def with_overrides(self, data_dir: str | None = None, device: str | None = None) -> BenchSpec:
        """A copy with the command line's --data-dir / --device applied."""
        update: dict[str, Any] = {}
        if data_dir is not None:
            update["data"] = self.data.model_copy(update={"data_dir": str(data_dir)})
        if device is not None:
            update["device"] = device
        return self.model_copy(update=update) if update else self


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the spec allows at the mapping that holds `loc`'s last key."""
    model: Any = BenchSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _format_error(source: str, exc: ValidationError) -> str:
    """The first validation error as one line: where, what, and the fix."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(tuple(err["loc"]))
        known = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"{source}: unknown key '{loc}'; remove it or fix its spelling{known}"
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    if kind == "missing":
        return f"{source}: key '{loc}' is missing; add it{more}"
    if kind == "value_error":
        return f"{source}: {msg}{more}"
    return f"{source}: key '{loc}': {msg} (got {err.get('input')!r}); fix the value{more}"


def parse_spec(raw: Any, source: str = "spec") -> BenchSpec:
    """Validate a spec given as a dict (from YAML); check the names against the registries."""
    if not isinstance(raw, dict):
        raise BanError(f"{source}: a spec must be a YAML mapping with keys name, architectures, attacks, ...")
    try:
        spec = BenchSpec.model_validate(raw)
    except ValidationError as exc:
        raise BanError(_format_error(source, exc)) from None
    check_names(spec, source)
    return spec


def load_spec(path: str | Path) -> BenchSpec:
    """Read and validate a YAML spec file."""
    path = Path(path)
    if not path.is_file():
        raise BanError(f"spec {path} not found; pass the path of a YAML spec (see benchmarks/specs/)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BanError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    return parse_spec(raw, str(path))


def check_names(spec: BenchSpec, source: str = "spec") -> None:
    """Every attack, detector, mitigation and architecture must be registered and accept its settings."""
    from ban.attacks import ATTACKS
    from ban.detectors import DETECTORS
    from ban.mitigations import MITIGATIONS, create_mitigation
    from ban.models.registry import MODELS

    for i, a in enumerate(spec.architectures):
        if a.arch not in MODELS:
            raise BanError(f"{source}: key 'architectures.{i}.arch': {MODELS.unknown(a.arch)}")
    for where, items, registry in (
        ("attacks", spec.attacks, ATTACKS),
        ("detectors", spec.detectors, DETECTORS),
        ("mitigations", spec.mitigations, MITIGATIONS),
    ):
        for i, item in enumerate(items):
            if item.name not in registry:
                raise BanError(f"{source}: key '{where}.{i}.name': {registry.unknown(item.name)}")
    # build each method once (constructors only store settings), so a bad setting fails now, not hours in
    try:
        for _ in built_attacks(spec):
            pass
        for _ in built_detectors(spec):
            pass
        for i, m in enumerate(spec.mitigations):
            with _key(f"mitigations.{i}"):
                create_mitigation(m.name, seed=spec.seed, device="cpu", quiet=True, **m.kwargs())
    except BanError as exc:
        raise BanError(f"{source}: {exc}") from None


def built_attacks(spec: BenchSpec) -> Iterator[tuple[int, Any]]:
    """(row, attack) for every target of every attack row; a bad parameter is a BanError naming its key."""
    from ban.attacks import create_attack

    for i, a in enumerate(spec.attacks):
        for t in a.targets or [None]:
            with _key(f"attacks.{i}"):
                attack = create_attack(a.name, **{**a.params, **({"target": t} if t is not None else {})})
            yield i, attack


def built_detectors(spec: BenchSpec) -> Iterator[tuple[int, MethodSpec, Any]]:
    """(row, its spec, detector) for every detector row; a bad setting is a BanError naming its key."""
    from ban.detectors import create_detector

    for i, d in enumerate(spec.detectors):
        with _key(f"detectors.{i}"):
            detector = create_detector(d.name, seed=spec.seed, device="cpu", quiet=True, **d.kwargs())
        yield i, d, detector


@contextmanager
def _key(where: str) -> Iterator[None]:
    """A BanError raised in the block names the spec key it came from."""
    try:
        yield
    except BanError as exc:
        raise BanError(f"key '{where}': {exc}") from None


def check_against_data(spec: BenchSpec) -> None:
    """What only the dataset's class count can decide, checked before any model is trained: every attack's
    target (and SSDT's victim) is a class of the dataset, and every detector gets at least the clean images it
    needs (BAN: 10 a class). The class count is read off the test split. (A target of 12 on ten classes used
    to fail when its model's turn came; too few clean images failed every detection after the whole zoo
    had trained.)"""
    from ban.data.registry import load_dataset

    k = load_dataset(spec.data.dataset, "test", spec.data.data_dir).num_classes
    for i, attack in built_attacks(spec):
        for role, c in (("target", attack.target), ("victim", attack.victim)):
            if c is not None and not 0 <= c < k:
                raise BanError(
                    f"key 'attacks.{i}': {role} class {c} is outside the class range 0..{k - 1} of "
                    f"{spec.data.dataset}; fix the value"
                )
    for i, d, detector in built_detectors(spec):
        n, need = d.clean_samples or spec.clean_samples.detect, detector.min_clean_images(k)
        if n < need:
            raise BanError(
                f"key 'detectors.{i}': {d.column} needs at least {need} clean images on {k} classes, and the spec "
                f"gives it {n}; raise clean_samples.detect (or the detector's own clean_samples) to {need} or more"
            )


def check_data(spec: BenchSpec) -> None:
    """The dataset must be one `load_dataset` accepts, and its folder must exist (checked before any work starts)."""
    from ban.data.registry import dataset_info, unknown_dataset

    info = dataset_info(spec.data.dataset)
    if info is None and not Path(spec.data.dataset).exists():
        raise BanError(f"key 'data.dataset': {unknown_dataset(spec.data.dataset)}")
    if spec.data.data_dir is not None:
        if not Path(spec.data.data_dir).exists():
            raise BanError(
                f"key 'data.data_dir': {spec.data.data_dir} not found; point it (or --data-dir) at the dataset's folder"
            )
        return
    if info is not None and (info.default_dir is None or not Path(info.default_dir).is_dir()):
        raise BanError(
            f"key 'data.data_dir' is missing and dataset '{info.name}' is not installed: {info.install_hint}"
        )
