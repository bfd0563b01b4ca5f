"""Specs of the eight datasets of the unified benchmark (docs/data.md), one module per dataset.

:data:`DATASET_SPECS` maps each short name to its spec, in the order of the table in docs/data.md; that order also sets
the label blocks of a union (:func:`peft_puma.data.builder.union_parsed`).
"""

from __future__ import annotations

from .aircraft import AircraftSpec
from .base import DatasetSpec, Entry, ParsedDataset, ParsedSplit, ParseOptions
from .cars import CarsSpec
from .cub import CUBSpec
from .dogs import DogsSpec
from .flowers import FlowersSpec
from .inshop import InShopSpec
from .nabirds import NABirdsSpec
from .sop import SOPSpec

DATASET_SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        CUBSpec(),
        CarsSpec(),
        SOPSpec(),
        InShopSpec(),
        NABirdsSpec(),
        DogsSpec(),
        FlowersSpec(),
        AircraftSpec(),
    )
}

__all__ = [
    "DATASET_SPECS",
    "AircraftSpec",
    "CUBSpec",
    "CarsSpec",
    "DatasetSpec",
    "DogsSpec",
    "Entry",
    "FlowersSpec",
    "InShopSpec",
    "NABirdsSpec",
    "ParseOptions",
    "ParsedDataset",
    "ParsedSplit",
    "SOPSpec",
]
