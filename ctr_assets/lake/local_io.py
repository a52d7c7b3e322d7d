"""pyiceberg's file IO for the table of a local storage folder, bound by the folder's rule: a path whose
symbolic links lead outside the folder is never opened (pyiceberg writes metadata and manifests itself, so
the storage's own checks do not see those paths). pyiceberg loads it by name from the `py-io-impl` property
of the table's catalog."""

from __future__ import annotations

import os
from pathlib import Path

from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.typedef import EMPTY_DICT, Properties

from ctr_assets.lake.storage import StorageError

ROOT = "ctr-assets.storage-root"  # the catalog property naming the folder


class LocalFileIO(PyArrowFileIO):
    @staticmethod
    def parse_location(location: str, properties: Properties = EMPTY_DICT) -> tuple[str, str, str]:
        """Where `location` really is; refused when its links lead out of the storage folder."""
        scheme, netloc, path = PyArrowFileIO.parse_location(location, properties)
        root = properties.get(ROOT)
        real = os.path.realpath(path)
        if scheme == "file" and root and not Path(real).is_relative_to(root):
            raise StorageError(f"refusing {location}: a symbolic link in {root} leads outside it, to {real}")
        return scheme, netloc, real if scheme == "file" else path


def local_io_properties(root: Path) -> dict[str, str]:
    """The catalog properties that make pyiceberg use `LocalFileIO` for the folder `root`."""
    return {"py-io-impl": f"{__name__}.{LocalFileIO.__name__}", ROOT: str(root)}
