"""The contact sheet of ``query --grid``: its pixel size, the frames that mark the query and right or wrong results,
and the rule that it replaces only a grid of its own (docs/search.md, "The grid")."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from peft_puma.errors import InvalidConfigError
from peft_puma.evaluation.grid import CAPTION, COLOURS, FRAME, GAP, Tile, contact_sheet, grid_size
from peft_puma.search.cli import main

ROWS = [0, 13, 30]


def _cell(thumbnail: int) -> tuple[int, int]:
    """One tile: the thumbnail in its frame, a gap around it, the caption under it."""
    side = thumbnail + 2 * FRAME + 2 * GAP
    return side, side + CAPTION


def _frame_pixel(sheet: Image.Image, row: int, column: int, thumbnail: int) -> tuple[int, int, int]:
    width, height = _cell(thumbnail)
    return sheet.getpixel((column * width + GAP + 1, row * height + GAP + 1))


@pytest.mark.parametrize("thumbnail", [64, 96])
def test_query_grid_is_rows_by_columns_of_thumbnails_with_coloured_frames(
    tiny, test_index, tmp_path, capsys, thumbnail
):
    grid, output = tmp_path / "grid.png", tmp_path / "results.json"
    argv = ["query", "--index", test_index, "--query_dataset", tiny["dataset"], "--query_rows", *map(str, ROWS)]
    argv += ["--k", "4", "--grid", str(grid), "--output", str(output), "--thumbnail_size", str(thumbnail)]
    assert main(argv) == 0
    assert f"grid of 3 x 5 tiles written to {grid}" in capsys.readouterr().err
    results = json.loads(output.read_text())
    with Image.open(grid) as sheet:
        width, height = _cell(thumbnail)
        assert sheet.size == (5 * width, 3 * height) == grid_size(3, 5, thumbnail)
        assert sheet.format == "PNG" and sheet.text["Software"] == "peft_puma.search"
        sheet = sheet.convert("RGB")
        for row, query in enumerate(results["queries"]):
            assert _frame_pixel(sheet, row, 0, thumbnail) == COLOURS["query"]
            for column, result in enumerate(query["results"], start=1):
                expected = COLOURS["match" if result["match"] else "miss"]
                assert _frame_pixel(sheet, row, column, thumbnail) == expected
    colours = {result["match"] for query in results["queries"] for result in query["results"]}
    assert colours == {True, False}  # both frames were checked


def test_results_of_unknown_labels_have_grey_frames_and_missing_images_blank_tiles():
    image = Image.new("RGB", (30, 10), (250, 0, 0))
    sheet = contact_sheet([[Tile(image, "query", frame="query"), Tile(None, "#1 0.5")], [Tile(image, "query")]], 64)
    assert sheet.size == grid_size(2, 2, 64)
    assert _frame_pixel(sheet, 0, 1, 64) == COLOURS[None]
    width, height = _cell(64)
    inside = (width + GAP + FRAME + 32, GAP + FRAME + 32)
    assert sheet.getpixel(inside) == (225, 225, 225)  # the blank of a file gone since indexing
    assert sheet.getpixel((GAP + FRAME + 32, GAP + FRAME + 32)) == (250, 0, 0)  # the wide image, scaled to fit
    assert sheet.getpixel((GAP + FRAME + 32, GAP + FRAME + 2)) == (255, 255, 255)  # ... and centred on white
    assert sheet.getpixel((width + GAP + 1, height + GAP + 1)) == (255, 255, 255)  # a short row ends blank


def test_thumbnails_are_at_least_64_pixels():
    with pytest.raises(InvalidConfigError, match="at least 64 pixels"):
        contact_sheet([[Tile(None, "query", frame="query")]], 63)


def test_long_captions_are_cut_short_rather_than_run_into_the_next_tile():
    caption = "a_very_long_file_name_of_a_holiday_photo.jpg"
    sheet = contact_sheet([[Tile(None, "query", caption, "query"), Tile(None, "")]], 64)
    width, height = _cell(64)
    caption_area = range(height - CAPTION, height)
    assert all(sheet.getpixel((width + x, y)) == (255, 255, 255) for x in range(GAP) for y in caption_area)
    assert any(sheet.getpixel((x, y)) != (255, 255, 255) for x in range(width) for y in caption_area)  # drawn


def _query_argv(tiny, test_index) -> list[str]:
    return ["query", "--index", test_index, "--query_dataset", tiny["dataset"], "--query_rows", "0", "--k", "2"]


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""  # refused before any search ran
    return captured.err.strip().splitlines()[-1]


@pytest.mark.parametrize("name", ["grid.jpg", "grid.JPEG"])
def test_a_grid_is_written_in_the_format_its_name_says(tiny, test_index, tmp_path, capsys, name):
    grid = tmp_path / name
    for _ in range(2):  # the second time over its own file
        assert main([*_query_argv(tiny, test_index), "--grid", str(grid)]) == 0
    with Image.open(grid) as sheet:
        assert sheet.format == "JPEG" and sheet.info["comment"] == b"peft_puma.search"
    capsys.readouterr()


def test_a_grid_name_of_another_format_is_refused(tiny, test_index, tmp_path, capsys):
    line = _error(capsys, [*_query_argv(tiny, test_index), "--grid", str(tmp_path / "grid.gif")])
    assert "give a name ending in .png, .jpg, .jpeg" in line
    assert not (tmp_path / "grid.gif").exists()


def test_missing_parent_folders_of_a_grid_are_created_as_for_every_output(tiny, test_index, tmp_path, capsys):
    grid = tmp_path / "new" / "deeper" / "grid.png"
    assert main([*_query_argv(tiny, test_index), "--grid", str(grid)]) == 0
    assert Image.open(grid).format == "PNG"
    capsys.readouterr()


def test_a_regular_file_in_the_grids_path_is_named_as_such(tiny, test_index, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    line = _error(capsys, [*_query_argv(tiny, test_index), "--grid", str(tmp_path / "afile" / "grid.png")])
    assert f"{tmp_path / 'afile'} is a regular file, not a folder" in line
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_grid_where_no_file_can_be_made_is_one_line_before_the_search(tiny, test_index, capsys):
    line = _error(capsys, [*_query_argv(tiny, test_index), "--grid", "/proc/peft_puma_grid.png"])
    assert line.startswith("error: The grid '/proc/peft_puma_grid.png' cannot be written: no file can be made in")


def test_a_results_files_missing_parents_are_made_and_a_file_in_its_path_is_named(tiny, test_index, tmp_path, capsys):
    results = tmp_path / "new" / "deeper" / "results.json"  # the rule of every output, JSON results included
    assert main([*_query_argv(tiny, test_index), "--output", str(results)]) == 0
    assert json.loads(results.read_text(encoding="utf-8"))["k"] == 2
    capsys.readouterr()
    (tmp_path / "afile").write_text("mine")
    line = _error(capsys, [*_query_argv(tiny, test_index), "--output", str(tmp_path / "afile" / "results.json")])
    assert f"{tmp_path / 'afile'} is a regular file, not a folder" in line
    assert (tmp_path / "afile").read_text() == "mine"
