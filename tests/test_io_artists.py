"""Artist maps (`io/artists.py`): unique_tracks.txt or item<TAB>artist, through `dcue score --artists`,
the cheapest command that reads one; the same reader serves `train` and `embed`."""

import json

import numpy as np
import pytest
from conftest import fails, invoke

from dcue_cli.io.embeddings import Embeddings, write_embeddings


@pytest.fixture
def songs(tmp_path):
    """Train songs r1 (X), r2 (Y); test songs t1, t2, t3. A plays t1; B plays t2; C plays t3."""
    (tmp_path / "plays.tsv").write_text("A\tr1\t1\nA\tt1\t1\nB\tr2\t1\nB\tt2\t1\nC\tr1\t1\nC\tt3\t1\n")
    (tmp_path / "splits.tsv").write_text("r1\ttrain\nr2\ttrain\nt1\ttest\nt2\ttest\nt3\ttest\n")
    items = np.array(["t1", "t2", "t3"], dtype=object)
    write_embeddings(tmp_path / "m.h5", Embeddings(items, np.array([[3.0], [2.0], [1.0]], np.float32),
                                                   np.array(list("ABC"), dtype=object), np.ones((3, 1), np.float32),
                                                   source="dcue", similarity="dot"))
    return tmp_path


def _score(d, artists, expect=0):
    return invoke(["score", d / "m.h5", "--plays", d / "plays.tsv", "--splits", d / "splits.tsv", "--artists",
                   artists, "--json"], expect=expect)


def _groups(result):
    return json.loads(result.stdout)["artist_groups"]


def test_a_tsv_map_with_a_header_and_an_empty_artist(songs):
    path = songs / "artists.tsv"
    path.write_text("song_id\tartist\nr1\tX\nr2\tY\nt1\tX\nt1\tX\nt2\t\nt3\tQ\n")  # t1 twice alike: harmless
    result = _score(songs, path)
    assert "skipped as a header line" in result.stderr
    assert f"Warning: 1 items of {path} have an empty artist: they count as having none" in result.stderr
    groups = _groups(result)
    assert groups["songs"] == {"semi-cold": 1, "fully-cold": 2} and groups["without_artist"] == 1


def test_unique_tracks_is_keyed_by_song_and_a_song_of_two_artists_keeps_its_first(songs):
    path = songs / "unique_tracks.txt"
    path.write_text("TR1<SEP>r1<SEP>X<SEP>a\nTR2<SEP>r2<SEP>Y<SEP>b\nTR3<SEP>t1<SEP>Q<SEP>c\nTR4<SEP>t1<SEP>X<SEP>c\n"
                    "TR5<SEP>t2<SEP>Y<SEP>title<SEP>with a separator\n")
    result = _score(songs, path)
    assert f"Warning: 1 songs of {path} have tracks by different artists" in result.stderr
    groups = _groups(result)  # t1 keeps Q (no training song): fully cold; t2 by Y: semi-cold; t3: none
    assert groups["songs"] == {"semi-cold": 1, "fully-cold": 2} and groups["without_artist"] == 1


EXPECTED = "the MSD unique_tracks.txt (track<SEP>song<SEP>artist<SEP>title) or item<TAB>artist lines"


@pytest.mark.parametrize("text, message", [
    ("", f"{{path}} is empty: expected {EXPECTED}."),
    ("\n\n", f"{{path}} is empty: expected {EXPECTED}."),
    ("t1\tX\nt2\tY\nt1\tZ\n", "{path}:3: item 't1' has artist 'Z' here but 'X' on line 1: give each item one artist."),
    ("t1\tX\nt2\tY\tmore\n", ("{path}:2: expected 2 '\\t'-separated fields in a TSV of artists (item<TAB>artist), "
                             f"found 3: 't2\\tY\\tmore': give {EXPECTED}.")),
    ("t1 X\n", f"{{path}}:1: expected {EXPECTED}, found 't1 X'."),
    ("TR1<SEP>t1<SEP>X<SEP>a\nTR2<SEP>t2\n", ("{path}:2: expected track_id<SEP>song_id<SEP>artist<SEP>title, "
                                             "found 'TR2<SEP>t2': give the MSD unique_tracks.txt.")),
    ("t1\t\nt2\t \n", f"{{path}} names no artist (every artist field is empty): expected {EXPECTED}."),
])
def test_bad_maps_are_one_line_errors(songs, text, message):
    path = songs / "bad.tsv"
    path.write_text(text)
    fails(["score", songs / "m.h5", "--plays", songs / "plays.tsv", "--splits", songs / "splits.tsv",
           "--artists", path], message.format(path=path))
