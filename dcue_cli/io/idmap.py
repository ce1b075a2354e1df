"""MSD id maps: `unique_tracks.txt` (`track_id<SEP>song_id<SEP>artist<SEP>title`, read and
written) and plain id lists (one id per line)."""

from collections.abc import Iterable

from dcue_cli.errors import DcueError
from dcue_cli.io.text import display_name, open_text, shorten


def read_id_map(path) -> dict:
    """MSD `unique_tracks.txt`: {track_id: (song_id, artist, title)}.

    Fields are separated by `<SEP>` (the MSD's own separator) or by tabs; a line with fewer than
    four fields, or an empty track or song id, is a DcueError naming the file and line.
    """
    name = display_name(path)
    mapping = {}
    with open_text(path) as stream:
        for lineno, line in enumerate(stream, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("<SEP>") if "<SEP>" in line else line.split("\t")
            track, song = fields[0].strip(), fields[1].strip() if len(fields) > 1 else ""
            # Four fields, as unique_tracks.txt has (a title may hold more separators): a plays
            # file (user<TAB>song<TAB>count) would otherwise be read as a map of garbage.
            if len(fields) < 4 or not track or not song:
                raise DcueError(
                    f"{name}:{lineno}: expected track_id<SEP>song_id<SEP>artist<SEP>title, "
                    f"found {shorten(line)!r}: give the MSD unique_tracks.txt."
                )
            artist, title = fields[2], "<SEP>".join(fields[3:])
            mapping[track] = (song, artist, title)
    if not mapping:
        raise DcueError(f"{name} is empty: expected MSD unique_tracks.txt lines.")
    return mapping


def write_id_map(path, rows: Iterable[tuple]) -> None:
    """Write (track_id, song_id, artist, title) rows as `unique_tracks.txt` lines (atomically)."""
    from dcue_cli.io.atomic import open_text_output

    with open_text_output(path) as out:
        for track, song, artist, title in rows:
            out.write(f"{track}<SEP>{song}<SEP>{artist}<SEP>{title}\n")


def read_id_list(path, name: str = "the id list") -> list:
    """One id per line (the first tab- or <SEP>-separated field); blank lines skipped. A binary
    file (HDF5, a checkpoint) is refused, naming it as `name` (its bytes are no ids)."""
    from dcue_cli.io.text import refuse_binary

    refuse_binary(path, name, "a text file of ids, one a line")
    ids = []
    with open_text(path) as stream:
        for line in stream:
            line = line.strip()
            if line:
                ids.append(line.split("<SEP>")[0].split("\t")[0].strip())
    return ids
