"""`merge_mels`: shard files (same feature settings, disjoint ids) joined into one mels file.

The result is the same bytes as one run over all the inputs (`dcue_cli.io.mels_append`).
"""

from __future__ import annotations

from pathlib import Path

from dcue_cli.errors import DcueError
from dcue_cli.io.mels import MelsFile, feature_settings, settings_difference
from dcue_cli.io.mels_append import write_sorted


def merge_mels(sources, output, *, overwrite: bool = False) -> dict:
    """Join shard files (same feature settings, disjoint ids) into `output`, atomically."""
    from dcue_cli.io.atomic import atomic_path, refuse_inputs_as_outputs

    sources = [str(s) for s in sources]
    if not sources:
        raise DcueError("--merge needs the shard files to join, e.g. dcue melspec --merge a.h5 b.h5 -o all.h5.")
    out = Path(output)
    refuse_inputs_as_outputs({"-o": out}, {"SHARD": sources})  # also through a link
    if out.exists() and not overwrite:
        raise DcueError(f"{output} exists: add --overwrite to replace it, or give another -o.")
    first_attrs = None
    for path in sources:
        with MelsFile(path) as f:
            if first_attrs is None:
                first_attrs, first_path = f.attrs, path
                continue
            diff = settings_difference(f.attrs, first_attrs)
            if diff:
                raise DcueError(f"{path} was made with other feature settings than {first_path} ({diff}): "
                                f"merge only shards made with the same options.")
    attrs = feature_settings(first_attrs)
    with atomic_path(out) as tmp:
        summary = write_sorted(sources, tmp, attrs, duplicates="error")
    return summary
