"""Real-world folders: every problem stops the build with a message naming the file and what to do."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import fake_layouts as fl
import numpy as np
import pytest
from PIL import Image

from peft_puma.data import DATASET_SPECS, build_unified_dataset, build_unified_dataset_with_report
from peft_puma.data.images import check_image
from peft_puma.data.specs.base import ParseOptions
from peft_puma.errors import DatasetLayoutError, InvalidConfigError


def _rewrite(path: Path, keep) -> None:  # noqa: ANN001 - a line predicate
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("".join(line + "\n" for line in lines if keep(line)), encoding="utf-8")


def _noise_jpeg(path: Path) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@pytest.fixture
def cub(tmp_path: Path) -> Path:
    return fl.make_cub(tmp_path) / "CUB_200_2011"


def test_missing_list_file_is_named_with_what_to_do(cub: Path) -> None:
    (cub / "image_class_labels.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"cub .*missing file .*image_class_labels\.txt.*Re-extract"):
        build_unified_dataset({"cub": cub})


def test_missing_image_names_the_file_and_the_list_line(cub: Path) -> None:
    missing = cub / "images" / "150.Bird_150" / "Bird_150_0000.jpg"
    missing.unlink()
    with pytest.raises(DatasetLayoutError) as error:
        build_unified_dataset({"cub": cub})
    message = str(error.value)
    assert str(missing) in message and "images.txt line 299" in message and "file not found" in message
    assert "skip_bad_images=True" in message


def test_corrupt_and_truncated_images_are_reported(cub: Path) -> None:
    corrupt = cub / "images" / "010.Bird_10" / "Bird_10_0000.jpg"
    corrupt.write_bytes(b"this is not a jpeg at all")
    truncated = cub / "images" / "020.Bird_20" / "Bird_20_0001.jpg"
    truncated.write_bytes(_noise_jpeg(truncated)[:1500])
    with pytest.raises(DatasetLayoutError) as error:
        build_unified_dataset({"cub": cub})
    message = str(error.value)
    assert "2 unusable image(s)" in message
    assert f"{corrupt} (listed in {cub / 'images.txt'} line 19): not a recognised image format" in message
    assert f"{truncated} (listed in" in message and "truncated" in message


def test_skip_bad_images_leaves_them_out_and_counts_them(cub: Path, caplog: pytest.LogCaptureFixture) -> None:
    (cub / "images" / "010.Bird_10" / "Bird_10_0000.jpg").write_bytes(b"\xff\xd8 broken")
    (cub / "images" / "150.Bird_150" / "Bird_150_0000.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="peft_puma.data"):
        unified, report = build_unified_dataset_with_report({"cub": cub}, skip_bad_images=True, allow_singletons=True)
    assert report.num_skipped == 2
    assert {Path(b.path).name for b in report.skipped} == {"Bird_10_0000.jpg", "Bird_150_0000.jpg"}
    assert (unified["train"].num_rows, unified["test"].num_rows) == (199, 199)
    assert "skipped 2 unusable image(s)" in caplog.text


def test_truncated_file_is_caught_only_by_the_full_check(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(_noise_jpeg(path)[:1500])
    assert check_image(path, "exists") is None
    assert check_image(path, "header") is None
    assert "truncated" in check_image(path, "full")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert check_image(tmp_path / "empty.jpg") == "file is empty (0 bytes)"
    with pytest.raises(InvalidConfigError, match="check_images"):
        check_image(path, "thorough")


def test_wrong_folder_points_to_the_right_one(cub: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"wrong folder layout: missing images\.txt.*point roots\['cub'\] at"):
        build_unified_dataset({"cub": cub / "images"})
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        build_unified_dataset({"cub": cub / "nowhere"})


def test_other_dataset_folder_is_rejected_by_its_layout(tmp_path: Path) -> None:
    root = fl.make_dogs(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"flowers .*missing imagelabels\.mat"):
        build_unified_dataset({"flowers": root})


def test_empty_class_is_named(cub: Path) -> None:
    _rewrite(cub / "images.txt", lambda line: "/Bird_5_" not in line)
    with pytest.raises(DatasetLayoutError, match=r"1 declared class\(es\) have no usable image: 5 \(005\.Bird_5\)"):
        build_unified_dataset({"cub": cub})


def test_empty_breed_folder_is_named(tmp_path: Path) -> None:
    root = fl.make_dogs(tmp_path)
    folder = next(p for p in sorted((root / "Images").iterdir()) if p.name.endswith("-Breed_7"))
    for image in folder.iterdir():
        image.unlink()
    with pytest.raises(DatasetLayoutError, match=r"no usable image: n\d{8}-Breed_7 \(Breed_7\)"):
        build_unified_dataset({"dogs": root})


def test_single_image_test_class_is_refused_unless_allowed(cub: Path) -> None:
    _rewrite(cub / "images.txt", lambda line: "Bird_150_0001" not in line)
    with pytest.raises(DatasetLayoutError, match=r"class 150 \(a single image\).*allow_singletons=True"):
        build_unified_dataset({"cub": cub})
    unified = build_unified_dataset({"cub": cub}, allow_singletons=True)
    assert unified["test"].num_rows == 199


def test_single_image_training_class_is_kept_with_a_warning(cub: Path, caplog: pytest.LogCaptureFixture) -> None:
    _rewrite(cub / "images.txt", lambda line: "Bird_3_0001" not in line)
    with caplog.at_level(logging.WARNING, logger="peft_puma.data"):
        unified = build_unified_dataset({"cub": cub})
    assert unified["train"].num_rows == 199
    assert "1 training class(es) have a single image" in caplog.text


def test_inshop_query_without_gallery_is_refused(fast_tmp_path: Path) -> None:
    root = fl.make_inshop(fast_tmp_path / "inshop", train_items=3997, test_items=3985)
    path = root / "list_eval_partition.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines = [line.replace("gallery", "query") if "id_00004000/" in line else line for line in lines]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetLayoutError, match=r"class 'id_00004000' \(2 query image\(s\) but no gallery image\)"):
        DATASET_SPECS["inshop"].parse(root, ParseOptions(check_images="exists"))


def test_inshop_truncated_partition_list_is_detected(tmp_path: Path) -> None:
    root = fl.make_inshop(tmp_path, train_items=3, test_items=2)
    _rewrite(root / "list_eval_partition.txt", lambda line: "id_00000005" not in line)
    with pytest.raises(DatasetLayoutError, match="announces 10 images on its first line but lists 8"):
        DATASET_SPECS["inshop"].parse(root)


def test_malformed_list_line_is_quoted(cub: Path) -> None:
    with open(cub / "images.txt", "a", encoding="utf-8") as handle:
        handle.write("12345\n")
    with pytest.raises(DatasetLayoutError, match=r"malformed line 401 of .*images\.txt.*'12345'"):
        build_unified_dataset({"cub": cub})


def test_wrong_number_of_classes_reports_the_table(tmp_path: Path) -> None:
    root = fl.make_dogs(tmp_path, num_classes=119)
    with pytest.raises(DatasetLayoutError, match=r"found 119 classes with images.*60 train \+ 60 test = 120"):
        build_unified_dataset({"dogs": root})


def test_nabirds_missing_leaf_is_caught_by_the_leaf_count(tmp_path: Path) -> None:
    root = fl.make_nabirds(tmp_path, num_leaves=554)
    with pytest.raises(DatasetLayoutError, match=r"found 554 classes with images.*278 train \+ 277 test = 555"):
        build_unified_dataset({"nabirds": root})


def test_stray_files_in_the_dogs_images_folder_are_not_ignored(tmp_path: Path) -> None:
    root = fl.make_dogs(tmp_path)
    folder = sorted((root / "Images").iterdir())[3]
    (folder / "notes.txt").write_text("x")
    with pytest.raises(DatasetLayoutError, match=r"holds files that are not images \(\['notes\.txt'\]\)"):
        build_unified_dataset({"dogs": root})


def test_cars_devkit_without_test_labels_explains_the_missing_file(tmp_path: Path) -> None:
    root = fl.make_cars_devkit(tmp_path)
    (root / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(
        DatasetLayoutError, match=r"missing file .*cars_test_annos_withlabels\.mat.*released separately"
    ):
        build_unified_dataset({"cars": root})


def test_damaged_mat_file_is_named(tmp_path: Path) -> None:
    root = fl.make_flowers(tmp_path)
    (root / "imagelabels.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage")
    with pytest.raises(DatasetLayoutError, match=r"cannot read 'labels' from .*imagelabels\.mat"):
        build_unified_dataset({"flowers": root})


def test_sop_lists_sharing_a_class_are_refused(tmp_path: Path) -> None:
    root = fl.make_sop(tmp_path, train_classes=3, test_classes=3) / "Stanford_Online_Products"
    with open(root / "Ebay_test.txt", "a", encoding="utf-8") as handle:
        handle.write("99 2 1 cat3_final/2_0.JPG\n")
    with pytest.raises(DatasetLayoutError, match=r"1 class\(es\) appear in both the training and the test lists"):
        DATASET_SPECS["sop"].parse(root)


def test_sop_without_header_is_not_the_original_list(tmp_path: Path) -> None:
    root = fl.make_sop(tmp_path, train_classes=3, test_classes=3) / "Stanford_Online_Products"
    _rewrite(root / "Ebay_train.txt", lambda line: not line.startswith("image_id"))
    with pytest.raises(DatasetLayoutError, match="does not start with the header line"):
        DATASET_SPECS["sop"].parse(root)


def test_aircraft_unknown_variant_is_named(tmp_path: Path) -> None:
    root = fl.make_aircraft(tmp_path)
    data = root / "fgvc-aircraft-2013b" / "data"
    with open(data / "images_variant_val.txt", "a", encoding="utf-8") as handle:
        handle.write("0099999 Spruce Goose\n")
    with pytest.raises(DatasetLayoutError, match=r"images_variant_val\.txt line \d+ names variant 'Spruce Goose'"):
        build_unified_dataset({"aircraft": root})


def test_copied_folder_still_reads(tmp_path: Path, cub: Path) -> None:
    copy = shutil.copytree(cub, tmp_path / "copy")
    assert build_unified_dataset({"cub": copy}, check_images="header")["train"].num_rows == 200
