"""Every tags form (TSV, Last.fm SQLite, HetRec) and the MSD id maps: readers and writers."""

import sqlite3

import pytest

from dcue_cli.errors import DcueError
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
