"""The `ban` command: parse, call the API, print. Bad input ends in one line and exit code 2."""

from __future__ import annotations

import sys

import typer

from ban.commands.attack import attack_app
from ban.commands.bench import app as bench_app
from ban.commands.detect import detect
from ban.commands.info import eval_cmd, info
from ban.commands.mitigate import mitigate
from ban.commands.train import train
from ban.errors import BanError

app = typer.Typer(
    name="ban",
    help="Detect, name and remove backdoors in image classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("train")(train)
app.command("info")(info)
app.command("eval")(eval_cmd)
app.command("detect")(detect)
app.command("mitigate")(mitigate)
app.add_typer(attack_app, name="attack")
app.add_typer(bench_app, name="bench")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command; a BanError prints one line and returns 2 (usage errors too)."""
    try:
        code = app(args=argv, prog_name="ban", standalone_mode=False)
    except BanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _usage_error(exc)
    return code if isinstance(code, int) else 0  # a command's typer.Exit(code) comes back as its return value


def _usage_error(exc: Exception) -> int:
    """A command-line usage error (unknown option, a value of the wrong type, a missing argument) as one line
    and exit 2, as every other bad input; `ban` or a group without a command has printed its help already.
    Click's Abort (its form of Ctrl-C) is an interruption; anything else is a bug, raised as it is."""
    kinds = {c.__name__ for c in type(exc).__mro__}  # typer vendors click in newer versions: match by name
    if "Abort" in kinds:
        print("interrupted", file=sys.stderr)
        return 130
    if "UsageError" not in kinds:
        raise exc
    if "NoArgsIsHelpError" in kinds:
        return 2
    ctx = getattr(exc, "ctx", None)
    where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
    message = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
    print(f"error: {message.rstrip('.')}{where}", file=sys.stderr)
    return 2


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
