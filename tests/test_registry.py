"""The registries: one spelling rule and one unknown-name message for models, datasets, attacks,
detectors and mitigations, the same in the loader, the bench spec, the CLI and checkpoint metadata."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ban.attacks import ATTACKS, attack_class, create_attack, list_attacks
from ban.bench.spec import BenchSpec, check_data, parse_spec
from ban.calibration import Reference, references_from_detections, select_reference
from ban.checkpoint import model_metadata
from ban.cli import main
from ban.data import DATASETS, list_datasets, load_dataset
from ban.detectors import DETECTORS, create_detector, list_detectors
from ban.errors import BanError
from ban.mitigations import MITIGATIONS, create_mitigation, list_mitigations
from ban.models import MODELS, canonical_arch, create_model, list_models
from ban.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "benchmarks" / "specs" / "smoke.yaml"
REGISTRIES: list[Registry[Any]] = [MODELS, DATASETS, ATTACKS, DETECTORS, MITIGATIONS]
KINDS = [r.kind for r in REGISTRIES]


def spellings(name: str) -> Iterator[str]:
    """Ways a user may write `name`: any case, `_` or `-`, spaces around it."""
    yield from (name, name.upper(), name.title(), name.replace("-", "_"), name.replace("_", "-"), f" {name} ")


def error_of(call: Callable[[], object]) -> str:
    with pytest.raises(BanError) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("registry", REGISTRIES, ids=KINDS)
def test_every_spelling_of_every_name_and_alias_finds_its_entry(registry: Registry[Any]) -> None:
    for name in registry:
        for alias in [name, *registry.aliases(name)]:
            for spelling in spellings(alias):
                assert registry.canonical(spelling) == name, spelling
                assert spelling in registry and registry[spelling] is registry.entry(name)


@pytest.mark.parametrize("registry", REGISTRIES, ids=KINDS)
def test_unknown_name_is_one_line_naming_every_choice(registry: Registry[Any]) -> None:
    message = error_of(lambda: registry.canonical("no-such-name"))
    assert "\n" not in message and message.startswith(f"unknown {registry.label} 'no-such-name'")
    assert all(name in message for name in registry.list())
    assert "no-such-name" not in registry and registry.get("no-such-name") is None
    with pytest.raises(KeyError):
        registry["no-such-name"]


@pytest.mark.parametrize("registry", REGISTRIES, ids=KINDS)
def test_list_is_sorted_and_iteration_keeps_registration_order(registry: Registry[Any]) -> None:
    assert registry.list() == sorted(registry) == registry.list()
    assert len(registry.list()) == len(set(registry.list())) == len(registry)


def test_registration_order_of_the_public_views() -> None:
    assert list(ATTACKS) == ["badnets", "blend", "wanet", "iad", "bpp", "adap-blend", "ssdt"]
    assert list(DETECTORS)[0] == "ban"
    assert list_models() == MODELS.list() and list_datasets() == DATASETS.list()
    assert list_attacks() == ATTACKS.list() and list_detectors() == DETECTORS.list()
    assert list_mitigations() == MITIGATIONS.list()


def test_a_spelling_cannot_name_two_entries() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("a-b", 1, aliases=["ab"])
    for taken in ("A_B", "AB"):
        with pytest.raises(ValueError, match="already registered"):
            reg.register(taken, 2)
    assert reg.list() == ["a-b"] and reg.aliases("a_b") == ["ab"]


def test_create_turns_refused_settings_into_a_ban_error() -> None:
    reg: Registry[Callable[..., int]] = Registry("thing")
    reg.register("one", lambda x=1: x)
    assert reg.create("ONE", x=3) == 3
    assert "\n" not in (msg := error_of(lambda: reg.create("one", y=2))) and "bad settings for thing 'one'" in msg
    assert error_of(lambda: reg.create("two")) == "unknown thing 'two'; choose one of one"


def test_public_constructors_go_through_the_registries() -> None:
    assert canonical_arch("PreAct-ResNet18") == "preact_resnet18" == canonical_arch("preactresnet18")
    assert attack_class("Adap_Blend") is ATTACKS["adap-blend"]
    assert type(create_attack("BadNets")) is ATTACKS["badnets"]
    assert type(create_detector("BTIDBF_Star")) is DETECTORS["btidbf-star"]
    assert type(create_mitigation("BTIDBF_U")) is MITIGATIONS["btidbf-u"]
    assert create_model("Small-CNN", in_channels=1).__class__ is create_model("cnn", in_channels=1).__class__


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: create_model("nosuch"), "unknown architecture 'nosuch'; choose one of "),
        (lambda: create_attack("nosuch"), "unknown attack 'nosuch'; choose one of "),
        (lambda: create_detector("nosuch"), "unknown detector 'nosuch'; choose one of "),
        (lambda: create_mitigation("nosuch"), "unknown mitigation method 'nosuch'; choose one of "),
        (lambda: load_dataset("nosuch"), "unknown dataset 'nosuch': not one of "),
    ],
    ids=["model", "attack", "detector", "mitigation", "dataset"],
)
def test_public_unknown_messages(call: Callable[[], object], expected: str) -> None:
    message = error_of(call)
    assert message.startswith(expected) and "\n" not in message


def _spec(**data: Any) -> BenchSpec:
    raw = yaml.safe_load(SMOKE.read_text())
    raw["data"].update(data)
    return BenchSpec.model_validate({**raw, "detectors": [], "mitigations": []})


@pytest.mark.parametrize(
    "name", ["cifar", "CIFAR-10", "cifar_10", "Cifar10", "fmnist", "Fashion_MNIST", "FashionMNIST", "MNIST", "nosuch"]
)
def test_a_bench_spec_accepts_a_dataset_name_iff_the_loader_does(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray folder of that name
    empty = tmp_path / "empty"
    empty.mkdir()
    known = name != "nosuch"
    loader = error_of(lambda: load_dataset(name, "test", empty))  # known names fail later: no files
    assert ("unknown dataset" in loader) is not known
    for data_dir in (None, str(empty)):
        spec = _spec(dataset=name, data_dir=data_dir)
        if data_dir is not None and known:
            check_data(spec)
            continue
        try:
            check_data(spec)
            bench = ""
        except BanError as exc:
            bench = str(exc)
        assert ("unknown dataset" in bench) is not known, (data_dir, bench)
        assert "\n" not in bench


def test_bench_spec_names_resolve_like_the_constructors() -> None:
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(architectures=[{"arch": "PreAct-ResNet18", "width": 0.25}], detectors=[], mitigations=[])
    raw["attacks"][0]["name"] = "BadNets"
    parse_spec(raw, "spec")
    for where, key, registry in (
        ("architectures", "arch", MODELS),
        ("attacks", "name", ATTACKS),
        ("detectors", "name", DETECTORS),
        ("mitigations", "name", MITIGATIONS),
    ):
        bad = yaml.safe_load(SMOKE.read_text())
        bad[where] = [{key: "nosuch"} if where != "architectures" else {"arch": "nosuch"}]
        message = error_of(lambda bad=bad: parse_spec(bad, "spec"))
        assert message.startswith(f"spec: key '{where}.0.{key}': unknown {registry.label} 'nosuch'; choose one of ")
        assert "\n" not in message and all(n in message for n in registry.list())


def test_checkpoint_metadata_stores_the_canonical_arch() -> None:
    model = create_model("small_cnn", in_channels=1)
    assert model_metadata(model, "Small-CNN", 10, (1, 28, 28))["arch"] == "small_cnn"
    assert "unknown architecture 'nosuch'" in error_of(lambda: model_metadata(model, "nosuch", 10, (1, 28, 28)))


def test_a_reference_matches_the_model_and_detector_however_the_spec_spelt_them() -> None:
    model = {"backdoored": False, "arch_label": "PreAct-ResNet18", "arch": "PreAct-ResNet18", "width": 1.0}
    verdict = {"settings": {"eps": 0.3}, "details": {"histogram": [0] * 10}}
    scores = (0.1, 0.2, 0.3, 0.4, 0.5)
    rows = [
        {"method": "BAN", "detector": "BAN", "model": model, "verdict": {**verdict, "score": score}} for score in scores
    ]
    (ref,) = references_from_detections(rows, "mnist", "z")
    assert (ref.detector, ref.arch) == ("ban", "preact_resnet18")
    old = Reference("BAN", "PreAct_ResNet18", 1.0, "mnist", 10, {"eps": 0.3}, scores)  # a file written before
    for r in (ref, old):
        assert select_reference([r], "ban", "preact_resnet18", 1.0, "mnist", 10, {"eps": 0.3}) is r


def test_cli_unknown_names_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["attack", "preview", "--attack", "nosuch", "--out", str(tmp_path / "t.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown attack 'nosuch'; choose one of ") and "\n" not in err
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"models:   {', '.join(MODELS.list())}" in out and f"detectors: {', '.join(DETECTORS.list())}" in out


LOW = ["errors.py", "version.py", "registry.py", "utils.py"]


@pytest.mark.parametrize("module", LOW)
def test_lowest_modules_import_nothing_above_them(module: str) -> None:
    tree = ast.parse((ROOT / "src" / "ban" / module).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "ban" not in imported
    assert {m for m in imported if m.startswith("ban.")} <= {"ban.errors", "ban.version"}


def test_detector_presets_set_settings_that_explicit_ones_override() -> None:
    nc = create_detector("nc", preset="cpu")
    assert (nc.config.n_samples, nc.config.batch_size) == (100, 32)
    assert nc.settings()["preset"] == "cpu" and "preset" not in create_detector("nc").settings()
    assert create_detector("nc", preset="cpu", n_samples=40).config.n_samples == 40
    assert create_detector("featurere", preset="cpu").config.filters == 8
    assert create_detector("ban", preset="faithful").settings()["preset"] == "faithful"  # BAN's own field
    with pytest.raises(BanError, match=r"^detector 'nc' has no preset 'gpu'; choose one of paper, cpu$"):
        create_detector("nc", preset="gpu")
    # every preset `ban info` lists builds
    for key in list_detectors():
        for preset in DETECTORS[key].PRESETS:
            assert create_detector(key, preset=preset).preset == preset
    lines = DETECTORS.preset_lines("--param")
    assert "  nc --param preset=cpu: n_samples=100, batch_size=32" in lines
    assert not any("preset=paper" in line for line in lines)
