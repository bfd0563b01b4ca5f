"""Packages export their public names lazily: importing the package loads none of them, a name loads its module."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("package", "name", "module"),
    [
        ("peft_puma.backbones", "load_timm_vit", "peft_puma.backbones.timm_vit"),
        ("peft_puma.data", "column_values", "peft_puma.data.builder"),
    ],
)
def test_a_package_import_loads_no_export_until_one_is_used(package, name, module):
    code = (
        f"import sys, {package} as p; before = {module!r} in sys.modules; getattr(p, {name!r}); "
        f"print(before, {name!r} in vars(p), {name!r} in dir(p))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True", "True"]


def test_an_unknown_name_is_an_attribute_error_naming_the_package():
    import peft_puma.data

    with pytest.raises(AttributeError, match="module 'peft_puma.data' has no attribute 'nope'"):
        peft_puma.data.nope  # noqa: B018
