"""Checkpoints: safetensors round-trip, plain state dicts (paper layouts), and every refusal."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ban.attacks import create_attack
from ban.checkpoint import load_model, model_metadata, read_metadata, save_model
from ban.errors import BanError
from ban.models import create_model


def _model(arch: str = "small_cnn", width: float = 0.5):
    torch.manual_seed(0)
    m = create_model(arch, 10, 1, width, [0.286], [0.353])
    # make BN statistics non-trivial so the round-trip is a real test
    m.train()
    m(torch.rand(16, 1, 28, 28))
    return m.eval()


def test_round_trip_gives_identical_outputs_and_metadata(tmp_path: Path) -> None:
    model = _model()
    attack = create_attack("badnets", target=7)
    attack.setup((1, 28, 28), 10)
    meta = model_metadata(model, "small_cnn", 10, (1, 28, 28), 0.5, "fashion-mnist", 5, ba=0.9)
    path = save_model(tmp_path / "m.safetensors", model, meta, attack)
    loaded = load_model(path)
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.meta["arch"] == "small_cnn" and loaded.meta["seed"] == 5 and loaded.meta["ba"] == 0.9
    assert loaded.meta["versions"]["torch"] == torch.__version__
    assert loaded.attack is not None and loaded.attack.target == 7
    assert torch.equal(loaded.attack.apply_trigger(x), attack.apply_trigger(x))
    assert read_metadata(path)["attack"]["name"] == "badnets"
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind


@pytest.mark.parametrize("key", [None, "netC", "model_state_dict", "model"])
def test_plain_state_dict_layouts_of_the_paper_code(tmp_path: Path, key: str | None) -> None:
    model = _model("resnet18", 0.25)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    obj = state if key is None else {key: state, "epoch": 199}
    torch.save(obj, tmp_path / "paper.pth")
    loaded = load_model(tmp_path / "paper.pth", arch="resnet18", mean=(0.286,), std=(0.353,))
    assert loaded.meta["width"] == 0.25 and loaded.meta["num_classes"] == 10 and loaded.meta["normalization_assumed"]
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(loaded.model(x), model(x))


def test_pickle_needing_full_unpickling_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    victim = tmp_path / "pwned.txt"

    class Evil:
        def __reduce__(self):
            return (open, (str(victim), "w"))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(BanError, match="needs full unpickling"):
        load_model(path, arch="resnet18")
    assert not victim.exists()
    # a whole pickled nn.Module (the common unsafe habit) is refused as well
    torch.save(_model(), tmp_path / "module.pt")
    with pytest.raises(BanError, match="needs full unpickling"):
        load_model(tmp_path / "module.pt", arch="small_cnn")


def test_checkpoint_that_does_not_fit_the_architecture(tmp_path: Path) -> None:
    state = _model().state_dict()
    torch.save(state, tmp_path / "cnn.pth")
    with pytest.raises(BanError, match="do not fit the architecture"):
        load_model(tmp_path / "cnn.pth", arch="resnet18")
    bad = dict(state)
    bad["linear.weight"] = torch.zeros(10, 3)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(BanError, match="mis-shaped"):
        load_model(tmp_path / "shape.pth", arch="small_cnn", width=0.5)
    missing = {k: v for k, v in state.items() if k != "linear.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(BanError, match="1 missing"):
        load_model(tmp_path / "missing.pth", arch="small_cnn", width=0.5)


def test_nan_weights_corrupt_files_and_missing_arch(tmp_path: Path) -> None:
    state = _model().state_dict()
    state["linear.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(BanError, match="NaN or Inf"):
        load_model(tmp_path / "nan.pth", arch="small_cnn")
    good = tmp_path / "good.safetensors"
    model = _model()
    save_model(good, model, model_metadata(model, "small_cnn", 10, (1, 28, 28), 0.5))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(BanError, match="corrupt"):
        load_model(truncated)
    (tmp_path / "junk.pt").write_bytes(b"\x00\x01garbage")
    with pytest.raises(BanError):
        load_model(tmp_path / "junk.pt", arch="small_cnn")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(BanError, match="--arch"):
        load_model(tmp_path / "bare.safetensors")
    with pytest.raises(BanError, match="not found"):
        load_model(tmp_path / "nope.safetensors")


def test_saving_nan_weights_writes_nothing(tmp_path: Path) -> None:
    model = _model()
    with torch.no_grad():
        model.linear.weight[0, 0] = float("inf")
    with pytest.raises(BanError, match="NaN or Inf"):
        save_model(tmp_path / "x.safetensors", model, model_metadata(model, "small_cnn", 10, (1, 28, 28), 0.5))
    assert list(tmp_path.iterdir()) == []
