"""Readers: one per data layout, each returning a Manifest."""

from mammalnet.data.sources.folder import read_folder
from mammalnet.data.sources.labels_csv import read_labels_csv

__all__ = ["read_folder", "read_labels_csv"]
