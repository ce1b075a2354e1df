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
    from dcue_cli.io.mels import is_hdf5, read_mels_ids

    if is_hdf5(path):
        ids = read_mels_ids(path, "--songs-with")
    else:
        _refuse_binary(path, "--songs-with")
        ids = read_id_list(path)
    if id_map:
        ids = [id_map[i][0] if i in id_map else i for i in ids]
    return set(ids)


def _refuse_binary(path, option: str) -> None:
    """A checkpoint or other binary file where an id list is expected: said, not read as ids."""
    from dcue_cli.io.text import binary_kind

    what = binary_kind(path)
    if what is not None:
        raise DcueError(f"{option} {path} is {what}, not a mels HDF5 or a list of song ids: give the mels.h5 "
                        "of `dcue melspec` or a file of one id a line.")
