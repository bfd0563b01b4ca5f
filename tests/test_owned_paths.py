"""peft_puma replaces only folders it wrote: a layout check refuses anything else, and a replacement is atomic."""

from __future__ import annotations

import os

import pytest

from peft_puma.errors import ForeignContentError
from peft_puma.owned_paths import (
    STAGING_MARKER,
    OwnedLayout,
    discard_staging,
    make_staging_folder,
    move_into_place,
    remove_stale_staging,
)

LAYOUT = OwnedLayout.of("a test build", signature=["manifest.json"], others=["data"])


def _own_build(folder, text: str = "old") -> None:
    os.makedirs(folder / "data", exist_ok=True)
    (folder / "manifest.json").write_text(text)


def test_missing_and_empty_folders_are_free_to_write(tmp_path):
    assert not LAYOUT.is_owned(str(tmp_path / "new"))
    (tmp_path / "empty").mkdir()
    assert not LAYOUT.is_owned(str(tmp_path / "empty"))


def test_a_folder_without_the_signature_is_refused_and_named(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my_notes.txt").write_text("keep me")
    with pytest.raises(ForeignContentError, match=r"mine is not empty and does not hold a test build"):
        LAYOUT.is_owned(str(tmp_path / "mine"))
    with pytest.raises(ForeignContentError):
        LAYOUT.remove(str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "my_notes.txt").read_text() == "keep me"


def test_a_build_with_foreign_files_beside_it_is_refused(tmp_path):
    _own_build(tmp_path / "build")
    (tmp_path / "build" / "my_notes.txt").write_text("keep me")
    with pytest.raises(ForeignContentError, match="my_notes.txt"):
        LAYOUT.remove(str(tmp_path / "build"))
    assert (tmp_path / "build" / "my_notes.txt").exists()


def test_clear_empties_only_an_owned_folder_and_keeps_what_it_is_told(tmp_path):
    folder = tmp_path / "build"
    _own_build(folder)
    (folder / "data" / "rows.bin").write_text("x")
    assert LAYOUT.clear(str(folder), keep=["manifest.json"]) == ["data"]
    assert sorted(os.listdir(folder)) == ["manifest.json"]
    (folder / "data").mkdir()
    (folder / "my_notes.txt").write_text("keep me")
    with pytest.raises(ForeignContentError, match=r"also files peft_puma did not write \(my_notes.txt\)"):
        LAYOUT.clear(str(folder))
    assert sorted(os.listdir(folder)) == ["data", "manifest.json", "my_notes.txt"]
    assert LAYOUT.clear(str(tmp_path / "new")) == []


def test_a_file_where_a_folder_is_expected_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ForeignContentError, match="is a file"):
        LAYOUT.is_owned(str(tmp_path / "file"))


def test_move_into_place_replaces_only_an_owned_build(tmp_path):
    final = tmp_path / "build"
    _own_build(final)
    staging = make_staging_folder(str(final))
    assert os.path.isfile(os.path.join(staging, STAGING_MARKER))
    os.makedirs(os.path.join(staging, "data"))
    with open(os.path.join(staging, "manifest.json"), "w") as handle:
        handle.write("new")
    move_into_place(staging, str(final), LAYOUT)
    assert (final / "manifest.json").read_text() == "new"
    assert not (final / STAGING_MARKER).exists()
    assert sorted(os.listdir(tmp_path)) == ["build"]  # no staging or aside folder left


def test_move_into_place_refuses_a_foreign_destination_and_keeps_it(tmp_path):
    final = tmp_path / "theirs"
    final.mkdir()
    (final / "notes.txt").write_text("keep me")
    staging = make_staging_folder(str(final))
    with pytest.raises(ForeignContentError):
        move_into_place(staging, str(final), LAYOUT)
    assert (final / "notes.txt").read_text() == "keep me"


def test_only_marked_staging_folders_are_cleaned_up(tmp_path):
    final = tmp_path / "build"
    stale = make_staging_folder(str(final))
    lookalike = tmp_path / ".build.partial-mine"  # same name pattern, but not made by peft_puma
    lookalike.mkdir()
    assert remove_stale_staging(str(final)) == [stale]
    assert lookalike.is_dir()
    discard_staging(str(lookalike))
    assert lookalike.is_dir()


def test_atomic_writes_and_staged_folders_get_the_usual_permissions(tmp_path):
    from peft_puma.owned_paths import write_json_atomically

    previous = os.umask(0o022)
    try:
        write_json_atomically(str(tmp_path / "result.json"), {"unified": 1})
        staging = make_staging_folder(str(tmp_path / "build"))
        move_into_place(staging, str(tmp_path / "build"), LAYOUT)
    finally:
        os.umask(previous)
    assert os.stat(tmp_path / "result.json").st_mode & 0o777 == 0o644  # not mkstemp's private 0o600
    assert os.stat(tmp_path / "build").st_mode & 0o777 == 0o755  # not mkdtemp's private 0o700
