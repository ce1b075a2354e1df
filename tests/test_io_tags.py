"""Every tags form (TSV, Last.fm SQLite, HetRec) and the MSD id maps: readers and writers, and
hostile tags and id map files through the commands that read them (one-line errors, nothing written)."""

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import TAGGER, error_line, invoke

from dcue_cli.errors import DcueError
from dcue_cli.io.embeddings import Embeddings, write_embeddings
from dcue_cli.io.idmap import read_id_list, read_id_map, write_id_map
from dcue_cli.io.tags import read_hetrec_tags, read_tags, write_tags


def test_tags_tsv_and_lastfm_sqlite(tmp_path):
    (tmp_path / "t.tsv").write_text("s1\trock\t100\ns1\tpop\t5\ns2\tjazz\n")
    assert read_tags(tmp_path / "t.tsv", min_weight=10) == (["s1", "s2"], ["rock", "jazz"], [100.0, 100.0])
    db = tmp_path / "lastfm_tags.db"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT);"
                      "CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);"
                      "INSERT INTO tids VALUES ('TRA'), ('TRB'); INSERT INTO tags VALUES ('rock'), ('sad');"
                      "INSERT INTO tid_tag VALUES (1, 1, 100), (2, 2, 40), (2, 1, 3);")
    con.commit()
    con.close()
    assert read_tags(db, min_weight=10) == (["TRA", "TRB"], ["rock", "sad"], [100.0, 40.0])


def test_id_map(tmp_path):
    (tmp_path / "u.txt").write_text("TRA<SEP>SOA<SEP>Artist<SEP>Title <SEP> odd\n")
    assert read_id_map(tmp_path / "u.txt") == {"TRA": ("SOA", "Artist", "Title <SEP> odd")}
    (tmp_path / "bad.txt").write_text("TRA\n")
    with pytest.raises(DcueError, match="bad.txt:1: expected track_id<SEP>song_id<SEP>artist<SEP>title"):
        read_id_map(tmp_path / "bad.txt")


def test_hetrec_reader_counts_distinct_users_and_reads_latin1(tmp_path):
    (tmp_path / "tags.dat").write_bytes("tagID\ttagValue\r\n1\trock\r\n2\tfu\xdfball\r\n".encode("latin-1"))
    (tmp_path / "ut.dat").write_bytes(
        b"userID\tartistID\ttagID\tday\tmonth\tyear\r\n"
        b"2\t51\t1\t1\t4\t2009\r\n3\t51\t1\t1\t4\t2009\r\n3\t51\t1\t1\t5\t2009\r\n"  # user 3 twice: counts once
        b"2\t52\t2\t1\t4\t2009\r\n"
    )
    rows = read_hetrec_tags(tmp_path / "ut.dat", tmp_path / "tags.dat")
    assert sorted(zip(*rows)) == [("51", "rock", 2.0), ("52", "fußball", 1.0)]
    assert list(zip(*read_hetrec_tags(tmp_path / "ut.dat", tmp_path / "tags.dat", min_weight=2))) == [
        ("51", "rock", 2.0)]


def test_hetrec_unknown_tag_id_names_the_line(tmp_path):
    (tmp_path / "tags.dat").write_text("tagID\ttagValue\n1\trock\n")
    (tmp_path / "ut.dat").write_text("userID\tartistID\ttagID\n2\t51\t1\n2\t51\t7\n")
    with pytest.raises(DcueError) as exc:
        read_hetrec_tags(tmp_path / "ut.dat", tmp_path / "tags.dat")
    assert exc.value.message == (
        f"{tmp_path / 'ut.dat'}:3: tag id '7' is not in {tmp_path / 'tags.dat'}: "
        "give the tags.dat of the same HetRec release with --tag-names.")


def test_tags_writer_round_trips_through_the_reader(tmp_path):
    write_tags(tmp_path / "t.tsv", [("s1", "rock", 100), ("s1", "f\u00fcnk", 7), ("s2", "jazz", "0.5000")])
    assert (tmp_path / "t.tsv").read_text() == "s1\trock\t100\ns1\tf\u00fcnk\t7\ns2\tjazz\t0.5000\n"
    assert read_tags(tmp_path / "t.tsv") == (["s1", "s1", "s2"], ["rock", "f\u00fcnk", "jazz"], [100.0, 7.0, 0.5])


def test_id_map_writer_round_trips_through_the_readers(tmp_path):
    rows = [("TRA", "SOA", "The Artist", "A Title (Remix)"), ("TRB", "SOB", "", "")]
    write_id_map(tmp_path / "u.txt", rows)
    assert (tmp_path / "u.txt").read_text() == "TRA<SEP>SOA<SEP>The Artist<SEP>A Title (Remix)\nTRB<SEP>SOB<SEP><SEP>\n"
    assert read_id_map(tmp_path / "u.txt") == {"TRA": ("SOA", "The Artist", "A Title (Remix)"), "TRB": ("SOB", "", "")}
    assert read_id_list(tmp_path / "u.txt") == ["TRA", "TRB"]


# ----------------------------------------------------------------------------- hostile files, through the commands



@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """30 songs with plays (40 users), splits, tags, a WMF-like embeddings file and one WAV file."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("tagged")
    rng = np.random.default_rng(0)
    rows = [f"u{u:02d}\ts{i:02d}\t{rng.integers(1, 9)}\n" for u in range(40) for i in rng.choice(30, size=8, replace=False)]
    (root / "plays.tsv").write_text("".join(rows))
    (root / "splits.tsv").write_text("".join(f"s{i:02d}\t{'train' if i < 20 else 'valid' if i < 24 else 'test'}\n"
                                             for i in range(30)))
    (root / "tags.tsv").write_text("".join(f"s{i:02d}\t{'rock' if i % 2 else 'jazz'}\t{50 + i}\n" for i in range(30)))
    items = np.array([f"s{i:02d}" for i in range(30)], dtype=object)
    users = np.array([f"u{u:02d}" for u in range(40)], dtype=object)
    write_embeddings(root / "emb.h5", Embeddings(items, rng.normal(size=(30, 4)), users, rng.normal(size=(40, 4)),
                                                 source="wmf", similarity="dot", attrs={"name": "WMF"}))
    sf.write(root / "ch1.wav", (0.3 * np.sin(2 * np.pi * 330 * np.arange(33075) / 22050)).astype(np.float32), 22050)
    return root


def fails(args, message):
    """Run, expect exit 1 and exactly this one-line message."""
    assert error_line(invoke(args, expect=1)) == message


def assert_absent(*targets):
    """Nothing under the real name, and no temporary file of ours left beside it."""
    for target in map(Path, targets):
        assert not target.exists(), f"{target} was written"
        if target.parent.exists():
            assert not [p.name for p in target.parent.iterdir()
                        if p.name.startswith(f".{target.name}.") and p.name.endswith(".tmp")]


@pytest.mark.parametrize("data, message", [
    (b"s01\trock\t50\ts01\n", ("{p}:1: expected 2 to 3 '\\t'-separated fields in a tags TSV "
                              "(item_id<TAB>tag[<TAB>weight]), found 4: 's01\\trock\\t50\\ts01'")),
    (b"s01\trock\t50\ns02\n", ("{p}:2: expected 2 to 3 '\\t'-separated fields in a tags TSV "
                              "(item_id<TAB>tag[<TAB>weight]), found 1: 's02'")),
    (b"s01\trock\t50\ns02\tjazz\tlots\n", ("{p}:2: tag weight 'lots' is not a number: use "
                                         "item_id<TAB>tag<TAB>weight with a numeric weight (Last.fm: 0-100).")),
    (b"s01\trock\t50\ns02\tjazz\tnan\n", ("{p}:2: tag weight 'nan' is not a finite number: use "
                                        "item_id<TAB>tag<TAB>weight with a numeric weight (Last.fm: 0-100).")),
    (b"s01\trock\t-inf\n", ("{p}:1: tag weight '-inf' is not a finite number: use "
                           "item_id<TAB>tag<TAB>weight with a numeric weight (Last.fm: 0-100).")),
    (b"", ("{p} holds no tags: give a tags TSV of item<TAB>tag[<TAB>weight] lines, the MSD lastfm_tags.db, or "
           "HetRec's user_taggedartists with --tag-names.")),
    (b"x1\trock\nx2\tjazz\n", ("no item of {p} has a vector in {e}: their ids differ (e.g. 'x1' in the tags, "
                              "'s00' in the vectors); key both by the same ids (--id-map unique_tracks.txt maps MSD "
                              "track ids to song ids).")),
])
def test_bad_tags_are_named(world, tmp_path, data, message):
    path = tmp_path / "tags.tsv"
    path.write_bytes(data)
    out = tmp_path / "pred.tsv"
    fails(["autotag", world / "emb.h5", path, *TAGGER, "--predict", out], message.format(p=path, e=world / "emb.h5"))
    assert_absent(out)


def test_tags_with_bom_crlf_blank_lines_latin1_and_a_header_are_read(world, tmp_path):
    lines = (world / "tags.tsv").read_bytes().replace(b"jazz", b"j\xe4zz").splitlines()
    path = tmp_path / "tags.tsv"
    path.write_bytes(b"\xef\xbb\xbfitem\ttag\tweight\r\n" + b"\r\n\r\n".join(lines) + b"\r\n")
    result = invoke(["autotag", world / "emb.h5", path, *TAGGER, "--per-tag", tmp_path / "per_tag.tsv"])
    assert f"{path}:1: skipped as a header line: 'item\\ttag\\tweight'" in result.stderr
    assert b"j\xe4zz" in (tmp_path / "per_tag.tsv").read_bytes()


def _id_map_args(command, world, tmp_path, path):
    """Each command that reads an id map, given PATH as its --id-map."""
    return {"melspec": ["melspec", world / "ch1.wav", "-o", tmp_path / "m.h5", "--id-map", path],
            "subset": ["subset", world / "plays.tsv", "-o", tmp_path / "sub", "--songs-with", world / "splits.tsv",
                       "--id-map", path],
            "score": ["score", world / "emb.h5", "--user", "u01", "--id-map", path],
            "autotag": ["autotag", world / "emb.h5", world / "tags.tsv", "--id-map", path, *TAGGER]}[command]


@pytest.mark.parametrize("command", ["melspec", "subset", "score", "autotag"])
def test_bad_id_map_line_is_named_by_every_command(world, tmp_path, command):
    path = tmp_path / "unique_tracks.txt"
    path.write_text("TR1<SEP>SO1<SEP>a<SEP>t\nTR2 SO2 a t\n")
    message = (f"{path}:2: expected track_id<SEP>song_id<SEP>artist<SEP>title, found 'TR2 SO2 a t': "
               "give the MSD unique_tracks.txt.")
    args = _id_map_args(command, world, tmp_path, path)
    fails(args, message)
    assert_absent(tmp_path / "m.h5", tmp_path / "sub" / "plays.tsv")
    path.write_text("\n")
    fails(args, f"{path} is empty: expected MSD unique_tracks.txt lines.")


@pytest.mark.parametrize("command", ["melspec", "subset", "score", "autotag"])
def test_a_plays_file_given_as_id_map_is_refused(world, tmp_path, command):
    """user<TAB>song<TAB>count has three fields: read as an id map it gave garbage artists."""
    path = world / "plays.tsv"
    first = path.read_text().splitlines()[0]
    message = (f"{path}:1: expected track_id<SEP>song_id<SEP>artist<SEP>title, found {first!r}: "
               "give the MSD unique_tracks.txt.")
    args = _id_map_args(command, world, tmp_path, path)
    before = path.read_bytes()
    fails(args, message)
    assert_absent(tmp_path / "m.h5", tmp_path / "sub" / "plays.tsv")
    assert path.read_bytes() == before


def test_id_map_line_without_a_song_id_is_refused(tmp_path):
    (tmp_path / "u.txt").write_text("TRA<SEP>SOA<SEP>a<SEP>t\nTRB<SEP> <SEP>b<SEP>t\n")
    with pytest.raises(DcueError, match=r"u.txt:2: expected track_id<SEP>song_id<SEP>artist<SEP>title"):
        read_id_map(tmp_path / "u.txt")
