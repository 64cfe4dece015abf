"""Files as the project reads and writes them: which files are images, and atomic writes.

A reader sees the old file or the whole new one, never half of it: checkpoints,
experiment records, sidecars and separated PNGs are all written through `write_atomic`.
Standard library only, so `separate` can use it. Hand-written because the standard
library has no atomic write, and the small packages that offer one would be a dependency
of the plain install for ten lines.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable

# What a folder of images may hold, for `separate` and for `data.dataset: folder` alike.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def write_atomic(target: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(file)` on a temporary file beside `target`, then rename it into place.

    On any failure the temporary file is removed and `target` is left as it was.
    """
    target = Path(target)
    # open(..., "x") rather than tempfile.mkstemp: the file gets the usual permissions (mkstemp's
    # are owner-only), and "x" refuses a name that is somehow taken instead of writing into it.
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        with open(temporary, "xb") as file:
            write(file)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    return write_atomic(target, lambda file: file.write(text.encode("utf-8")))


def write_json_atomic(target: str | os.PathLike, value: Any, **dumps) -> Path:
    return write_text_atomic(target, json.dumps(value, indent=2, **dumps) + "\n")
