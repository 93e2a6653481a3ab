"""Data: identity trees, overlap removal, pairs, generated demo data, and the DataModules."""

from amlit.data.casia import CasiaDataModule
from amlit.data.demo import SyntheticFacesDataModule
from amlit.data.packed import PackedShards
from amlit.data.recordio_source import RecordIO
from amlit.data.sources import ImageFolder, TrainingImages

__all__ = [
    "CasiaDataModule",
    "ImageFolder",
    "PackedShards",
    "RecordIO",
    "SyntheticFacesDataModule",
    "TrainingImages",
]
