"""Data: identity trees, overlap removal, pairs, generated demo data, and the DataModules."""

from amlit.data.casia import CasiaDataModule
from amlit.data.demo import SyntheticFacesDataModule

__all__ = ["CasiaDataModule", "SyntheticFacesDataModule"]
