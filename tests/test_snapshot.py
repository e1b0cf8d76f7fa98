"""A long trigger search stopped part-way continues from its snapshot exactly as if it had not stopped,
and a snapshot that is not its own (other settings, a corrupt or hostile file) is never trusted."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch

from ban.blocks.trigger_search import SearchConfig, search_triggers
from ban.checkpoint import save_model
from ban.clean_data import CleanData
from ban.cli import main
from ban.detectors import Verdict, base, create_detector
from ban.errors import BanError
from ban.utils import make_generator


class Killed(Exception):
    """Stands for the process being stopped in the middle of an epoch."""


def kill_after(calls: int):  # type: ignore[no-untyped-def]
    """An `out_of_time` that stops the search on its `calls`-th check (checks come before every batch)."""
    seen = [0]

    def check() -> bool:
        seen[0] += 1
        if seen[0] >= calls:
            raise Killed
        return False

    return check


@pytest.fixture(scope="module")
def setting(zoo):  # type: ignore[no-untyped-def]
    model = copy.deepcopy(zoo.get("badnets").model).eval().requires_grad_(False)  # the shared model untouched
    data = CleanData.from_images(zoo.defender).sample(32, seed=0)
    return model, data.x, data.y


CFG = SearchConfig(epochs=6, batch_size=16)
TARGETS = [1, 3, 6, 8]


def search(setting, cfg: SearchConfig = CFG, **kw):  # type: ignore[no-untyped-def]
    model, x, y = setting
    return search_triggers(model, x, y, TARGETS, cfg, make_generator(0), **kw)


def test_a_stopped_search_continues_exactly(setting, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    whole = search(setting)
    path = tmp_path / "nc.pt"
    with pytest.raises(Killed):  # 2 batches an epoch: the 7th check is in epoch 4, after 3 whole epochs
        search(setting, snapshot=path, snapshot_every=0, out_of_time=kill_after(7))
    assert path.is_file()
    resumed = search(setting, snapshot=path, snapshot_every=0)
    assert resumed.resumed_from_epoch == 3 and resumed.seconds_before > 0
    assert torch.equal(resumed.masks, whole.masks) and torch.equal(resumed.patterns, whole.patterns)
    assert resumed.norms == whole.norms and resumed.epochs == whole.epochs == [6] * 4
    assert resumed.success == whole.success
    assert not path.exists()  # a finished search leaves no snapshot behind
    assert whole.resumed_from_epoch == 0 and whole.seconds_before == 0


def test_a_snapshot_of_other_settings_is_not_resumed(setting, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "nc.pt"
    with pytest.raises(Killed):
        search(setting, snapshot=path, snapshot_every=0, out_of_time=kill_after(7))
    other = SearchConfig(epochs=6, batch_size=16, lr=0.05)
    fresh = search(setting, other, snapshot=path, snapshot_every=0)
    assert fresh.resumed_from_epoch == 0 and fresh.epochs == [6] * 4 and not path.exists()


class Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("unpickled!",))


@pytest.mark.parametrize("kind", ["garbage", "pickle"])
def test_an_unreadable_or_hostile_snapshot_is_one_line(setting, tmp_path: Path, kind: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "nc.pt"
    if kind == "garbage":
        path.write_bytes(b"not a snapshot")
    else:
        torch.save({"epoch": 3, "payload": Payload()}, path, pickle_module=pickle)
    with pytest.raises(BanError) as err:
        search(setting, snapshot=path)
    assert str(path) in str(err.value) and "delete it" in str(err.value) and "\n" not in str(err.value)
    # the reason comes whole from the reading layer, not cut out of its message
    reason = "not a PyTorch file" if kind == "garbage" else "it imports print, which could run code"
    assert f"({reason})" in str(err.value)


def test_only_uncapped_runs_keep_snapshots(tmp_path: Path) -> None:
    uncapped, capped = create_detector("nc"), create_detector("nc", time_limit=60)
    for det in (uncapped, capped):
        det.snapshot_dir = tmp_path
    assert uncapped.snapshot("trigger_search") == tmp_path / "nc_trigger_search.pt"
    assert capped.snapshot("trigger_search") is None  # an allowance is one sitting's wall clock
    assert create_detector("nc").snapshot("trigger_search") is None  # no folder given


def test_nc_continues_its_stopped_search_and_counts_both_sittings(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = zoo.get("badnets").model
    clean = CleanData.from_images(zoo.defender)
    settings = {"n_samples": 32, "batch_size": 16, "epochs": 4}
    whole = create_detector("nc", seed=0, device="cpu", **settings).detect(model, clean)
    # the search NC runs, stopped in its third epoch: the same images, settings, classes and seed
    det = create_detector("nc", seed=0, device="cpu", **settings)
    det.snapshot_dir = tmp_path
    data = clean.sample(32, seed=0)
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    with pytest.raises(Killed):
        search_triggers(
            frozen, data.x, data.y, list(range(10)), det.config.search_config(), make_generator(0),
            out_of_time=kill_after(5), snapshot=det.snapshot("trigger_search"), snapshot_every=0,
        )  # fmt: skip
    resumed = det.detect(model, clean)
    assert resumed.details["resumed"]["from_epoch"] == 2
    assert resumed.seconds > resumed.details["resumed"]["seconds_before"] > 0
    assert resumed.details["norms"] == whole.details["norms"] and resumed.target == whole.target
    assert "resumed" not in whole.details and not list(tmp_path.iterdir())


def test_cli_snapshots_folder_is_where_a_scan_keeps_its_search(zoo, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    c = zoo.get("badnets")
    model = save_model(tmp_path / "bd.safetensors", c.model, c.meta, c.attack)
    folder = tmp_path / "snaps"
    planted = folder / "bd" / "nc_trigger_search.pt"  # where `ban detect` looks for this model's search
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"not a snapshot")
    args = ["detect", str(model), "--detector", "nc", "--clean-samples", "200", "--snapshots", str(folder), "-q"]
    args += ["--param", "n_samples=32", "--param", "batch_size=16", "--param", "epochs=2"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(planted) in err[0] and "delete it" in err[0]
    planted.unlink()
    assert main(args) == 0
    assert not planted.exists()  # a finished scan leaves no snapshot
    assert main(["detect", str(model), "--detector", "nc", "--snapshots", str(model), "-q"]) == 2
    assert "is not a folder" in capsys.readouterr().err  # a file is not a folder, refused before any work


class Dying:
    """A deadline whose `calls`-th check stops the run (the detectors check theirs before every epoch)."""

    def __init__(self, calls: int) -> None:
        self.expired = kill_after(calls)
        self.cut = False


FEATURE_SPACE = {
    "featurere": {"n_samples": 10, "warmup_epochs": 3, "epochs": 3, "filters": 4, "blocks": 2},
    "unicorn": {"n_samples": 10, "pretrain_epochs": 2, "epochs": 3, "inner_steps": 1, "filters": 4, "blocks": 2},
}


@pytest.fixture(scope="module")
def uninterrupted(zoo):  # type: ignore[no-untyped-def]
    """The verdict of a detection that never stopped, per detector (run once)."""
    runs: dict[str, Verdict] = {}

    def run(name: str) -> Verdict:
        if name not in runs:
            det = create_detector(name, seed=0, device="cpu", **FEATURE_SPACE[name])
            runs[name] = det.detect(zoo.get("badnets").model, CleanData.from_images(zoo.defender))
        return runs[name]

    return run


@pytest.mark.parametrize(
    ("name", "calls", "stage", "epoch"),
    [
        ("featurere", 5, "inversion", 4),  # after the 3 warm-up epochs and 1 of training
        ("unicorn", 2, "identity_pretraining", 1),  # in the pre-training of P and Q
        ("unicorn", 5, "inversion", 2),  # after the whole pre-training and 2 epochs of inversion
    ],
)
def test_a_stopped_feature_space_detection_continues_exactly(  # type: ignore[no-untyped-def]
    zoo, uninterrupted, tmp_path: Path, monkeypatch, name: str, calls: int, stage: str, epoch: int
) -> None:
    model, clean = zoo.get("badnets").model, CleanData.from_images(zoo.defender)
    det = create_detector(name, seed=0, device="cpu", **FEATURE_SPACE[name])
    det.snapshot_dir, det.snapshot_every = tmp_path, 0
    with monkeypatch.context() as m:
        m.setattr(base, "Deadline", lambda seconds: Dying(calls))
        with pytest.raises(Killed):
            det.detect(model, clean)
    assert list(tmp_path.iterdir())
    resumed, whole = det.detect(model, clean), uninterrupted(name)
    record = resumed.details.pop("resumed")
    assert (record["stage"], record["from_epoch"]) == (stage, epoch)
    assert resumed.seconds > record["seconds_before"] > 0  # both sittings count
    assert resumed.details["mixed_value"] == whole.details["mixed_value"] and resumed.details == whole.details
    for key, images in whole.artifacts["triggers"].items():
        assert torch.equal(resumed.artifacts["triggers"][key], images), key
    assert "resumed" not in whole.details and not list(tmp_path.iterdir())  # a finished detection leaves none


def test_one_target_at_a_time_keeps_no_inversion_snapshot(zoo, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    det = create_detector("featurere", seed=0, device="cpu", batched=False, **FEATURE_SPACE["featurere"])
    det.snapshot_dir, det.snapshot_every = tmp_path, 0
    monkeypatch.setattr(base, "Deadline", lambda seconds: Dying(3))
    with pytest.raises(Killed):
        det.detect(zoo.get("badnets").model, CleanData.from_images(zoo.defender))
    assert not list(tmp_path.iterdir())  # the loop over targets starts again
