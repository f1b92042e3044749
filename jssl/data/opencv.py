"""The one lazy import of OpenCV for the host's image ops.

Only host augmentation (colour, blur, flips) needs OpenCV; the device path and everything else
in jssl import without it, so the import waits until a host op first runs.
"""

from __future__ import annotations

import functools
from types import ModuleType


@functools.cache
def cv2() -> ModuleType:
    """The ``cv2`` module, with a clear error if ``opencv-python-headless`` is missing."""
    try:
        import cv2 as module
    except ImportError as error:
        raise ImportError(
            "jssl's host augmentation needs OpenCV: pip install 'opencv-python-headless>=4.9,<6' "
            "(or augment on the device: --config.data.augment_on=device)"
        ) from error
    return module


def set_threads(count: int) -> bool:
    """Caps OpenCV's worker threads for this process, if OpenCV is installed; returns whether it is."""
    try:
        module = cv2()
    except ImportError:
        return False
    module.setNumThreads(count)
    return True
