"""Sets of song ids given to `dcue subset`: the songs that have audio (--songs-with: a mels HDF5's
/ids or an id list) and the songs to leave out (--exclude: the MSD `sid_mismatches.txt` or an id list).
"""

import re

from dcue_cli.errors import DcueError

_MISMATCH = re.compile(r"<(SO[A-Z0-9]{16})\s+(TR[A-Z0-9]{16})>")


def read_song_exclusions(path) -> set:
    """Song ids from the MSD `sid_mismatches.txt` (`ERROR: <SONG TRACK> ...`) or a plain id list."""
    from dcue_cli.io.text import open_text

    songs = set()
    with open_text(path) as stream:
        for line in stream:
            match = _MISMATCH.search(line)
            if match:
                songs.add(match.group(1))
            elif line.strip() and not line.startswith(("ERROR", "WARNING")):
                songs.add(line.split("\t")[0].split("<SEP>")[0].strip())
    return songs


def read_song_set(path, id_map: dict | None = None) -> set:
    """Ids of songs that have audio: a mels HDF5 (/ids) or an id list, mapped through `id_map`.

    With an MSD id map ({track_id: (song_id, ...)}), track ids become song ids; ids that are
    already song ids pass through.
    """
    from dcue_cli.io.idmap import read_id_list

    ids = _read_mels_ids(path) if _is_hdf5(path) else read_id_list(path)
    if id_map:
        ids = [id_map[i][0] if i in id_map else i for i in ids]
    return set(ids)


def _reason(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_mels_ids(path) -> list:
    """The /ids of a mels HDF5, with --songs-with's own messages (only /ids is needed here)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DcueError(f"{path} is not a readable HDF5 file ({_reason(exc)}): give the mels file written by "
                        "`dcue melspec` (or an id list) to --songs-with.") from None
    with f:
        try:
            if "ids" not in f or not isinstance(f["ids"], h5py.Dataset) or f["ids"].ndim != 1:
                raise DcueError(f"{path} has no /ids list: was it written by `dcue melspec`?")
            return [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
                    for v in f["ids"][()]]
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:  # h5py on damaged metadata
            raise DcueError(f"{path} is damaged ({_reason(exc)}): make it again with `dcue melspec`.") from None


def _is_hdf5(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False
