"""The command lines of evaluate, embed, search and the timm converter: one naming rule (a folder is --output_dir, a
file --output, k of Recall@k is --eval_ks), old spellings kept as hidden aliases, and every mistake one line with a
did-you-mean and exit status 2."""

from __future__ import annotations

import pytest

from peft_puma import embed, evaluate
from peft_puma.backbones.timm_vit import __main__ as timm_command
from peft_puma.config.cli import CommandParser, add_option
from peft_puma.errors import InvalidConfigError
from peft_puma.search import cli as search_cli


def _help(parser) -> str:
    return " ".join(parser.format_help().split())


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: "), err
    return err


def test_evaluate_takes_eval_ks_and_still_its_old_ks():
    parser = evaluate.build_parser()
    _, args = parser.parse_config_args(["--eval_ks", "1", "4"])
    _, old = parser.parse_config_args(["--ks", "1", "4"])
    assert args.eval_ks == old.eval_ks == [1, 4]
    assert "--eval_ks INT ..." in _help(parser) and "--ks" not in _help(parser)


def test_search_index_writes_output_dir_and_still_takes_its_old_output():
    parser = search_cli.build_parser()
    base = ["index", "--adapter", "run", "--images", "photos"]
    assert parser.parse_args([*base, "--output_dir", "idx"]).output_dir == "idx"
    assert parser.parse_args([*base, "--output", "idx"]).output_dir == "idx"
    index_help = _help(parser._subparsers._group_actions[0].choices["index"])
    assert "--output_dir DIR" in index_help and "--output " not in index_help and "--output," not in index_help
    query = parser.parse_args(["query", "--index", "idx", "--images", "q.jpg", "--output", "found.json"])
    assert query.output == "found.json"  # a file stays --output


def test_the_timm_converter_writes_output_dir_and_still_takes_its_old_out():
    parser = timm_command.build_parser()
    assert parser.parse_args(["timm/vit", "--output_dir", "vit"]).output_dir == "vit"
    assert parser.parse_args(["timm/vit", "--out", "vit", "--num-heads", "2"]).output_dir == "vit"
    text = _help(parser)
    assert "--output_dir DIR" in text and "--out " not in text and "--num-heads" not in text


def test_a_hidden_spelling_never_shows_in_an_error(capsys):
    assert timm_command.main(["timm/vit"]) == 2
    line = _one_line(capsys)
    assert "the following arguments are required: --output_dir" in line and "--out" not in line.replace(
        "--output_dir", ""
    )


@pytest.mark.parametrize(
    ("main", "argv", "unknown", "guess"),
    [
        (embed.main, ["--adapter", "a", "--images", "p", "--outptu", "e.safetensors"], "--outptu", "--output"),
        (
            search_cli.main,
            ["index", "--adapter", "a", "--images", "p", "--output_dri", "i"],
            "--output_dri",
            "--output_dir",
        ),
        (search_cli.main, ["query", "--index", "i", "--images", "q.jpg", "--kk", "3"], "--kk", "--k"),
        (timm_command.main, ["timm/vit", "--output_dir", "v", "--with_haed"], "--with_haed", "--with_head"),
        (evaluate.main, ["--adapter", "a", "--batchsize", "3"], "--batchsize", "--batch_size"),
    ],
)
def test_an_unknown_option_of_any_command_is_one_line_with_a_did_you_mean(main, argv, unknown, guess, capsys):
    assert main(argv) == 2
    assert f"['{unknown}'] (did you mean {guess}?)" in _one_line(capsys)


def test_argparse_mistakes_are_one_line_errors_with_status_2(capsys):
    assert embed.main(["--adapter", "a", "--images", "p", "--output", "e", "--batch_size", "many"]) == 2
    assert "argument --batch_size: invalid int value: 'many'" in _one_line(capsys)
    assert evaluate.main(["--adapter", "a", "--split", "train"]) == 2
    assert "argument --split: invalid choice: 'train'" in _one_line(capsys)
    assert search_cli.main(["lookup"]) == 2
    assert "invalid choice: 'lookup'" in _one_line(capsys)


def test_options_are_matched_whole_not_by_prefix():
    parser = CommandParser(prog="x")
    parser.add_argument("--batch_size", type=int)
    with pytest.raises(InvalidConfigError, match=r"\['--batch'\] \(did you mean --batch_size\?\)"):
        parser.parse_args(["--batch", "3"])


def test_help_shows_lists_plainly_and_hides_old_spellings():
    parser = CommandParser(prog="x")
    add_option(parser, "--new_name", hidden=["--old_name"], type=int, nargs="+", metavar="INT", help="a list")
    text = _help(parser)
    assert "--new_name INT ..." in text and "[INT ...]" not in text and "--old_name" not in text
    assert parser.parse_args(["--old_name", "1", "2"]).new_name == [1, 2]
