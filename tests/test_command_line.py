"""The one error boundary of every command: a user's or the machine's mistake is one line and an exit status."""

from __future__ import annotations

import ast
import errno
import os
from pathlib import Path

import pytest

from peft_puma.command_line import EXIT_INTERRUPTED, EXIT_INVALID, run_command
from peft_puma.errors import InvalidConfigError
from peft_puma.training import NonFiniteLossError

PACKAGE = Path(__file__).resolve().parents[1] / "peft_puma"
COMMAND_FILES = [
    "train.py",
    "evaluate.py",
    "embed.py",
    "search/cli.py",
    "data/uml_mini/__main__.py",
    "standin/__main__.py",
    "backbones/timm_vit/__main__.py",
]


def _raise(error: BaseException):
    def body():
        raise error

    return body


def test_a_user_mistake_is_one_line_and_status_2(capsys):
    assert run_command(_raise(InvalidConfigError("epochs must be positive, got 0."))) == EXIT_INVALID
    assert capsys.readouterr().err == "error: epochs must be positive, got 0.\n"


def test_a_diverged_loss_exits_with_3(capsys):
    assert run_command(_raise(NonFiniteLossError("the loss became nan at step 3"))) == 3
    assert capsys.readouterr().err.startswith("error: the loss became nan")


def test_ctrl_c_is_one_line_and_status_130(capsys):
    assert run_command(_raise(KeyboardInterrupt())) == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "cannot write /data/run/x.safetensors: No space left on device (free some space"),
        (errno.EROFS, "cannot write /data/run/x.safetensors: Read-only file system (a read-only file system"),
        (errno.EACCES, "cannot access /data/run/x.safetensors: Permission denied (check the folder's permissions"),
    ],
)
def test_a_full_disk_or_a_folder_that_cannot_be_written_names_the_path(code, words, capsys):
    error = OSError(code, os.strerror(code), "/data/run/x.safetensors")
    assert run_command(_raise(error)) == EXIT_INVALID
    err = capsys.readouterr().err
    assert err.startswith(f"error: {words}") and err.count("\n") == 1


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run_command(_raise(ZeroDivisionError("a bug")))
    with pytest.raises(FileNotFoundError):  # not the machine's state: whoever raised it words it, or it is a bug
        run_command(_raise(FileNotFoundError(errno.ENOENT, "No such file or directory", "x")))


def test_debug_shows_the_traceback_of_a_user_mistake(monkeypatch):
    monkeypatch.setenv("PEFT_PUMA_DEBUG", "1")
    with pytest.raises(InvalidConfigError):
        run_command(_raise(InvalidConfigError("bad")))


def test_success_is_status_0():
    assert run_command(lambda: None) == 0


@pytest.mark.parametrize("path", COMMAND_FILES)
def test_every_command_runs_inside_the_boundary(path):
    """Each command's main hands its work to run_command, and none prints its own `error:` lines."""
    source = (PACKAGE / path).read_text()
    tree = ast.parse(source)
    main = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main")
    calls = {node.func.id for node in ast.walk(main) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert "run_command" in calls
    assert 'f"error: ' not in source and "parser.exit(2" not in source


@pytest.mark.parametrize(
    ("module", "body", "kept"),
    [
        ("peft_puma.embed", "_embed", "nothing was written; an earlier file at --output is intact"),
        ("peft_puma.search.cli", "_run", "the previous index in x (if any) is intact"),
    ],
)
def test_ctrl_c_in_embed_and_search_says_what_was_kept(monkeypatch, capsys, module, body, kept):
    import importlib

    command = importlib.import_module(module)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, body, interrupted)
    argv = (
        ["index", "--output_dir", "x", "--images", "y"]
        if module.endswith("cli")
        else ["--images", "y", "--output", "e.safetensors"]
    )
    assert command.main(argv) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.startswith(f"interrupted: {kept}")
