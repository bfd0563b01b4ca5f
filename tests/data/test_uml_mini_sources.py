"""UML-mini's sources without root: every apt failure is one line naming what to run, and a user's own copies of the
fonts and of Fashion-MNIST build the same benchmark as the Debian packages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from peft_puma.data.uml_mini import (
    GLYPH_ALPHABETS,
    MANIFEST,
    SPLITS,
    UMLMiniConfig,
    build_uml_mini,
    load_or_build_uml_mini,
    open_uml_mini,
)
from peft_puma.data.uml_mini import sources as uml_sources
from peft_puma.data.uml_mini.__main__ import main
from peft_puma.data.uml_mini.faces import FACE_ALPHABETS
from peft_puma.data.uml_mini.sources import (
    EMOJI_FILE,
    FASHION_DIR,
    FASHION_FILES,
    FASHION_MNIST_DIR_VARIABLE,
    FONTS_DIR_VARIABLE,
    SOURCES,
    DebianSource,
    SourceFolders,
    faces_drawing,
    faces_of,
)
from peft_puma.errors import DatasetLayoutError, PackageInstallError
from peft_puma.standin.pool import OTHER_SCRIPTS, SYMBOLS, PoolSize, build_pretraining_pool

TINY = UMLMiniConfig(seed=5, scale=0.03)
UML_MINI_FACES = set().union(*(faces_of(name) for name in GLYPH_ALPHABETS)) | {EMOJI_FILE}
ALL_FACES = {name for faces in FACE_ALPHABETS.values() for name in faces} | {EMOJI_FILE}


@pytest.fixture(autouse=True)
def no_source_variables(monkeypatch):
    """The tests say where the sources are; a developer's own variables must not decide it."""
    monkeypatch.delenv(FONTS_DIR_VARIABLE, raising=False)
    monkeypatch.delenv(FASHION_MNIST_DIR_VARIABLE, raising=False)


def _debian_faces() -> dict[str, str]:
    """File name -> path of every face the Debian packages installed here (the material a user would copy)."""
    paths = {}
    for folder in uml_sources.FONT_DIRS:
        for name in os.listdir(folder):
            paths.setdefault(name, os.path.join(folder, name))
    return paths


def _own_fonts(folder: Path, names: set[str]) -> Path:
    """A user's fonts folder in another layout than Debian's: the named face files spread over two subfolders (links
    to the installed files, so the test copies no 100 MB)."""
    installed = _debian_faces()
    for index, name in enumerate(sorted(names)):
        target = folder / ("upright" if index % 2 else "more/nested") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(installed[name])
    return folder


def _own_fashion(folder: Path, parts=("train",)) -> Path:
    folder.mkdir(parents=True)
    for part in parts:
        for name in FASHION_FILES[part]:
            (folder / name).symlink_to(os.path.join(FASHION_DIR, name))
    return folder


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# --- apt: every failure one line -------------------------------------------------------------------------------------


@pytest.fixture
def fashion_not_installed(monkeypatch, tmp_path):
    """The machine as if dataset-fashion-mnist were not installed (its sentinel points nowhere)."""
    absent = str(tmp_path / "not-installed" / "train-images-idx3-ubyte.gz")
    patched = tuple(DebianSource(s.package, absent) if s.package == "dataset-fashion-mnist" else s for s in SOURCES)
    monkeypatch.setattr(uml_sources, "SOURCES", patched)


def _fake_apt(tmp_path: Path, monkeypatch, script: str) -> Path:
    """An ``apt-get`` first on PATH that records its calls in ``calls`` and then runs ``script``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    apt = folder / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n{script}\n')
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "calls"


def _install(tmp_path, capsys) -> str:
    status = main(["--output_dir", str(tmp_path / "uml"), "--scale", "0.03", "--install_missing"])
    assert status == 2
    assert not (tmp_path / "uml").exists()
    return _one_error_line(capsys.readouterr().err)


UNABLE_TO_LOCATE = """
if [ "$1" = update ]; then echo "Hit:1 http://deb.debian.org/debian bookworm InRelease"; exit 0; fi
echo "Reading package lists..."
echo "E: Unable to locate package dataset-fashion-mnist" >&2
exit 100"""
OFFLINE = """
if [ "$1" = update ]; then
  echo "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving" >&2
  echo "W: Some index files failed to download. They have been ignored, or old ones used instead." >&2
  exit 0
fi
echo "E: Failed to fetch http://deb.debian.org/debian/pool/main/f/fashion.deb  Temporary failure resolving" >&2
echo "E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?" >&2
exit 100"""
LOCKED = """
echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
echo "E: Unable to lock directory /var/lib/apt/lists/" >&2
exit 100"""


def test_not_root_is_told_before_apt_runs_with_the_sudo_line_and_the_own_copies_option(
    fashion_not_installed, tmp_path, monkeypatch, capsys
):
    calls = _fake_apt(tmp_path, monkeypatch, "exit 0")
    monkeypatch.setattr(os, "geteuid", lambda: 4321)
    line = _install(tmp_path, capsys)
    assert not calls.exists()  # apt-get never ran
    assert "needs root" in line and "uid 4321" in line
    assert "`sudo apt-get update && sudo apt-get install -y --no-install-recommends dataset-fashion-mnist`" in line
    assert "--fashion_mnist_dir DIR" in line and "--fonts_dir" not in line  # only what replaces the missing package


def test_a_system_without_apt_get_is_one_line_naming_the_own_copies_options(
    fashion_not_installed, tmp_path, monkeypatch, capsys
):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    line = _install(tmp_path, capsys)
    assert "apt-get" in line and "does not have" in line and "dataset-fashion-mnist" in line
    assert "--fashion_mnist_dir DIR" in line and FASHION_MNIST_DIR_VARIABLE in line


@pytest.mark.parametrize(
    ("script", "words"),
    [
        (UNABLE_TO_LOCATE, ["`apt-get install -y --no-install-recommends dataset-fashion-mnist` failed with exit "
                            "status 100: E: Unable to locate package dataset-fashion-mnist"]),
        (OFFLINE, ["E: Failed to fetch", "E: Unable to fetch some archives", "offline?"]),
        (LOCKED, ["`apt-get update` failed with exit status 100: E: Could not get lock", "E: Unable to lock"]),
    ],
    ids=["unknown-package", "offline", "locked"],
)  # fmt: skip
def test_apt_failing_as_root_is_one_line_with_apts_errors_and_the_command_to_run(
    fashion_not_installed, tmp_path, monkeypatch, capsys, script, words
):
    calls = _fake_apt(tmp_path, monkeypatch, script)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    line = _install(tmp_path, capsys)
    assert calls.read_text().splitlines()[0] == "update"
    for word in words:
        assert word in line
    assert (
        "`apt-get update && apt-get install -y --no-install-recommends dataset-fashion-mnist`" in line
    )  # root: no sudo
    assert "--fashion_mnist_dir" in line


def test_an_install_that_succeeds_without_the_files_is_one_line(fashion_not_installed, tmp_path, monkeypatch, capsys):
    _fake_apt(tmp_path, monkeypatch, "exit 0")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    line = _install(tmp_path, capsys)
    assert "apt-get installed dataset-fashion-mnist" in line and "not-installed" in line


def test_a_missing_package_without_install_missing_is_one_line_with_every_way_out(tmp_path, capsys):
    with pytest.raises(DatasetLayoutError) as error:
        build_uml_mini(TINY, SourceFolders(root=str(tmp_path)))
    message = str(error.value)
    assert "\n" not in message
    assert "apt-get install -y --no-install-recommends fonts-dejavu-core" in message and "--install_missing" in message
    assert "--fonts_dir DIR" in message and FONTS_DIR_VARIABLE in message and "--fashion_mnist_dir DIR" in message


def test_apt_is_not_asked_for_what_the_own_folders_replace(tmp_path, monkeypatch, capsys):
    """Fonts and Fashion-MNIST from the user's folders, nothing from Debian: apt has nothing to install."""
    calls = _fake_apt(tmp_path, monkeypatch, "exit 1")
    monkeypatch.setattr(uml_sources, "SOURCES", ())  # no Debian package installed at all
    fonts, fashion = _own_fonts(tmp_path / "fonts", UML_MINI_FACES), _own_fashion(tmp_path / "fashion")
    assert main(["--output_dir", str(tmp_path / "uml"), "--scale", "0.03", "--fonts_dir", str(fonts),
                 "--fashion_mnist_dir", str(fashion), "--install_missing"]) == 0  # fmt: skip
    assert not calls.exists()


# --- own copies: the same files, the same build ----------------------------------------------------------------------


def test_face_table_is_what_the_installed_debian_fonts_draw():
    for name, alphabet in {**GLYPH_ALPHABETS, "symbols": SYMBOLS, **OTHER_SCRIPTS}.items():
        assert {os.path.basename(path) for path in faces_drawing(alphabet)} == faces_of(name), name
    installed = _debian_faces()
    for package, faces in FACE_ALPHABETS.items():
        assert set(faces) <= set(installed), package


def test_a_build_from_own_copies_equals_the_debian_build(tmp_path, capsys):
    debian, debian_manifest, _ = load_or_build_uml_mini(str(tmp_path / "debian"), TINY, sources=SourceFolders())
    fonts = _own_fonts(tmp_path / "my fonts", UML_MINI_FACES)
    fashion = _own_fashion(tmp_path / "fashion")
    (fonts / "extra").mkdir()
    (fonts / "extra" / "SomeOtherFace.ttf").symlink_to(_debian_faces()["NotoSansThai-Regular.ttf"])  # not looked at
    out = tmp_path / "own"
    assert main(["--output_dir", str(out), "--seed", str(TINY.seed), "--scale", str(TINY.scale), "--fonts_dir",
                 str(fonts), "--fashion_mnist_dir", str(fashion)]) == 0  # fmt: skip
    own, own_manifest = open_uml_mini(str(out))
    for split in SPLITS:
        assert own[split].data.equals(debian[split].data), split  # rows and PNG bytes, so every pixel
    assert np.array_equal(np.asarray(own["test"][0]["image"]), np.asarray(debian["test"][0]["image"]))
    assert own_manifest["sources"] == {"fonts": str(fonts), "fashion_mnist": str(fashion)}
    assert "Debian" in debian_manifest["sources"]["fonts"]
    unsourced = {key: value for key, value in own_manifest.items() if key != "sources"}
    assert unsourced == {key: value for key, value in debian_manifest.items() if key != "sources"}


def test_a_build_of_the_same_config_is_reused_whatever_its_sources(tmp_path, capsys):
    out = str(tmp_path / "uml")
    load_or_build_uml_mini(out, TINY, sources=SourceFolders())
    stamp = os.path.getmtime(os.path.join(out, MANIFEST))
    fonts = _own_fonts(tmp_path / "fonts", UML_MINI_FACES)
    _, _, cached = load_or_build_uml_mini(out, TINY, sources=SourceFolders(fonts_dir=str(fonts)))
    assert cached and os.path.getmtime(os.path.join(out, MANIFEST)) == stamp


def test_the_environment_variables_reach_a_build_that_training_starts(tmp_path, monkeypatch):
    """``train --uml_mini_dir`` opens the folder with open_uml_mini, which builds the default where it is missing."""
    fonts = _own_fonts(tmp_path / "fonts", UML_MINI_FACES)
    fashion = _own_fashion(tmp_path / "fashion")
    monkeypatch.setenv(FONTS_DIR_VARIABLE, str(fonts))
    monkeypatch.setenv(FASHION_MNIST_DIR_VARIABLE, str(fashion))
    requested = []
    original = uml_sources.require_packages
    monkeypatch.setattr(uml_sources, "require_packages", lambda p, *a, **k: requested.append(p) or original(p, *a, **k))
    _, manifest = open_uml_mini(str(tmp_path / "new"), config=TINY)  # train passes no sources: the variables count
    assert manifest["sources"] == {"fonts": str(fonts), "fashion_mnist": str(fashion)}
    assert requested == [[]]  # no Debian package was needed


def test_options_win_over_the_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv(FONTS_DIR_VARIABLE, "/from/the/environment")
    assert SourceFolders.from_environment().fonts_dir == "/from/the/environment"
    assert SourceFolders.from_environment(fonts_dir=str(tmp_path)).fonts_dir == str(tmp_path)
    monkeypatch.setenv(FONTS_DIR_VARIABLE, "")
    assert SourceFolders.from_environment() == SourceFolders()


def test_missing_font_files_are_listed_by_package_in_one_line(tmp_path, capsys):
    kept = UML_MINI_FACES - {"cmunrm.ttf", "cmunbx.ttf", EMOJI_FILE}
    fonts = _own_fonts(tmp_path / "fonts", kept)
    fashion = _own_fashion(tmp_path / "fashion")
    assert main(["--output_dir", str(tmp_path / "uml"), "--scale", "0.03", "--fonts_dir", str(fonts),
                 "--fashion_mnist_dir", str(fashion)]) == 2  # fmt: skip
    line = _one_error_line(capsys.readouterr().err)
    assert f"the fonts folder {fonts} lacks 3 of the font files" in line
    assert "fonts-cmu: cmunbx.ttf, cmunrm.ttf; fonts-noto-color-emoji: NotoColorEmoji.ttf" in line
    assert not (tmp_path / "uml").exists()


def test_missing_fashion_files_are_listed_in_one_line(tmp_path, capsys):
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    (fashion / "train-images-idx3-ubyte.gz").symlink_to(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz"))
    assert main(["--output_dir", str(tmp_path / "uml"), "--scale", "0.03", "--fashion_mnist_dir", str(fashion)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"the Fashion-MNIST folder {fashion} lacks train-labels-idx1-ubyte.gz (" in line


def test_a_folder_that_does_not_exist_is_one_line(tmp_path, capsys):
    assert main(["--output_dir", str(tmp_path / "uml"), "--fonts_dir", str(tmp_path / "nowhere")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(tmp_path / "nowhere") in line and "--fonts_dir or PEFT_PUMA_FONTS_DIR" in line


def test_a_copy_that_draws_other_letters_than_the_debian_file_is_refused(tmp_path):
    """Another version of a file (here: another face under DejaVuSans.ttf's name) would change the typeface pool."""
    fonts = _own_fonts(tmp_path / "fonts", UML_MINI_FACES - {"DejaVuSans.ttf"})
    (fonts / "DejaVuSans.ttf").symlink_to(_debian_faces()["NotoSansThai-Regular.ttf"])
    with pytest.raises(DatasetLayoutError, match="DejaVuSans.ttf does not draw every latin letter") as error:
        build_uml_mini(TINY, SourceFolders(fonts_dir=str(fonts)))
    assert "another version" in str(error.value) and "\n" not in str(error.value)


def test_two_different_files_of_one_name_are_refused_and_identical_ones_accepted(tmp_path):
    fonts = _own_fonts(tmp_path / "fonts", UML_MINI_FACES)
    (fonts / "copy").mkdir()
    (fonts / "copy" / "cmunrm.ttf").symlink_to(_debian_faces()["cmunrm.ttf"])  # the same file twice: fine
    assert uml_sources.font_files(str(fonts))["cmunrm.ttf"]
    other = tmp_path / "other"
    _own_fonts(other, UML_MINI_FACES)
    (other / "copy").mkdir()
    (other / "copy" / "cmunrm.ttf").symlink_to(_debian_faces()["cmunbx.ttf"])
    with pytest.raises(DatasetLayoutError, match="two different files named cmunrm.ttf"):
        uml_sources.font_files(str(other))


def test_the_stand_in_pool_from_own_copies_equals_the_debian_pool(tmp_path):
    size = PoolSize().scaled(0.02)
    fonts = _own_fonts(tmp_path / "fonts", ALL_FACES)
    fashion = _own_fashion(tmp_path / "fashion", parts=("t10k",))
    debian = build_pretraining_pool(1, size, SourceFolders())
    own = build_pretraining_pool(1, size, SourceFolders(fonts_dir=str(fonts), fashion_mnist_dir=str(fashion)))
    assert own.class_names == debian.class_names
    assert np.array_equal(own.labels, debian.labels) and np.array_equal(own.images, debian.images)


def test_a_package_install_error_is_a_user_mistake_with_status_2():
    assert PackageInstallError("x").exit_status == 2 and isinstance(PackageInstallError("x"), ValueError)


def test_manifest_on_disk_records_the_sources(tmp_path):
    out = tmp_path / "uml"
    load_or_build_uml_mini(str(out), TINY, sources=SourceFolders())
    assert json.loads((out / MANIFEST).read_text())["sources"]["fashion_mnist"].startswith("Debian package")


def test_the_section_the_errors_point_to_exists_and_names_the_variables():
    page, section = uml_sources.OWN_COPIES_DOC.split(", ")[0], uml_sources.OWN_COPIES_DOC.split('"')[1]
    docs = (Path(__file__).parents[2] / page).read_text(encoding="utf-8")
    assert f"## {section}\n" in docs
    assert FONTS_DIR_VARIABLE in docs and FASHION_MNIST_DIR_VARIABLE in docs
