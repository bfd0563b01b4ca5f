"""Reading a YAML config file: a key written twice is refused, naming the key and both lines, instead of YAML's
silent rule that the last one wins."""

from __future__ import annotations

import pytest

from peft_puma.errors import InvalidConfigError
from peft_puma.training import load_config


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_a_key_given_twice_is_refused_naming_the_key_and_both_lines(tmp_path):
    path = _write(tmp_path, "output_dir: o\nlearning_rate: 0.001\nbackbone: b\nlearning_rate: 0.5\n")
    with pytest.raises(InvalidConfigError, match=r"gives the key 'learning_rate' twice \(lines 2 and 4\)"):
        load_config(path, [])


def test_two_puma_blocks_are_refused(tmp_path):
    path = _write(tmp_path, "output_dir: o\npuma:\n  r: 8\nbackbone: b\npuma:\n  keep_prob: 1.0\n")
    with pytest.raises(InvalidConfigError, match=r"gives the key 'puma' twice \(lines 2 and 5\)"):
        load_config(path, [])


def test_an_entry_given_twice_inside_a_mapping_is_refused(tmp_path):
    path = _write(tmp_path, "output_dir: o\npuma:\n  r: 8\n  r: 4\n")
    with pytest.raises(InvalidConfigError, match=r"gives the key 'r' twice \(lines 3 and 4\)"):
        load_config(path, [])


def test_a_yaml_merge_key_is_still_accepted(tmp_path):
    path = _write(tmp_path, "output_dir: o\nbackbone: b\ndataset_path: d\npuma:\n  <<: {r: 8}\n  keep_prob: 1.0\n")
    assert load_config(path, []).puma["r"] == 8


def test_the_command_line_exits_2_on_a_duplicate_key(tmp_path, capsys):
    from peft_puma import train

    path = _write(tmp_path, "output_dir: o\nseed: 1\nseed: 2\n")
    assert train.main(["--config", path]) == 2
    error = capsys.readouterr().err
    assert "gives the key 'seed' twice (lines 2 and 3)" in error and "Traceback" not in error
