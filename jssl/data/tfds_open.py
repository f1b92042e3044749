"""Opening a prepared TFDS data set, with a one-line error that says what to fix.

`tfds.data_source` fails in many ways (an unknown name lists the whole catalogue, some 250
lines; a data set that was never prepared raises a KeyError about `splits`), with many
exception types. The image, text and audio sources all open TFDS through `open_tfds` so each
failure ends in one `ValueError` line naming the data set, the split, the data directory and the
fix; an unknown name comes with its closest registered names rather than the catalogue.
"""

from __future__ import annotations

import difflib
from typing import Any


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().strip("'\"").splitlines() if line.strip()]
    return lines[0].rstrip(":") if lines else type(error).__name__


def describe_open_error(name: str, split: str, data_dir: Any, error: BaseException) -> str:
    """The one-line message for `error`, raised by `tfds.data_source(name, split=split, data_dir=data_dir)`."""
    from tensorflow_datasets.core.registered import DatasetNotFoundError

    where = f"(data_dir={str(data_dir) if data_dir else '~/tensorflow_datasets'})"
    if isinstance(error, DatasetNotFoundError):
        import tensorflow_datasets as tfds

        base = name.split(":")[0].split("/")[0]
        # Community data sets are listed from the network; the registered ones suffice for a typo.
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(base, known, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "no registered name is close"
        return (
            f"cannot open TFDS data set {name!r}: tensorflow-datasets {tfds.__version__} has no data set {base!r}; "
            f"{hint} (set --config.data.tfds_name; `tfds.list_builders()` lists all {len(known)})"
        )
    return (
        f"cannot open TFDS data set {name!r} split {split!r} {where}: {_first_line(error)}; it must be prepared "
        f"first, e.g. `tfds build {name.split(':')[0]} --file_format=array_record` (or set --config.data.data_dir)"
    )


def open_tfds(name: str, split: str, data_dir: Any = None, **kwargs: Any):
    """`tfds.data_source(name, split=split, data_dir=data_dir, download=False, **kwargs)`; a one-line
    `ValueError` if the data set cannot be opened."""
    import tensorflow_datasets as tfds

    try:
        # download=False: preparing needs the builder's own download code and often TensorFlow;
        # sources only ever read what was prepared before.
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False, **kwargs)
    except Exception as error:  # tfds raises many unrelated types here.
        raise ValueError(describe_open_error(name, split, data_dir, error)) from error
