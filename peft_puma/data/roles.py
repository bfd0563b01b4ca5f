"""The role of a row in a unified dataset, in one place for the data layer and the evaluation (docs/data.md).

``train`` rows are training images; a test row is ``both`` (leave-one-out: a query, and in the gallery), ``query`` or
``gallery`` (In-shop's separate lists, docs/spec.md section 7). Plain strings, no dependency: the evaluation imports
them without the data layer's ``datasets``.
"""

from __future__ import annotations

from typing import Final

ROLE_TRAIN: Final = "train"
ROLE_BOTH: Final = "both"
ROLE_QUERY: Final = "query"
ROLE_GALLERY: Final = "gallery"
TEST_ROLES: Final = (ROLE_BOTH, ROLE_QUERY, ROLE_GALLERY)
