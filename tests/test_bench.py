"""The benchmark end to end: smoke.yaml through `ban bench run` / `report`, a killed run resumed, Ray, bad input.

Real models are trained and real detectors run (the "ban" detector and mitigation); nothing of
the benchmark is mocked. The report's numbers are recomputed here from the result files.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from ban.attacks import ATTACKS
from ban.bench.plan import model_jobs, only_groups, only_methods, plan_tasks
from ban.bench.spec import BenchSpec, load_spec, parse_spec
from ban.bench.store import claim
from ban.cli import main
from ban.detectors import DETECTORS
from ban.errors import BanError
from ban.mitigations import MITIGATIONS

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "benchmarks" / "specs" / "smoke.yaml"
SPECS = sorted((ROOT / "benchmarks" / "specs").glob("*.yaml"))

needs_ban = pytest.mark.skipif(
    "ban" not in DETECTORS or "ban" not in MITIGATIONS,
    reason="the 'ban' detector and mitigation are not registered yet (ban.detectors / ban.mitigations)",
)
needs_ban_detector = pytest.mark.skipif("ban" not in DETECTORS, reason="the 'ban' detector is not registered yet")


def smoke_raw() -> dict[str, Any]:
    return yaml.safe_load(SMOKE.read_text())


def plain_raw() -> dict[str, Any]:
    """smoke.yaml without methods: bad-input tests then fail only on what they break."""
    return {**smoke_raw(), "detectors": [], "mitigations": []}


def tiny_raw() -> dict[str, Any]:
    """An even smaller zoo for the kill and Ray tests: one BadNets and one clean model, BAN only."""
    raw = smoke_raw()
    raw["name"] = "tiny"
    raw["data"].update(train_subset=1000, test_subset=300)
    raw["train"]["epochs"] = 1
    raw.update(models_per_attack=1, clean_models=1, mitigations=[])
    raw["clean_samples"] = {"detect": 300, "mitigate": 300}
    return raw


def load_spec_unchecked(path: Path) -> BenchSpec:
    return BenchSpec.model_validate(yaml.safe_load(path.read_text()))


def write_spec(raw: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def result_files(out: Path, kind: str) -> list[Path]:
    return sorted((out / "results" / kind).glob("*/*.json"))


def model_mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "models").glob("*.safetensors")}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ban.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)


# ---------------------------------------------------------------------------- bad input (fast)


def test_shipped_specs_validate() -> None:
    """Every shipped spec is valid: keys, registered names, and settings each method accepts."""
    assert {p.name for p in SPECS} >= {"smoke.yaml", "fmnist-cpu.yaml", "cifar10-paper.yaml"}
    for path in SPECS:
        spec = parse_spec(yaml.safe_load(path.read_text()), path.name)
        assert spec.architectures and (spec.attacks or spec.clean_models)
    paper = load_spec(ROOT / "benchmarks" / "specs" / "cifar10-paper.yaml")
    assert (paper.train.epochs, paper.train.lr, paper.train.milestones) == (200, 0.01, (100, 150))
    assert {a.label for a in paper.architectures} == {"resnet18", "vgg16", "densenet121"}
    fmnist = load_spec(ROOT / "benchmarks" / "specs" / "fmnist-cpu.yaml")
    assert len(fmnist.attacks) == 7 and fmnist.models_per_attack >= 5 and fmnist.clean_models >= 5
    assert len(plan_tasks(load_spec_unchecked(SMOKE))) == 10
    gpu = load_spec(ROOT / "benchmarks" / "specs" / "gpu-smoke.yaml")  # a lent GPU's first check runs every method
    assert {a.name for a in gpu.attacks} == set(ATTACKS)
    assert {d.name for d in gpu.detectors} == set(DETECTORS) and {m.name for m in gpu.mitigations} == set(MITIGATIONS)


def test_models_are_planned_index_major() -> None:
    """Every group's first model before any group's second: a run stopped early covers all groups evenly."""
    spec = load_spec(ROOT / "benchmarks" / "specs" / "fmnist-cpu.yaml")
    models = model_jobs(spec)
    groups = [a.row for a in spec.attacks] + ["clean"]
    first = models[: len(groups)]
    assert [m.group for m in first] == groups and {m.seed for m in first} == {spec.seed}
    assert [m.seed for m in models] == sorted(m.seed for m in models)
    assert len({m.id for m in models}) == len(models) == len(spec.attacks) * spec.models_per_attack + spec.clean_models
    badnets = [m.attack_params["target"] for m in models if m.group == "badnets"]
    assert badnets == spec.attacks[0].targets  # targets still cycle within a group


def test_method_models_limits_a_method_to_the_first_models_of_each_group() -> None:
    """`models: N` on a detector or mitigation plans it on the first N models of every group only."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw["detectors"].append({"name": "nc", "models": 1})
    raw["mitigations"][0]["models"] = 1
    spec = parse_spec(raw, "smoke")
    tasks = plan_tasks(spec)
    by_kind = {k: [t for t in tasks if t.kind == k] for k in ("train", "detect", "mitigate")}
    assert len(by_kind["train"]) == 4
    nc = [t.job.model for t in by_kind["detect"] if t.job.method == "nc"]
    assert sorted(m.group for m in nc) == ["badnets", "clean"] and all(m.seed == spec.seed for m in nc)
    assert len([t for t in by_kind["detect"] if t.job.method == "ban"]) == 4
    assert [t.job.model.seed for t in by_kind["mitigate"]] == [spec.seed]
    raw["mitigations"][0]["models"] = 0
    with pytest.raises(BanError, match="mitigations.0.models"):
        parse_spec(raw, "smoke")


def test_method_groups_limit_a_method_to_the_named_groups() -> None:
    """`groups: [...]` plans a method on those groups' models only; an unset `groups` keeps the fingerprint."""
    raw = yaml.safe_load(SMOKE.read_text())
    before = parse_spec(raw, "smoke").fingerprint()
    raw["detectors"].append({"name": "nc", "groups": ["clean"]})
    raw["detectors"].append({"name": "tabor", "groups": ["badnets", "clean"], "models": 1})
    spec = parse_spec(raw, "smoke")
    detect = [t.job for t in plan_tasks(spec) if t.kind == "detect"]
    assert sorted(j.model.group for j in detect if j.method == "nc") == ["clean", "clean"]
    assert sorted((j.model.group, j.model.seed) for j in detect if j.method == "tabor") == [
        ("badnets", spec.seed),
        ("clean", spec.seed),
    ]
    assert len([j for j in detect if j.method == "ban"]) == 4  # the others are unchanged
    raw["detectors"] = raw["detectors"][:-2]
    assert parse_spec(raw, "smoke").fingerprint() == before
    raw["detectors"].append({"name": "nc", "groups": ["badnets"]})
    assert parse_spec(raw, "smoke").fingerprint() != before
    raw["detectors"][-1]["groups"] = ["blend"]
    with pytest.raises(BanError, match="names group 'blend' in 'groups'; choose from badnets, clean"):
        parse_spec(raw, "smoke")


def test_methods_option_runs_only_the_named_methods_and_their_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ban bench run --methods nc` plans NC's tasks and the trainings they need, nothing else."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw["detectors"].append({"name": "nc", "groups": ["clean"]})
    tasks = plan_tasks(parse_spec(raw, "smoke"))
    kept = only_methods(tasks, ["nc"])
    nc = [t for t in kept if t.kind == "detect"]
    assert [t.job.method for t in nc] == ["nc", "nc"] and {t.job.model.group for t in nc} == {"clean"}
    assert sorted(t.id for t in kept if t.kind == "train") == sorted(t.depends_on for t in nc)
    assert len([t for t in tasks if t.kind == "train"]) == 4  # the badnets models are left out for NC alone
    assert [t.id for t in only_methods(tasks, ["nc", "ban"])] == [t.id for t in tasks]  # "ban" labels both kinds
    with pytest.raises(BanError, match="--methods names 'tabor', which this spec does not run; choose from ban, nc"):
        only_methods(tasks, ["tabor"])
    out = tmp_path / "o"
    assert main(["bench", "run", str(SMOKE), "--out", str(out), "--methods", "nosuch"]) == 2
    assert "--methods names 'nosuch'" in capsys.readouterr().err and not out.exists()


def test_groups_option_runs_only_the_named_groups_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ban bench run --methods ban --groups clean`: BAN on the clean models alone, and only their trainings."""
    tasks = plan_tasks(parse_spec(yaml.safe_load(SMOKE.read_text()), "smoke"))
    kept = only_groups(only_methods(tasks, ["ban"]), ["clean"])
    ban = [t for t in kept if t.kind == "detect"]
    assert ban and {t.job.model.group for t in ban} == {"clean"} and {t.job.method for t in ban} == {"ban"}
    assert sorted(t.id for t in kept if t.kind == "train") == sorted(t.depends_on for t in kept if t.depends_on)
    assert {t.job.group for t in kept if t.kind == "train"} == {"clean"}
    assert len(only_groups(tasks, ["badnets", "clean"])) == len(tasks)
    with pytest.raises(BanError, match="--groups names 'blend', which this spec does not train; choose from badnets"):
        only_groups(tasks, ["blend"])
    out = tmp_path / "o"
    assert main(["bench", "run", str(SMOKE), "--out", str(out), "--groups", "nosuch"]) == 2
    assert "--groups names 'nosuch'" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda r: r["train"].update(epoch=3), "unknown key 'train.epoch'"),
        (lambda r: r.update(detectorz=[]), "unknown key 'detectorz'"),
        (lambda r: r["attacks"][0].update(name="nosuchattack"), "attacks.0.name"),
        (lambda r: r.update(detectors=[{"name": "nosuchdetector"}]), "detectors.0.name"),
        (lambda r: r.update(mitigations=["nosuchmethod"]), "mitigations.0.name"),
        (lambda r: r["architectures"][0].update(arch="alexnet"), "architectures.0.arch"),
        (lambda r: r["train"].update(epochs=0), "train.epochs"),
        (lambda r: r.pop("architectures"), "architectures"),
        (lambda r: r.update(detectors=[{"name": "ban", "settings": {"epz": 0.1}}]), "detectors.0"),
        (lambda r: r.update(attacks=[{"name": "badnets", "params": {"size": 3}}]), "attacks.0"),
        (lambda r: r.update(attacks=[{"name": "wanet", "params": {"preset": "gpu"}}]), "no preset 'gpu'"),
        (lambda r: r.update(min_asr=1.0), "key 'min_asr' must lie in (0, 1), got 1"),
        (lambda r: r.update(min_asr=0), "key 'min_asr' must lie in (0, 1), got 0"),
        (lambda r: r.update(min_asr="high"), "key 'min_asr'"),
    ],
)
def test_bad_spec_is_one_clear_line(edit: Any, needle: str) -> None:
    raw = plain_raw()
    edit(raw)
    with pytest.raises(BanError) as info:
        parse_spec(raw, "smoke.yaml")
    msg = str(info.value)
    assert needle in msg and "\n" not in msg and msg.startswith("smoke.yaml")


def test_min_asr_shapes_the_report_only_and_presets_resolve_in_the_plan() -> None:
    """min_asr is outside the fingerprint (existing folders stay valid); a preset's values enter the model key."""
    raw = plain_raw()
    assert parse_spec({**raw, "min_asr": 0.5}).fingerprint() == parse_spec(raw).fingerprint()
    assert parse_spec(raw).min_asr == 0.8
    raw["attacks"] = [{"name": "wanet", "params": {"preset": "cpu", "poison_rate": 0.2}, "targets": [1]}]
    job = model_jobs(parse_spec(raw))[0]
    assert job.attack_params == {"preset": "cpu", "s": 1.0, "cross_ratio": 1.0, "poison_rate": 0.2, "target": 1}
    raw["attacks"] = [{"name": "wanet", "params": {"s": 1.0, "cross_ratio": 1.0, "poison_rate": 0.2}, "targets": [1]}]
    assert model_jobs(parse_spec(raw))[0].key != job.key  # the preset is named in the key as well


def test_run_display_shows_warnings_even_when_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    from ban.bench.display import RunDisplay
    from ban.bench.work import Outcome

    task = plan_tasks(load_spec_unchecked(SMOKE))[0]
    display = RunDisplay([task], set(), quiet=True)
    display.finished(task, Outcome(task.id, True, 1.0, summary="BA 0.8 ASR 0.3", warning="m1: wanet reached ASR 0.300"))
    display.finished(task, Outcome(task.id, True, 1.0, summary="BA 0.8 ASR 0.9"))
    display.close()
    assert capsys.readouterr().err.strip() == "warning: m1: wanet reached ASR 0.300"


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = plain_raw()
    raw["train"]["epochz"] = 1
    assert main(["bench", "run", str(write_spec(raw, tmp_path / "a.yaml")), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key 'train.epochz'" in capsys.readouterr().err

    raw = {**plain_raw(), "min_asr": 1.5}
    assert main(["bench", "run", str(write_spec(raw, tmp_path / "m.yaml")), "--out", str(tmp_path / "o")]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "key 'min_asr' must lie in (0, 1), got 1.5: it is the ASR a "
            "poisoned model needs to count as backdoored (default 0.8)"
        )
    )

    for threads in ("0", "-1"):  # 0 ran as the default, -1 failed in every worker
        assert main(["bench", "run", str(SMOKE), "--out", str(tmp_path / "o"), "--threads", threads]) == 2
        assert capsys.readouterr().err.startswith("error: Invalid value for '--threads'")

    raw = plain_raw()  # a class the dataset lacks: refused before the first model trains, not at its turn
    raw["attacks"] = [{"name": "ssdt", "params": {"victim": 10}, "targets": [1]}]
    assert main(["bench", "run", str(write_spec(raw, tmp_path / "c.yaml")), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: key 'attacks.0': victim class 10 is outside the class range 0..9 of fashion-mnist; fix the value\n"
    )
    assert not (tmp_path / "o").exists()

    raw = {**plain_raw(), "detectors": [{"name": "ban"}], "clean_samples": {"detect": 50, "mitigate": 50}}
    assert main(["bench", "run", str(write_spec(raw, tmp_path / "d.yaml")), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith(
        "error: key 'detectors.0': ban needs at least 100 clean images on 10 classes, and the spec gives it 50; "
    )
    assert not (tmp_path / "o").exists()

    raw = plain_raw()
    raw["data"]["data_dir"] = str(tmp_path / "no-such-folder")
    assert main(["bench", "run", str(write_spec(raw, tmp_path / "b.yaml")), "--out", str(tmp_path / "o")]) == 2
    assert "data.data_dir" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

    # a folder that holds another spec's results is refused (exit 2); --force would take it over
    claim(tmp_path / "o", BenchSpec.model_validate(tiny_raw()))
    with pytest.raises(BanError, match="different spec"):
        claim(tmp_path / "o", load_spec_unchecked(SMOKE))
    claim(tmp_path / "o", load_spec_unchecked(SMOKE), force=True)
    assert json.loads((tmp_path / "o" / "bench.json").read_text())["name"] == "smoke"
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "notes.txt").write_text("mine")
    with pytest.raises(BanError, match="holds no ban benchmark"):
        claim(tmp_path / "stranger", load_spec_unchecked(SMOKE))
    assert main(["bench", "report", str(tmp_path / "nothing-here")]) == 2
    assert main(["bench", "report", str(tmp_path / "o"), "--bootstrap", "-5"]) == 2  # it ran as 0, "-5 resamples"
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: Invalid value for '--bootstrap'")


# ---------------------------------------------------------------------------- smoke, end to end


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    if "ban" not in DETECTORS or "ban" not in MITIGATIONS:
        pytest.skip("the 'ban' detector and mitigation are not registered yet")
    out = tmp_path_factory.mktemp("smoke") / "run"
    start = time.perf_counter()
    assert main(["bench", "run", str(SMOKE), "--out", str(out), "--quiet"]) == 0
    return out, time.perf_counter() - start


@needs_ban
def test_a_broken_result_file_is_one_line(
    smoke_run: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A result file edited by hand or cut short (a full disk) stops the report with its name and the fix, not
    a JSONDecodeError or KeyError from inside the tables."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(smoke_run[0], out)
    victim = result_files(out, "detect")[0]
    for text, problem in (('{"broken', "is not valid JSON"), ('{"method": "ban", "model": {}}', "has no 'verdict'")):
        victim.write_text(text)
        assert main(["bench", "report", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: bench result {victim} {problem}") and len(err.strip().splitlines()) == 1
        assert f"delete it and run `ban bench run SPEC --out {out}` again" in err


def test_smoke_report_matches_result_files(smoke_run: tuple[Path, float]) -> None:
    out, _ = smoke_run
    spec = load_spec(SMOKE)
    n_models = len(spec.architectures) * (len(spec.attacks) * spec.models_per_attack + spec.clean_models)
    detections = [json.loads(p.read_text()) for p in result_files(out, "detect")]
    mitigations = [json.loads(p.read_text()) for p in result_files(out, "mitigate")]
    assert len(list((out / "models").glob("*.safetensors"))) == n_models
    assert len(detections) == n_models * len(spec.detectors)
    assert len(mitigations) == len(spec.attacks) * spec.models_per_attack * len(spec.mitigations)
    report = out / "report"
    for name in ("report.md", "report.tex", "roc.png", "heatmap.png", "tables/detection.csv", "tables/roc.csv"):
        assert (report / name).stat().st_size > 0, name

    # detection table: Bd. and Acc. recomputed from the verdicts
    def right(r: dict[str, Any]) -> bool:
        v, m = r["verdict"], r["model"]
        return (v["backdoored"] and v["target"] == m["target"]) if m["backdoored"] else not v["backdoored"]

    table = {row["Attack"]: row for row in read_csv(report / "tables" / "detection.csv")}
    bd = [r for r in detections if r["model"]["group"] == "badnets"]
    clean = [r for r in detections if r["model"]["group"] == "clean"]
    assert table["badnets"]["ban Bd."] == f"{sum(map(right, bd))}/{len(bd)}"
    assert float(table["badnets"]["ban Acc."]) == pytest.approx(
        (sum(map(right, bd)) + sum(map(right, clean))) / (len(bd) + len(clean)), abs=0.006
    )
    assert table["clean"]["ban Bd."] == f"{sum(r['verdict']['backdoored'] for r in clean)}/{len(clean)}"

    # AUROC, detection counts and times per detector
    roc = read_csv(report / "tables" / "roc.csv")[0]
    y = [int(r["model"]["backdoored"]) for r in detections]
    s = [r["verdict"]["score"] for r in detections]
    assert float(roc["AUROC"]) == pytest.approx(roc_auc_score(y, s), abs=1e-3)
    assert float(roc["AUROC low"]) <= float(roc["AUROC"]) <= float(roc["AUROC high"])
    assert roc["Detected"] == f"{sum(map(right, bd))}/{len(bd)}"
    times = read_csv(report / "tables" / "time.csv")[0]
    secs = [r["verdict"]["seconds"] for r in detections]
    assert float(times["Mean (s)"]) == pytest.approx(np.mean(secs), abs=0.06)
    assert float(times["Median (s)"]) == pytest.approx(np.median(secs), abs=0.06)

    # the zoo's BA/ASR and the mitigation table
    zoo = {row["Attack"]: row for row in read_csv(report / "tables" / "zoo.csv")}
    bas = [r["model"]["ba"] for r in bd]
    assert zoo["badnets"]["BA"].startswith(f"{np.mean(bas):.3f}")
    mit = read_csv(report / "tables" / "mitigation.csv")[0]
    after = [r["report"]["after"] for r in mitigations]
    assert mit["ban BA / ASR"] == f"{np.mean([a['ba'] for a in after]):.3f} / {np.mean([a['asr'] for a in after]):.3f}"
    assert mit["N"] == str(len(mitigations))
    before = [r["model"] for r in mitigations]  # before = the same models, from the zoo's own evaluation
    ba, asr = np.mean([m["ba"] for m in before]), np.mean([m["asr"] for m in before])
    assert mit["Before BA / ASR"] == f"{ba:.3f} / {asr:.3f}"
    # the verdicts never saw the attack, but the result file records the ground truth
    assert {r["model"]["target"] for r in bd} == {3, 7}


@needs_ban
def test_report_warns_when_a_column_mixes_settings(smoke_run: tuple[Path, float], tmp_path: Path) -> None:
    """A result left by another ban version (another resolved default) is named in the report, not mixed in silently."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(smoke_run[0], out)
    assert main(["bench", "report", str(out), "--quiet"]) == 0
    assert "**Warning**" not in (out / "report" / "report.md").read_text()
    stale = sorted(out.glob("results/detect/*/ban-*.json"))[0]
    result = json.loads(stale.read_text())
    result["verdict"]["settings"]["rule"] = "per-class"  # what an older default would have recorded
    stale.write_text(json.dumps(result))
    assert main(["bench", "report", str(out), "--quiet"]) == 0
    warning = [line for line in (out / "report" / "report.md").read_text().splitlines() if "**Warning**" in line]
    assert len(warning) == 1 and "`ban` detection" in warning[0]
    assert 'rule = "per-class" (1), "pooled" (3)' in warning[0]  # and not mixed with the `ban` mitigation column


@needs_ban
def test_report_marks_runs_cut_by_their_allowance(smoke_run: tuple[Path, float], tmp_path: Path) -> None:
    """The time table gives a capped method's allowance and how many of its runs reached it; a method without
    any result yet is named above the tables, not tabled as empty columns."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(smoke_run[0], out)
    raw = yaml.safe_load((out / "spec.yaml").read_text())
    raw["detectors"] += [{"name": "nc", "label": "nc-capped", "settings": {"time_limit": 5}}, {"name": "tabor"}]
    (out / "spec.yaml").write_text(yaml.safe_dump(raw))
    tasks = [t for t in plan_tasks(parse_spec(raw, "smoke")) if t.kind == "detect"]
    for i, task in enumerate(t for t in tasks if t.job.label == "nc-capped"):
        ban_result = next(t for t in tasks if t.job.label == "ban" and t.job.model.id == task.job.model.id)
        result = json.loads(ban_result.path(out).read_text())  # a real verdict, relabelled as a capped NC run
        result.update(method="nc-capped", detector="nc")
        result["verdict"]["settings"]["time_limit"] = 5.0
        result["verdict"]["details"]["cut_by_time_limit"] = i < 3  # the first three reached the allowance
        task.path(out).write_text(json.dumps(result))
    assert main(["bench", "report", str(out), "--quiet"]) == 0
    times = {row["Detector"]: row for row in read_csv(out / "report" / "tables" / "time.csv")}
    assert (times["nc-capped"]["Allowance (s)"], times["nc-capped"]["Cut"]) == ("5", "3/4")
    assert (times["ban"]["Allowance (s)"], times["ban"]["Cut"]) == ("-", "-")
    assert "tabor" not in times and not any("tabor" in h for h in read_csv(out / "report" / "tables" / "roc.csv")[0])
    assert "No results yet (left out of the tables): tabor." in (out / "report" / "report.md").read_text()


def test_two_columns_of_one_detector_are_not_mixed_settings() -> None:
    """A spec may run one detector twice with other settings (two labels): that is no stale result."""
    from ban.bench.consistency import mixed_settings_lines

    def result(label: str, rule: str) -> dict:
        return {"kind": "detect", "method": label, "detector": "ban", "verdict": {"settings": {"rule": rule}}}

    columns = [result("ban-pooled", "pooled"), result("ban-per-class", "per-class")] * 2
    assert mixed_settings_lines(columns) == []
    lines = mixed_settings_lines([*columns, result("ban-pooled", "per-class")])
    assert len(lines) == 1 and "`ban-pooled`" in lines[0] and 'rule = "per-class" (1), "pooled" (2)' in lines[0]


@needs_ban
def test_report_counts_only_implanted_backdoors(smoke_run: tuple[Path, float], tmp_path: Path) -> None:
    """A poisoned model under min_asr is listed apart and counted neither as backdoored nor as clean."""
    import shutil

    from ban.checkpoint import load_model, save_model

    out = tmp_path / "run"
    shutil.copytree(smoke_run[0], out)
    detections = [json.loads(p.read_text()) for p in result_files(out, "detect")]
    bd = sorted((r for r in detections if r["model"]["group"] == "badnets"), key=lambda r: r["model"]["id"])
    clean = [r for r in detections if r["model"]["group"] == "clean"]
    assert len(bd) == 2 and len(clean) == 2
    weak, strong = bd
    path = out / "models" / f"{weak['model']['id']}.safetensors"
    ckpt = load_model(path)
    save_model(path, ckpt.model, {**ckpt.meta, "asr": 0.5}, ckpt.attack)  # as if its backdoor had not taken

    assert main(["bench", "report", str(out), "--quiet"]) == 0
    tables = out / "report" / "tables"
    listed = read_csv(tables / "not-implanted.csv")
    assert [(r["Model"], r["ASR"], r["Target"]) for r in listed] == [
        (weak["model"]["id"], "0.500", str(weak["model"]["target"]))
    ]
    flagged = weak["verdict"]["backdoored"]
    assert listed[0]["ban"] == (f"flagged, target {weak['verdict']['target']}" if flagged else "not flagged")

    def right(r: dict[str, Any]) -> bool:
        v, m = r["verdict"], r["model"]
        return (v["backdoored"] and v["target"] == m["target"]) if m["backdoored"] else not v["backdoored"]

    row = {r["Attack"]: r for r in read_csv(tables / "detection.csv")}["badnets"]
    assert row["ban Bd."] == f"{int(right(strong))}/1"
    assert float(row["ban Acc."]) == pytest.approx((right(strong) + sum(map(right, clean))) / 3, abs=0.006)
    roc = read_csv(tables / "roc.csv")[0]
    assert (roc["Backdoored"], roc["Clean"], roc["Detected"]) == ("1", "2", f"{int(right(strong))}/1")
    assert {r["Attack"]: r["Implanted"] for r in read_csv(tables / "zoo.csv")} == {"badnets": "1/2", "clean": "-"}
    assert read_csv(tables / "mitigation.csv")[0]["N"] == "1"
    md = (out / "report" / "report.md").read_text()
    sentence = "Backdoored = poisoned with ASR ≥ 0.8 (the spec's min_asr); 1 weaker poisoned model is counted neither"
    for title in ("### Detection:", "### Score-based detection"):  # under every detection table
        section = md.split(title, 1)[1].split("###", 1)[0]
        assert sentence in section, title

    # a lower min_asr (the folder's spec copy, as a rerun with an edited spec leaves it) counts it again
    spec_copy = out / "spec.yaml"
    spec_copy.write_text(spec_copy.read_text() + "min_asr: 0.4\n")
    assert main(["bench", "report", str(out), "--quiet"]) == 0
    assert not (tables / "not-implanted.csv").exists()  # no stale table from the earlier report
    row = {r["Attack"]: r for r in read_csv(tables / "detection.csv")}["badnets"]
    assert row["ban Bd."] == f"{sum(map(right, bd))}/2"
    assert (
        "ASR ≥ 0.4 (the spec's min_asr); no poisoned model fell below it." in (out / "report" / "report.md").read_text()
    )


def test_smoke_rerun_trains_nothing(smoke_run: tuple[Path, float], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = smoke_run
    before = model_mtimes(out)
    results = {p: p.stat().st_mtime_ns for p in result_files(out, "detect") + result_files(out, "mitigate")}
    assert main(["bench", "run", str(SMOKE), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert "0 run now" in capsys.readouterr().out
    assert model_mtimes(out) == before
    assert {p: p.stat().st_mtime_ns for p in results} == results


# ---------------------------------------------------------------------------- killed and resumed


@needs_ban_detector
def test_killed_run_resumes_without_retraining(tmp_path: Path) -> None:
    spec = write_spec(tiny_raw(), tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ban.cli", "bench", "run", str(spec), "--out", str(out), "--quiet", "--jobs", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while not result_files(out, "detect") and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read() if proc.stderr else ''}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = result_files(out, "detect")
    assert len(first) == 1
    kept = {p: (p.stat().st_mtime_ns, p.read_text()) for p in first}
    trained = model_mtimes(out)
    assert len(trained) >= 1

    # the rerun (two worker processes this time) finishes the rest and keeps what was done
    done = cli("bench", "run", str(spec), "--out", str(out), "--quiet", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert f"{len(trained) + 1} already done" in done.stdout
    now = model_mtimes(out)
    assert len(now) == 2
    assert all(now[name] == mtime for name, mtime in trained.items())
    assert {p: (p.stat().st_mtime_ns, p.read_text()) for p in first} == kept
    assert len(result_files(out, "detect")) == 2
    rows = {row["Attack"]: row for row in read_csv(out / "report" / "tables" / "detection.csv")}
    assert rows["badnets"]["ban Bd."].endswith("/1") and rows["clean"]["ban Bd."].endswith("/1")


def _stat(proc: Path) -> list[str]:
    """/proc/PID/stat's fields after the command name (state, parent pid, ...); [] for a process gone."""
    try:
        return (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _pool_workers(parent: int) -> set[int]:
    """The process-pool workers (`multiprocessing.spawn`) whose parent is `parent`, from /proc."""
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        fields = _stat(proc)
        if fields and int(fields[1]) == parent and b"spawn_main" in (proc / "cmdline").read_bytes():
            found.add(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    fields = _stat(Path(f"/proc/{pid}"))
    return bool(fields) and fields[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_run_takes_its_workers_with_it(tmp_path: Path, sig: int) -> None:
    """Stopping `ban bench run --jobs 2` mid-training stops its pool workers too (they used to train on for
    half an hour): SIGTERM ends the driver like Ctrl-C (exit 130) and it terminates them; after a SIGKILL the
    workers see their parent gone and leave within seconds. Either way the unfinished tasks rerun next time."""
    raw = tiny_raw()
    raw["train"]["epochs"] = 100  # long enough to be mid-task whatever the machine; stopped after seconds
    spec = write_spec(raw, tmp_path / "tiny.yaml")
    cmd = [sys.executable, "-m", "ban.cli", "bench", "run", str(spec), "--out", str(tmp_path / "run"), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*cmd, "--jobs", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    workers: set[int] = set()
    while len(workers) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
        workers = _pool_workers(proc.pid)
    assert len(workers) == 2 and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    time.sleep(2)  # the workers have their tasks now
    assert not list((tmp_path / "run" / "models").glob("*.safetensors")), "too fast to be stopped mid-task"
    os.kill(proc.pid, sig)
    code = proc.wait(timeout=60)
    deadline = time.time() + 30
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:  # never leave them behind, even when this test fails
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived the run"
    if sig == signal.SIGTERM:
        assert code == 130, code
        assert "the same command continues" in (proc.stderr.read() if proc.stderr else "")


# ---------------------------------------------------------------------------- Ray


@needs_ban_detector
def test_ray_executor(tmp_path: Path) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("ray is not installed (pip install 'ban[ray]')")
    spec = write_spec(tiny_raw(), tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    done = cli("bench", "run", str(spec), "--out", str(out), "--quiet", "--executor", "ray", "--jobs", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(model_mtimes(out)) == 2 and len(result_files(out, "detect")) == 2
    results = [json.loads(p.read_text()) for p in result_files(out, "detect")]
    assert {r["model"]["group"] for r in results} == {"badnets", "clean"}
    rows = {row["Attack"]: row for row in read_csv(out / "report" / "tables" / "detection.csv")}
    assert set(rows) == {"badnets", "clean"}


def test_ray_runs_as_many_tasks_at_once_as_jobs_says(tmp_path: Path) -> None:
    """`--executor ray --jobs 1` runs one task at a time (it used to mean "the cluster's CPUs", so a speed-up of
    2 workers over 1 was measured as 2 over 2); without --jobs Ray fills the CPUs it was given."""
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'ban[ray]')")
    from ban.bench.executors import create_executor
    from ban.bench.work import Context

    ctx = Context(str(tmp_path), None, "cpu", None)
    for jobs, slots in ((1, 1), (2, 2)):
        ex = create_executor("ray", ctx, jobs)
        try:
            assert ex.slots == slots
            assert ray.cluster_resources().get("CPU") == slots
        finally:
            ex.close()
    assert create_executor("local", ctx).slots == 1
    with pytest.raises(BanError, match="at least 1"):
        create_executor("local", ctx, 0)


# ---------------------------------------------------------------------------- metric conventions (pure)


def _result(group: str, target: int | None, flagged: bool, named: int | None, mode: str = "all2one") -> dict[str, Any]:
    model = {"group": group, "backdoored": target is not None or mode == "all2all", "target": target, "mode": mode}
    return {"model": model, "verdict": {"backdoored": flagged, "target": named, "score": float(flagged)}}


def test_detection_counts_need_the_right_target() -> None:
    from ban.bench.metrics import bd_and_acc, is_correct, tpr_at_fpr

    assert is_correct(_result("badnets", 3, True, 3))
    assert not is_correct(_result("badnets", 3, True, 5))  # flagged, wrong target: not detected
    assert not is_correct(_result("badnets", 3, False, None))
    assert is_correct(_result("wanet", None, True, 6, mode="all2all"))  # no single target to name
    assert is_correct(_result("clean", None, False, None)) and not is_correct(_result("clean", None, True, 2))
    results = [
        _result("badnets", 3, True, 3),
        _result("badnets", 3, True, 1),
        _result("clean", None, True, 4),
        _result("clean", None, False, None),
        _result("clean", None, False, None),
    ]
    bd, acc = bd_and_acc(results, "badnets", "clean")
    assert (str(bd), acc.k, acc.n) == ("1/2", 3, 5)
    bd, acc = bd_and_acc(results, "clean", "clean")
    assert (str(bd), str(acc)) == ("1/3", "2/3")
    y = np.array([0] * 20 + [1] * 10)
    s = np.concatenate([np.zeros(19), [9.0], np.ones(10)])  # one clean model outranks every backdoored one
    assert tpr_at_fpr(y, s) == 1.0  # 1/20 = 5% FPR is within budget
    s[0] = 9.0  # two: 10% FPR
    assert tpr_at_fpr(y, s) == 0.0


def test_auroc_and_tpr_at_fpr_agree_with_sklearn_on_ties_and_extremes() -> None:
    """The bootstrap's two statistics are counted directly (sklearn's input checks were most of a report's time:
    1,000 resamples a detector); sklearn's functions are the oracle, on scores with ties and ±1e300. The ROC
    curve keeps every corner: roc_curve's default drops corners that lie on a line between two others, and
    with them operating points within the budget (a TPR of 0.1 at FPR 0.21 reported as 0 at budget 0.3)."""
    from sklearn.metrics import roc_curve

    from ban.bench.metrics import FPR_BUDGET, auroc, tpr_at_fpr

    rng = np.random.default_rng(0)
    for trial in range(300):
        n_pos, n_neg = int(rng.integers(1, 30)), int(rng.integers(1, 60))
        y = np.array([1] * n_pos + [0] * n_neg)
        s = rng.integers(0, 6 if trial % 2 else 1000, n_pos + n_neg).astype(float)  # many ties, or few
        if trial % 7 == 0:
            s[rng.integers(0, len(s), 3)] = rng.choice([-1e300, 1e300], 3)
        assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        for budget in (0.0, FPR_BUDGET, 0.3):
            fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
            ok = fpr <= budget + 1e-12
            assert tpr_at_fpr(y, s, budget) == (float(tpr[ok].max()) if ok.any() else 0.0)
