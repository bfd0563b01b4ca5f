"""The command lines of ``python -m peft_puma.data.uml_mini`` and ``python -m peft_puma.standin``: one spelling per
option in --help (a folder is --output_dir), every option explained, former spellings still accepted, and every
command-line mistake one line with exit status 2."""

from __future__ import annotations

import argparse

import pytest

from peft_puma.data.uml_mini import __main__ as uml_mini_command
from peft_puma.standin import __main__ as standin_command

COMMANDS = {"uml_mini": uml_mini_command, "standin": standin_command}
HIDDEN = {"--out", "--output-dir", "--install-missing", "--uml_mini", "--uml-mini", "--pool-scale", "--max-steps"}


@pytest.fixture(params=sorted(COMMANDS))
def command(request):
    return COMMANDS[request.param]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err and "usage:" not in err, err
    return lines[0]


def test_every_option_has_help_and_a_readable_metavar(command):
    parser = command.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help is not argparse.SUPPRESS, action.option_strings
        if action.nargs != 0:  # takes a value: DIR, INT, FLOAT, not the dest's upper case
            assert action.metavar in {"DIR", "INT", "FLOAT"}, action.option_strings


def test_help_shows_output_dir_and_hides_the_former_spellings(command, capsys):
    with pytest.raises(SystemExit) as done:
        command.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--output_dir DIR" in text and "--fonts_dir DIR" in text and "--fashion_mnist_dir DIR" in text
    shown = {word.strip("[],") for word in text.split() if word.startswith(("--", "[--"))}
    assert not shown & HIDDEN


@pytest.mark.parametrize("spelling", ["--output_dir", "--out", "--output-dir"])
def test_out_still_names_the_output_folder(command, spelling):
    assert command.build_parser().parse_args([spelling, "data/x"]).output_dir == "data/x"


def test_former_spellings_of_the_stand_ins_options_still_work():
    args = standin_command.build_parser().parse_args(
        ["--out", "o", "--uml-mini", "u", "--pool-scale", "0.5", "--max-steps", "3", "--no-eval"]
    )
    assert (args.output_dir, args.uml_mini_dir, args.pool_scale, args.max_steps, args.no_eval) == (
        "o",
        "u",
        0.5,
        3,
        True,
    )
    assert standin_command.build_parser().parse_args(["--out", "o", "--uml_mini", "v"]).uml_mini_dir == "v"


@pytest.mark.parametrize(
    ("argv", "closest"),
    [
        (["--outt", "x"], "--output_dir"),
        (["--output_dir", "x", "--font_dir", "f"], "--fonts_dir"),
        (["--output_dir", "x", "--fashion-mnist-dirs=f"], "--fashion_mnist_dir"),
        (["--output_dir", "x", "--sed", "1"], "--seed"),
        (["--output_dir", "x", "--output-dri=y"], "--output_dir"),
    ],
)
def test_an_unknown_option_is_one_line_naming_the_closest_one(command, capsys, argv, closest):
    assert command.main(argv) == 2
    line = _one_error_line(capsys)
    assert f"did you mean {closest}?" in line and f"{command.build_parser().prog} --help" in line


def test_a_mistyped_option_is_named_before_the_missing_required_one(command, capsys):
    """--outt x leaves --output_dir missing too; the typo is the cause, so it is what the line names."""
    assert command.main(["--outt", "x"]) == 2
    assert "unknown option --outt; did you mean --output_dir?" in _one_error_line(capsys)


def test_an_option_close_to_nothing_lists_the_options(command, capsys):
    assert command.main(["--output_dir", "x", "--zzzzzz"]) == 2
    line = _one_error_line(capsys)
    assert "unknown option --zzzzzz; the options are --output_dir, --seed" in line and "--out," not in line


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "the following arguments are required: --output_dir ("),
        (["--output_dir"], "argument --output_dir: expected one argument"),
        (["--output_dir", "x", "--seed", "one"], "argument --seed: invalid int value: 'one'"),
        (["--output_dir", "x", "stray"], "unexpected argument 'stray'"),
    ],
)
def test_other_command_line_mistakes_are_one_line_naming_the_option_once(command, capsys, argv, words):
    assert command.main(argv) == 2
    line = _one_error_line(capsys)
    assert words in line and "/--out" not in line


def test_a_negative_number_is_a_value_not_an_unknown_option():
    args = uml_mini_command.build_parser().parse_args(["--output_dir", "x", "--seed", "-1"])
    assert args.seed == -1
