"""The attack suite: deterministic triggers in [0, 1] at any size, right poisoning bookkeeping,
exact checkpoint round-trips, real backdoors (BadNets, WaNet) and the preview picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from ban.attacks import ATTACKS, IMPLANT_ASR, create_attack, implant_warning, preset_lines
from ban.attacks.base import partner_index
from ban.attacks.bpp import floyd_steinberg, squeeze
from ban.checkpoint import load_model, save_model
from ban.cli import main
from ban.commands.common import parse_params
from ban.data import ImageData
from ban.errors import BanError
from ban.evaluate import evaluate
from ban.utils import make_generator
from zoo import Zoo

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64)]
ALL = list(ATTACKS)


def built(name: str, shape: tuple[int, int, int], num_classes: int = 10, **params: object):  # type: ignore[no-untyped-def]
    attack = create_attack(name, **params)
    attack.setup(shape, num_classes)
    return attack


def images(n: int, shape: tuple[int, int, int], seed: int = 0) -> Tensor:
    """Smooth random images in [0, 1] with some exact 0 and 1 pixels (the edge cases of clamping)."""
    g = make_generator(seed)
    x = torch.rand(n, *shape, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    x[:, :, :2] = 0.0
    x[:, :, -2:] = 1.0
    return x


def toy_data(n: int = 400, shape: tuple[int, int, int] = (1, 28, 28), k: int = 10) -> ImageData:
    y = torch.arange(n) % k
    return ImageData(images(n, shape), y, k, "toy")


# ---------------------------------------------------------------- triggers
def test_all_seven_attacks_are_registered() -> None:
    assert set(ALL) == {"badnets", "blend", "wanet", "iad", "bpp", "adap-blend", "ssdt"}
    assert type(create_attack("adap_blend")).__name__ == "AdapBlend"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ALL)
def test_trigger_is_deterministic_in_range_and_visible(name: str, shape: tuple[int, int, int]) -> None:
    x = images(6, shape)
    y = torch.arange(6)
    outs = []
    for _ in range(2):
        attack = built(name, shape)
        with torch.no_grad():
            xt = attack.eval().apply_trigger(x, make_generator(1))
            xb, yb = attack.train().poison_batch(x, y, make_generator(1))
        outs.append((xt, xb, yb))
    (a, ab, ay), (b, bb, by) = outs
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and torch.equal(ab, bb) and torch.equal(ay, by)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert float(ab.min()) >= 0.0 and float(ab.max()) <= 1.0
    assert (a - x).abs().amax(dim=(1, 2, 3)).min() > 0, "every image must change"


@pytest.mark.parametrize("name", ["blend", "wanet", "iad"])
def test_trigger_seed_changes_the_trigger(name: str) -> None:
    x = images(4, (3, 32, 32))
    with torch.no_grad():
        a = built(name, (3, 32, 32), trigger_seed=0).eval().apply_trigger(x)
        b = built(name, (3, 32, 32), trigger_seed=1).eval().apply_trigger(x)
    assert not torch.equal(a, b)


def test_badnets_patch_and_blend_formula() -> None:
    x = images(3, (1, 28, 28))
    badnets = built("badnets", (1, 28, 28))
    xt = badnets.apply_trigger(x)
    assert torch.equal(xt[:, :, :25], x[:, :, :25]) and torch.equal(xt[:, :, :, :25], x[:, :, :, :25])
    assert xt[0, 0, -3:, -3:].tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 1]]
    blend = built("blend", (1, 28, 28))
    assert torch.allclose(blend.apply_trigger(x), (0.8 * x + 0.2 * blend.pattern).clamp(0, 1))


def test_wanet_warp_is_small_and_smooth() -> None:
    wanet = built("wanet", (1, 28, 28))
    shift = (wanet.grid() - wanet.identity_grid) * torch.tensor([27 / 2, 27 / 2])  # in pixels
    assert 0.05 < float(shift.abs().mean()) < 1.0  # sub-pixel warp: imperceptible
    ramp = torch.linspace(0, 1, 28).view(1, 1, 1, 28).expand(1, 1, 28, 28).contiguous()
    assert (wanet.apply_trigger(ramp) - ramp).abs().max() < 0.05


def test_bpp_squeezes_to_levels_and_dithering_matches_a_plain_loop() -> None:
    x = images(2, (3, 9, 7))
    q = squeeze(x, 8)
    assert torch.allclose(q * 7, (q * 7).round(), atol=1e-5)
    assert (q - x).abs().max() <= 1 / 14 + 1e-6

    # Floyd–Steinberg, pixel by pixel in raster order
    ref = x.clone().double()
    h, w = x.shape[-2:]
    out = torch.empty_like(ref)
    for i in range(h):
        for j in range(w):
            v = ref[:, :, i, j]
            qv = squeeze(v, 8)
            e = v - qv
            out[:, :, i, j] = qv
            if j + 1 < w:
                ref[:, :, i, j + 1] += e * 7 / 16
            if i + 1 < h:
                if j > 0:
                    ref[:, :, i + 1, j - 1] += e * 3 / 16
                ref[:, :, i + 1, j] += e * 5 / 16
                if j + 1 < w:
                    ref[:, :, i + 1, j + 1] += e * 1 / 16
    fast = floyd_steinberg(x.double(), 8)
    assert torch.allclose(fast, out, atol=1e-9)
    assert torch.equal(built("bpp", (3, 9, 7), dithering=True).apply_trigger(x), floyd_steinberg(x, 8))


def test_adap_blend_train_trigger_is_partial_and_test_trigger_full() -> None:
    attack = built("adap-blend", (3, 32, 32))
    x = images(20, (3, 32, 32))
    masks = attack.piece_masks(20, make_generator(0))
    tile_kept = masks[:, 0, ::8, ::8].flatten(1)  # 4×4 tiles of 8×8
    assert (tile_kept.sum(1) == 8).all() and len({tuple(t.tolist()) for t in tile_kept}) > 1
    train = attack.poison_images(x, make_generator(0))
    assert torch.allclose(train, x + 0.15 * masks * (attack.pattern - x), atol=1e-6)
    assert torch.allclose(attack.apply_trigger(x), 0.8 * x + 0.2 * attack.pattern, atol=1e-6)
    grey = built("adap-blend", (1, 28, 28))  # 28 does not split into 4 equal tiles
    assert grey.tiles.unique().tolist() == list(range(16))


def test_iad_mask_pretraining_makes_sparse_masks() -> None:
    attack = built("iad", (1, 28, 28))
    x = images(64, (1, 28, 28))
    with torch.no_grad():
        before = float(attack.mask(x).mean())
    attack.pretrain_mask(x, 4, make_generator(0), batch_size=32)
    after = float(attack.eval().mask(x).mean())
    assert after < before and after < 0.2
    assert not any(p.requires_grad for p in attack.mask_net.parameters())
    attack.train()
    assert not attack.mask_net.training  # frozen: stays in eval mode


# ---------------------------------------------------------------- bookkeeping
@pytest.mark.parametrize("name", ["badnets", "blend"])
def test_static_poisoning_picks_non_target_images_and_relabels(name: str) -> None:
    data = toy_data()
    attack = built(name, data.image_shape, target=3, poison_rate=0.1)
    out = attack.poison_dataset(data, make_generator(0))
    idx = out.poison_index
    assert len(idx) == int(0.1 * 360) and len(out.cover_index) == 0
    assert (data.y[idx] != 3).all()
    assert (out.data.y[idx] == 3).all()
    rest = torch.ones(len(data), dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(out.data.y[rest], data.y[rest]) and torch.equal(out.data.x[rest], data.x[rest])
    assert torch.allclose(out.data.x[idx], attack.apply_trigger(data.x[idx]))
    again = built(name, data.image_shape, target=3, poison_rate=0.1).poison_dataset(data, make_generator(0))
    assert torch.equal(again.poison_index, idx)


def test_all2all_and_source_specific_labels() -> None:
    data = toy_data()
    a2a = built("badnets", data.image_shape, mode="all2all", poison_rate=0.2)
    out = a2a.poison_dataset(data, make_generator(0))
    assert len(out.poison_index) == 80
    assert torch.equal(out.data.y[out.poison_index], (data.y[out.poison_index] + 1) % 10)
    src = built("blend", data.image_shape, mode="source-specific", victim=1, target=0, poison_rate=0.5)
    out = src.poison_dataset(data, make_generator(0))
    assert (data.y[out.poison_index] == 1).all() and (out.data.y[out.poison_index] == 0).all()
    assert src.asr_mask(torch.tensor([0, 1, 2])).tolist() == [False, True, False]


def test_adap_blend_poisons_all_classes_and_keeps_cover_labels() -> None:
    data = toy_data(2000)
    attack = built("adap-blend", data.image_shape, target=0, poison_rate=0.02, cover_rate=0.01)
    out = attack.poison_dataset(data, make_generator(0))
    p, c = out.poison_index, out.cover_index
    assert len(p) == 40 and len(c) == 20
    assert len(set(p.tolist()) & set(c.tolist())) == 0
    assert (out.data.y[p] == 0).all() and torch.equal(out.data.y[c], data.y[c])
    assert (data.y[p] == 0).any(), "the toolbox draws from all images, target class included"
    assert ((out.data.x[c] - data.x[c]).abs().flatten(1).amax(1) > 0).all()
    rest = torch.ones(len(data), dtype=torch.bool)
    rest[p] = False
    rest[c] = False
    assert torch.equal(out.data.x[rest], data.x[rest])


@pytest.mark.parametrize("name,n_bd,n_extra", [("wanet", 12, 24), ("bpp", 25, 25), ("iad", 12, 12)])
def test_per_batch_roles_and_labels(name: str, n_bd: int, n_extra: int) -> None:
    x, y = images(128, (1, 28, 28)), torch.arange(128) % 10
    attack = built(name, (1, 28, 28), target=0)
    bd, extra = attack.batch_roles(y)
    assert len(bd) == n_bd and len(extra) == n_extra
    assert (y[bd] != 0).all() and not set(bd.tolist()) & set(extra.tolist())
    with torch.no_grad():
        xb, yb = attack.poison_batch(x, y, make_generator(0))
    changed = (xb != x).flatten(1).any(1)
    assert (yb[bd] == 0).all() and torch.equal(yb[extra], y[extra])
    clean = torch.ones(128, dtype=torch.bool)
    clean[bd] = False
    clean[extra] = False
    assert torch.equal(yb[clean], y[clean]) and not changed[clean].any()
    assert changed[bd].all()
    with torch.no_grad():
        assert torch.allclose(xb[bd], attack.apply_trigger(x[bd]), atol=1e-6)


def test_bpp_negative_samples_carry_another_images_residual() -> None:
    x, y = images(40, (3, 32, 32)), torch.arange(40) % 10
    attack = built("bpp", (3, 32, 32))
    _, extra = attack.batch_roles(y)
    xb, yb = attack.poison_batch(x, y, make_generator(0))
    donor = x[partner_index(40)[extra]]
    assert not torch.equal(donor, x[extra])
    assert torch.allclose(xb[extra], (x[extra] + squeeze(donor, 8) - donor).clamp(0, 1))
    assert torch.equal(yb[extra], y[extra])


def test_ssdt_batch_only_victims_go_to_the_target() -> None:
    x, y = images(64, (1, 28, 28)), torch.arange(64) % 10
    attack = built("ssdt", (1, 28, 28))
    assert (attack.mode, attack.victim, attack.target) == ("source-specific", 1, 0)
    inputs, labels, div = attack.compose_batch(x, y)
    victims = y == 1
    nv = int(victims.sum())
    assert len(labels) == 64 and float(div.detach()) > 0
    assert (labels[:nv] == 0).all()
    # G sees the victims and the cross sources in one batch (its BatchNorm statistics are a mixed
    # batch's, as at test time), not the victims alone
    partner = x[partner_index(64, x.device)][nv : 2 * nv]
    joint = attack.stamp(torch.cat([x[victims], x[nv : 2 * nv]]), torch.cat([x[victims], partner]))[0]
    assert torch.allclose(inputs[: 2 * nv], joint)
    assert not torch.allclose(inputs[:nv], attack.stamp(x[victims], x[victims])[0])
    # TED's batch: then cross samples (another image's trigger) and the clean rest, all with their own labels
    assert torch.equal(labels[nv:], y[nv:])
    assert torch.allclose(inputs[nv:][nv:], x[2 * nv :])
    assert (inputs[nv : 2 * nv] != x[nv : 2 * nv]).flatten(1).any(1).all()
    assert built("ssdt", (1, 28, 28), mode="all2one").mode == "source-specific"  # the `ban train` default
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    loss = attack.training_loss(classifier, x, y, lambda v, g: v, make_generator(0))
    loss.backward()
    assert all(p.grad is not None for p in attack.pattern_net.parameters())
    assert all(p.grad is None for p in attack.mask_net.parameters())


def test_ssdt_cross_ratio_sets_the_cross_samples_per_victim() -> None:
    x, y = images(64, (1, 28, 28)), torch.arange(64) % 10
    inputs, labels, _ = built("ssdt", (1, 28, 28), cross_ratio=0.5).compose_batch(x, y)
    nv = int((y == 1).sum())
    nc = nv // 2
    assert len(labels) == 64 and (labels[:nv] == 0).all() and torch.equal(labels[nv:], y[nv:])
    assert (inputs[nv : nv + nc] != x[nv : nv + nc]).flatten(1).any(1).all()  # another image's trigger
    assert torch.equal(inputs[nv + nc :], x[nv + nc :])  # the clean rest


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: create_attack("nosuch"), "unknown attack"),
        (lambda: create_attack("wanet", poison_rate=0.0), "poison rate"),
        (lambda: create_attack("bpp", poison_rate=1.0), "poison rate"),
        (lambda: create_attack("blend", alpha=1.5), "alpha"),
        (lambda: create_attack("wanet", nosuch=1), "unknown parameter 'nosuch' for attack 'wanet'; choose from"),
        (lambda: create_attack("wanet", k="four"), "parameter k must be a whole number"),
        (lambda: create_attack("wanet", s=float("nan")), "parameter s must be a finite number"),
        (lambda: create_attack("badnets", target=1.5), "parameter target must be a whole number"),
        (lambda: built("iad", (1, 28, 28), target=10), "outside the class range"),
        (lambda: built("blend", (1, 28, 28), mode="source-specific", victim=12), "outside the class range"),
        (lambda: create_attack("ssdt", victim=0, target=0), "equals the target"),
        (lambda: create_attack("ssdt", mode="all2all"), "source-specific"),
        (lambda: create_attack("ssdt", cross_ratio=-1), "cross_ratio"),
        (lambda: create_attack("adap-blend", pieces=10), "square"),
        (lambda: built("wanet", (1, 28, 28), k=40), "exceeds the image size"),
        (lambda: built("blend", (1, 28, 28), image="/no/such.png").apply_trigger(torch.zeros(1, 1, 8, 8)), "not found"),
        (lambda: create_attack("wanet", preset="gpu"), "attack 'wanet' has no preset 'gpu'; choose one of cpu"),
        (lambda: create_attack("badnets", preset="cpu"), "attack 'badnets' has no presets; drop preset=cpu"),
        (lambda: create_attack("bpp", preset="cpu", poison_rate=0.95), "neg_rate"),  # preset + explicit, checked
    ],
)
def test_bad_input_is_one_ban_error(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BanError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_a_trigger_picture_of_any_size_is_resized(tmp_path: Path) -> None:
    path = tmp_path / "kitty.png"
    arr = np.zeros((50, 70, 3), dtype=np.uint8)
    arr[:, :35, 0] = 255
    Image.fromarray(arr).save(path)
    for shape in SHAPES:
        for name in ("blend", "adap-blend"):
            attack = built(name, shape, image=str(path))
            assert attack.pattern.shape == shape
            assert 0 <= float(attack.pattern.min()) and float(attack.pattern.max()) <= 1
    colour = built("blend", (3, 32, 32), image=str(path)).pattern
    assert colour[0, :, :12].mean() > 0.9 and colour[1].max() == 0
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    with pytest.raises(BanError, match="cannot read trigger image"):
        built("blend", (1, 28, 28), image=str(bad))


def test_every_parameter_can_be_set_from_key_value_pairs() -> None:
    params = parse_params(["k=2", "s=0.75", "grid_rescale=1", "cross-ratio=1", "trigger_seed=5"])
    attack = create_attack("wanet", **params)
    assert (attack.k, attack.s, attack.cross_ratio, attack.trigger_seed) == (2, 0.75, 1.0, 5)
    iad = create_attack("iad", **parse_params(["g_milestones=[0.5]", "mask_epochs=3", "gen_channels=8"]))
    assert iad.g_milestones == [0.5] and iad.mask_epochs == 3
    for name in ALL:  # params() rebuilds the same attack
        attack = create_attack(name)
        assert create_attack(name, **attack.params()).params() == attack.params()


# ---------------------------------------------------------------- presets and implant warnings
def test_cpu_presets_fill_in_their_values_and_explicit_parameters_win() -> None:
    with_cpu = {name for name in ALL if "cpu" in ATTACKS[name].PRESETS}
    assert with_cpu == {"wanet", "iad", "bpp", "ssdt", "adap-blend"}
    for name in with_cpu:
        paper, cpu = create_attack(name), create_attack(name, preset="cpu")
        values = ATTACKS[name].PRESETS["cpu"]
        assert {k: cpu.params()[k] for k in values} == values
        assert any(paper.params()[k] != v for k, v in values.items())  # the defaults stay the paper's
        assert (cpu.preset, paper.preset) == ("cpu", None) and cpu.describe()["preset"] == "cpu"
        assert "preset" not in cpu.params()  # expanded: a checkpoint rebuilds it without the preset
        assert create_attack(name, **cpu.params()).params() == cpu.params()
    wanet = create_attack("wanet", **parse_params(["preset=cpu", "s=0.75"]))
    assert (wanet.s, wanet.cross_ratio, wanet.poison_rate) == (0.75, 1.0, 0.15)
    # an unset option (None, e.g. `ban train` without --poison-rate) keeps the preset's value
    assert create_attack("iad", preset="cpu", poison_rate=None).poison_rate == 0.2
    assert create_attack("iad", preset="cpu", poison_rate=0.1).poison_rate == 0.1
    ssdt = create_attack("ssdt", preset="cpu", victim=3, target=4)
    assert (ssdt.mask_epochs, ssdt.victim, ssdt.g_milestones) == (5, 3, create_attack("ssdt").g_milestones)
    lines = preset_lines()
    assert len(lines) == 5 and "  wanet -p preset=cpu: s=1.0, cross_ratio=1.0, poison_rate=0.15" in lines


def test_implant_warning_names_the_attack_the_asr_and_what_helps() -> None:
    wanet = create_attack("wanet", target=2)
    line = implant_warning(wanet, 0.48)
    assert line is not None and "\n" not in line
    assert line.startswith("wanet reached ASR 0.480, below 0.8") and "still written" in line
    assert "-p preset=cpu" in line and "more --epochs" in line
    bench = implant_warning(wanet, 0.48, "bench")
    assert bench is not None and "params: {preset: cpu}" in bench and "train.epochs" in bench
    assert implant_warning(wanet, IMPLANT_ASR) is None and implant_warning(wanet, 0.97) is None
    assert "ASR not measured" in (implant_warning(wanet, float("nan")) or "")
    ssdt = implant_warning(create_attack("ssdt", victim=1, target=5), 0.59)
    assert ssdt is not None and "ASR 0.590 on victim class 1" in ssdt
    tried = implant_warning(create_attack("bpp", preset="cpu"), 0.3)  # the preset is in use: only epochs help
    assert tried is not None and "preset" not in tried and "more --epochs" in tried
    plain = implant_warning(create_attack("badnets"), 0.2)  # no preset to suggest
    assert plain is not None and "preset" not in plain


def test_train_warns_when_the_backdoor_does_not_take(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One poisoned image of 900 implants nothing: the model is written, with one warning line on stderr."""
    out = tmp_path / "weak.safetensors"
    args = ["--arch", "small_cnn", "--width", "0.5", "--subset", "1000", "--test-subset", "500", "--epochs", "2"]
    args += ["--lr", "0.05", "--no-augment", "--quiet", "--attack", "badnets", "--poison-rate", "0.002"]
    assert main(["train", *args, "--target", "3", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    asr = load_model(out).meta["asr"]
    assert asr < IMPLANT_ASR
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: badnets reached ASR {asr:.3f}, below 0.8: the backdoor is not implanted "
        "(the model is still written); try more --epochs"
    ]
    code = main(["train", *args, "-p", "preset=cpu", "--out", str(tmp_path / "bad.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "error: attack 'badnets' has no presets; drop preset=cpu"
    assert not (tmp_path / "bad.safetensors").exists()


def test_cli_refuses_bad_attack_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in [
        (["--attack", "nosuch"], "unknown attack"),
        (["--attack", "ssdt", "-p", "victim=0"], "equals the target"),
        (["-p", "k=2"], "single --attack"),
    ]:
        code = main(["attack", "preview", *args, "--out", str(tmp_path / "p.png")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "p.png").exists()


# ---------------------------------------------------------------- checkpoints and real backdoors
@pytest.mark.parametrize("name", ALL)
def test_checkpoint_round_trip_reproduces_asr_exactly(name: str, zoo: Zoo, tmp_path: Path) -> None:
    clean = zoo.get("clean")
    attack = built(name, zoo.test.image_shape)
    if name in ("iad", "ssdt"):  # give the generators non-initial weights and BN statistics
        attack.pretrain_mask(zoo.test.x[:64], 1, make_generator(0), batch_size=32)
        with torch.no_grad():
            for p in attack.pattern_net.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=make_generator(1)))
    test = zoo.test.subset(torch.arange(400))
    before = evaluate(clean.model, test, attack, device="cpu")
    path = save_model(tmp_path / "m.safetensors", clean.model, dict(clean.meta), attack)
    loaded = load_model(path)
    assert loaded.attack is not None and loaded.attack.params() == attack.params()
    after = evaluate(loaded.model, test, loaded.attack, device="cpu")
    assert after.asr == before.asr and after.nvt_accuracy == before.nvt_accuracy
    with torch.no_grad():
        assert torch.equal(loaded.attack.eval().apply_trigger(test.x[:8]), attack.eval().apply_trigger(test.x[:8]))


def test_a_saved_picture_trigger_loads_without_the_picture(zoo: Zoo, tmp_path: Path) -> None:
    path = tmp_path / "t.png"
    Image.fromarray((np.arange(28 * 28).reshape(28, 28) % 256).astype(np.uint8)).save(path)
    attack = built("blend", zoo.test.image_shape, image=str(path))
    ckpt = save_model(tmp_path / "m.safetensors", zoo.get("clean").model, dict(zoo.get("clean").meta), attack)
    path.unlink()
    loaded = load_model(ckpt)
    assert torch.equal(loaded.attack.pattern, attack.pattern)
    assert torch.equal(loaded.attack.apply_trigger(zoo.test.x[:4]), attack.apply_trigger(zoo.test.x[:4]))


def test_a_loaded_checkpoint_keeps_its_preset_and_the_warning_its_gate(zoo: Zoo, tmp_path: Path) -> None:
    """The warning after training reads the saved checkpoint: it must not suggest the preset the model was
    trained with, and the bench's warning follows the spec's `min_asr`, not the default 0.8."""
    from ban.trainer import asr_warning

    clean = zoo.get("clean")
    attack = create_attack("wanet", preset="cpu", target=2)
    attack.setup(zoo.test.image_shape, 10)
    path = save_model(tmp_path / "m.safetensors", clean.model, {**clean.meta, "asr": 0.7}, attack)
    loaded = load_model(path)
    assert loaded.attack is not None and loaded.attack.preset == "cpu"
    line = asr_warning(loaded, "bench")
    assert line is not None and "preset" not in line and "more train.epochs" in line
    assert asr_warning(loaded, "bench", min_asr=0.6) is None
    assert "below 0.9" in (asr_warning(loaded, "bench", min_asr=0.9) or "")
    plain = create_attack("wanet", target=2)  # trained without the preset: the preset is what to try
    plain.setup(zoo.test.image_shape, 10)
    again = load_model(save_model(tmp_path / "p.safetensors", clean.model, {**clean.meta, "asr": 0.7}, plain))
    assert again.attack is not None and again.attack.preset is None
    assert "params: {preset: cpu}" in (asr_warning(again, "bench") or "")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["badnets", "wanet"])
def test_real_backdoors_reach_high_asr_and_keep_ba(name: str, zoo: Zoo, tmp_path: Path) -> None:
    ckpt = zoo.get(name)
    clean = zoo.get("clean")
    report = evaluate(ckpt.model, zoo.test, ckpt.attack, device="cpu", seed=ckpt.meta["seed"])
    assert report.asr is not None and report.asr >= 0.9
    assert report.ba >= clean.meta["ba"] - 0.03
    assert report.asr == ckpt.meta["asr"] and report.ba == ckpt.meta["ba"]  # re-measured from the checkpoint alone
    assert evaluate(clean.model, zoo.test, ckpt.attack, device="cpu").asr < 0.3  # the trigger alone is no backdoor


# ---------------------------------------------------------------- preview
def test_preview_of_all_attacks_grey_and_colour(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grey.png"
    assert main(["attack", "preview", "--attack", "all", "--n", "3", "--mask-epochs", "1", "--out", str(out)]) == 0
    assert Image.open(out).size[1] > Image.open(out).size[0]  # one row block per attack
    colour = tmp_path / "colour.npz"
    x = (np.random.default_rng(0).random((40, 32, 32, 3)) * 255).astype(np.uint8)
    np.savez(colour, x=x, y=np.arange(40) % 4)
    out2 = tmp_path / "colour.png"
    code = main(
        [
            "attack",
            "preview",
            "--attack",
            "all",
            "--data",
            str(colour),
            "--n",
            "4",
            "--mask-epochs",
            "1",
            "--out",
            str(out2),
        ]
    )
    assert code == 0 and out2.stat().st_size > 0
    assert main(["attack", "preview", "--attack", "wanet", "-p", "s=1.0", "--no-residual", "--out", str(out)]) == 0


def test_preview_of_a_trained_checkpoint(zoo: Zoo, tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    zoo.get("badnets")
    assert main(["attack", "preview", "--model", str(zoo.path("badnets")), "--n", "2", "--out", str(out)]) == 0
    assert out.exists()


def test_a_changed_attack_training_renews_only_its_own_cache_keys() -> None:
    """IAD's and SSDT's training changed (one generator pass); their cached models must not be reused,
    while every other attack's recipe and bench keys stay what they were."""
    from ban.bench.plan import ModelJob
    from ban.recipe import Recipe

    assert create_attack("ssdt").training_version == create_attack("iad").training_version == 2
    assert Recipe(attack="ssdt").describe()["attack_version"] == 2
    assert all("attack_version" not in Recipe(attack=a).describe() for a in ATTACKS if a not in ("iad", "ssdt"))
    job = {"group": "g", "arch": "resnet18", "width": 0.25, "arch_label": "r", "seed": 1}
    job |= {"attack_params": {}, "recipe": {}, "data": {}}
    keys = {a: ModelJob(attack=a, **job).key for a in ("badnets", "iad")}
    # version 1 hashes exactly as before the version existed; version 2 does not
    plain = {"arch": "resnet18", "width": 0.25, "seed": 1, "attack_params": {}, "recipe": {}, "data": {}}
    from ban.bench.plan import content_key

    assert keys["badnets"] == content_key({**plain, "attack": "badnets"})
    assert keys["iad"] != content_key({**plain, "attack": "iad"})
