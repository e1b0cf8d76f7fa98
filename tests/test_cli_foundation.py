"""The `ban` command on bad input: one line naming the problem, exit code 2, no traceback, no partial file."""

from __future__ import annotations

import copy
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ban.checkpoint import save_model
from ban.cli import main


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "args,message",
    [
        (["info", "missing.safetensors"], "not found"),
        (["train", "--out", "{tmp}/m.safetensors", "--arch", "resnet1000"], "unknown architecture"),
        (["train", "--out", "{tmp}/m.safetensors", "--data", "nowhere-data"], "unknown dataset"),
        (["train", "--out", "{tmp}/m.safetensors", "--data-dir", "{tmp}/empty"], "dataset-fashion-mnist"),
        (["train", "--out", "{tmp}/m.safetensors", "--attack", "nosuch"], "unknown attack"),
        (["train", "--out", "{tmp}/m.safetensors", "--attack", "badnets", "--poison-rate", "1.5"], "poison rate"),
        (
            ["train", "--out", "{tmp}/m.safetensors", "--attack", "badnets", "--target", "12", "--subset", "200"],
            "outside the class range",
        ),
        # NaN passes a `<= 0` check: it used to end in a traceback (width) or a diverged training (lr)
        (["train", "--out", "{tmp}/m.safetensors", "--width", "nan"], "width multiplier must be a positive number"),
        (["train", "--out", "{tmp}/m.safetensors", "--lr", "nan"], "lr a positive number, got lr nan"),
        # usage errors, found by the command-line parser before any ban code runs
        (["train", "--out", "{tmp}/m.safetensors", "--subset", "-1"], "Invalid value for '--subset'"),
        (["eval", "{tmp}/m.safetensors", "--test-subset", "0"], "Invalid value for '--test-subset'"),
        (["mitigate", "{tmp}/x.safetensors", "--out", "{tmp}/m.safetensors", "--test-subset", "0"], "--test-subset"),
        (["detect", "{tmp}/m.safetensors", "--seed", "abc"], "Invalid value for '--seed'"),
        (["detect", "{tmp}/m.safetensors", "--bogus"], "No such option: --bogus"),
        (["detect"], "Missing argument 'model'; see `ban detect --help`"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, err = run(args, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_corrupt_checkpoint_in_a_real_process(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    proc = subprocess.run(
        [sys.executable, "-m", "ban.cli", "info", str(bad), "--arch", "resnet18"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_train_eval_info_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    code = main(
        [
            "train",
            "--arch",
            "small_cnn",
            "--width",
            "0.5",
            "--epochs",
            "2",
            "--subset",
            "1000",
            "--batch-size",
            "32",
            "--test-subset",
            "300",
            "--lr",
            "0.05",
            "--out",
            str(out),
            "--seed",
            "3",
            "-q",
        ]
    )
    assert code == 0 and out.exists()
    printed = capsys.readouterr().out
    assert "BA " in printed
    assert main(["eval", str(out), "--test-subset", "300", "--seed", "3"]) == 0
    ba = float(capsys.readouterr().out.split()[1])
    from ban.checkpoint import read_metadata

    meta = read_metadata(out)
    assert meta["seed"] == 3 and meta["dataset"] == "fashion-mnist"
    assert abs(meta["ba"] - ba) < 1e-4  # eval reproduces the BA recorded at training time
    assert 0.3 < ba <= 1.0  # one epoch on 600 images learns well beyond chance (0.1)
    assert main(["info", str(out)]) == 0
    assert "small_cnn" in capsys.readouterr().out
    # --arch is for plain state dicts, but a misspelt one is refused here too rather than ignored
    assert main(["info", str(out), "--arch", "vgg99"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown architecture 'vgg99'; choose one of")


def test_training_is_deterministic_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ban.checkpoint import load_model

    for name in ("a", "b"):
        main(
            [
                "train",
                "--arch",
                "small_cnn",
                "--width",
                "0.25",
                "--epochs",
                "1",
                "--subset",
                "300",
                "--test-subset",
                "100",
                "--out",
                str(tmp_path / f"{name}.safetensors"),
                "--seed",
                "1",
                "-q",
            ]
        )
    a, b = load_model(tmp_path / "a.safetensors"), load_model(tmp_path / "b.safetensors")
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be created")
def test_an_output_where_no_file_can_be_created_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """/proc passes os.access for root, as a read-only mount does: the output folder is tried before any work,
    and a write that fails anyway (the folder changed since) is a BanError, not an OSError from the writer."""
    from ban.errors import BanError
    from ban.utils import atomic_write_text

    code, err = run(["attack", "preview", "--attack", "badnets", "--out", "/proc/ban-preview.png"], capsys)
    assert code == 2 and err.startswith("error: --out /proc/ban-preview.png: ") and len(err.strip().splitlines()) == 1
    with pytest.raises(BanError, match=r"^cannot write /proc/ban-test\.txt \(.+\); pass a path in a folder"):
        atomic_write_text("/proc/ban-test.txt", "x")


def test_written_files_get_an_ordinary_mode(tmp_path: Path) -> None:
    """Every output is written to a private temporary file and renamed: a new file gets 0666 under the umask
    (a report others on a shared cluster folder can read), a rewritten one keeps its mode."""
    from ban.utils import atomic_write_text

    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "report.md", "x")
        assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o640
        kept = tmp_path / "kept.json"
        kept.write_text("{}")
        kept.chmod(0o600)
        atomic_write_text(kept, "{}\n")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_text() == "{}\n"
    finally:
        os.umask(old)


def test_a_bad_file_in_a_folder_ends_the_scan_before_it_starts(zoo, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Every checkpoint of a folder is read before the first scan: a corrupt one sorted last used to end the
    scan after all the others (hours on a large folder), with their verdicts printed but no --json written."""
    good = zoo.get("clean")
    save_model(tmp_path / "a-good.safetensors", good.model, good.meta, good.attack)
    (tmp_path / "z-bad.safetensors").write_bytes((tmp_path / "a-good.safetensors").read_bytes()[:1000])
    code = main(["detect", str(tmp_path), "--budget", "0.01", "--json", str(tmp_path / "v.json"), "-q"])
    captured = capsys.readouterr()
    assert code == 2 and "a-good.safetensors" not in captured.out  # nothing was scanned
    assert captured.err.startswith(f"error: {tmp_path / 'z-bad.safetensors'}: ")
    assert len(captured.err.strip().splitlines()) == 1 and not (tmp_path / "v.json").exists()


def test_more_clean_images_than_the_pool_holds_is_a_warning(zoo, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    good = zoo.get("clean")
    path = save_model(tmp_path / "m.safetensors", good.model, good.meta, good.attack)
    cheap = ["--budget", "0.01", "--param", "eval_samples=200", "--param", "opt_samples=100", "-q"]
    code = main(["detect", str(path), "--clean-samples", "99999", *cheap])
    warned = capsys.readouterr().err
    assert code == 0 and warned.startswith("warning: --clean-samples 99999 asks for more than the 6000 held-out")


def test_a_model_that_does_not_classify_the_clean_data_is_warned_of(zoo, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """An untrained model (as one read with the wrong normalisation) collapses under any noise and was flagged
    without a word; its verdict now records its clean accuracy and the command says the verdict means little."""
    import json

    good = zoo.get("clean")
    untrained = copy.deepcopy(good.model)
    torch.manual_seed(0)
    for layer in untrained.modules():  # the same architecture and normalisation, weights as initialised
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    path = save_model(tmp_path / "untrained.safetensors", untrained, good.meta)
    cheap = ["--budget", "0.01", "--param", "eval_samples=200", "--param", "opt_samples=100", "-q"]
    code = main(["detect", str(path), *cheap, "--json", str(tmp_path / "v.json")])
    err = capsys.readouterr().err
    accuracy = json.loads((tmp_path / "v.json").read_text())["details"]["clean_accuracy"]
    assert code == 0 and accuracy <= 0.2
    assert err.startswith(f"warning: untrained.safetensors: the model labels only {accuracy:.0%} of the clean images")
    main(["detect", str(save_model(tmp_path / "good.safetensors", good.model, good.meta)), *cheap])
    assert "labels only" not in capsys.readouterr().err


def test_the_api_checks_a_checkpoints_data_and_a_mitigations_test_data(zoo) -> None:  # type: ignore[no-untyped-def]
    """small_cnn pools adaptively, so it reads 16x16 images: the API compares the data with the checkpoint's
    recorded input shape; a mitigation's test set with the wrong channels was a RuntimeError from inside torch."""
    import ban
    from ban.clean_data import CleanData
    from ban.data.dataset import ImageData
    from ban.errors import BanError

    ckpt, test = zoo.get("clean"), zoo.test.subset(torch.arange(200))
    clean = CleanData.from_images(zoo.defender.subset(torch.arange(300)))
    small = ImageData(torch.nn.functional.interpolate(test.x, size=16), test.y.clone(), 10)
    with pytest.raises(BanError, match=r"^clean data has images of shape \(1, 16, 16\) but the model takes \(1, 28, "):
        ban.detect(ckpt, small, budget=0.01)
    rgb = ImageData(test.x.repeat(1, 3, 1, 1), test.y.clone(), 10)
    with pytest.raises(BanError, match=r"^test data has images of shape \(3, 28, 28\)"):
        ban.mitigate(ckpt, clean, "ft", test=rgb, budget=0.01)
    with pytest.raises(BanError, match=r"^test data has 3-channel images but the model takes 1-channel ones"):
        ban.mitigate(ckpt.model, clean, "ft", test=rgb, budget=0.01)


def test_an_output_that_is_the_input_model_is_refused(zoo, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`mitigate M --out M` replaced the backdoored original (the evidence) with its repair, and `detect M --json M`
    the model with its verdict; both are refused before any work, whatever path spells the same file."""
    good = zoo.get("clean")
    path = save_model(tmp_path / "m.safetensors", good.model, good.meta)
    before = path.read_bytes()
    for args, flag in (
        (["mitigate", str(path), "--out", str(tmp_path / "." / "m.safetensors"), "--budget", "0.01"], "--out"),
        (["detect", str(path), "--json", str(path), "--budget", "0.01"], "--json"),
    ):
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2 and err.startswith(f"error: {flag} ") and "is the model given as input" in err
        assert len(err.strip().splitlines()) == 1 and path.read_bytes() == before
