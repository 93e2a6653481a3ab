"""Data: identity trees, overlap removal, pairs, generated demo data, and the DataModules.

The classes below are imported on first use (``amlit.data.PackedShards`` in a config works as before), so the data
tools (``amlit data pack``, ``align``, ...) that import ``amlit.data.<module>`` do not import Lightning.
"""

from importlib import import_module

_WHERE = {
    "CasiaDataModule": "amlit.data.casia",
    "ImageFolder": "amlit.data.sources",
    "PackedShards": "amlit.data.packed",
    "RecordIO": "amlit.data.recordio_source",
    "SyntheticFacesDataModule": "amlit.data.demo",
    "TrainingImages": "amlit.data.sources",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
