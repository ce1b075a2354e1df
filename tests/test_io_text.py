"""Ids as data files give them: bytes that are not UTF-8, odd characters, and ids that look like paths,
options or shell commands all survive every command unchanged and never name a file or run anything."""

from pathlib import Path

from conftest import TAGGER, invoke

from dcue_cli.io.embeddings import read_embeddings

EMB_HINT = "was it written by `dcue embed` or `dcue wmf`?"


def test_odd_ids_survive_byte_for_byte_through_subset_wmf_score_and_autotag(tmp_path):
    """Latin-1 bytes, spaces, non-ASCII letters, quotes and trailing spaces are all part of an id."""
    songs = [b"caf\xe9", b"na\xefve song", "Мой трек".encode(), b'"quoted', b"tail ", b"\xe6\x9b\xb2"]
    users = [b"user one", b"J\xfcrgen", b"u3", b"u4", b"u5", b"u6"]
    lines = [u + b"\t" + s + b"\t" + str(1 + (j + k) % 4).encode() + b"\n"  # 4 of the 6 songs each
             for k, u in enumerate(users) for j, s in enumerate(songs) if (j + k) % 3]
    (tmp_path / "plays.tsv").write_bytes(b"".join(lines))
    invoke(["subset", tmp_path / "plays.tsv", "-o", tmp_path / "sub", "--songs", 0, "--users", 0,
            "--split", "0,0,1"])  # every song a test song: every user has a positive and a negative
    written = (tmp_path / "sub" / "plays.tsv").read_bytes()
    assert sorted(written.splitlines(keepends=True)) == sorted(lines)
    invoke(["wmf", tmp_path / "sub" / "plays.tsv", "-o", tmp_path / "w.h5", "--factors", 2, "--iterations", 2])
    emb = read_embeddings(tmp_path / "w.h5")
    assert {s.encode("utf-8", "surrogateescape") for s in emb.item_ids} == set(songs)
    result = invoke(["score", tmp_path / "w.h5", "--user", b"J\xfcrgen".decode("utf-8", "surrogateescape"),
                     "-k", 10])
    assert {line.split(b"\t")[1] for line in result.stdout_bytes.splitlines()[1:]} <= set(songs)
    invoke(["score", tmp_path / "w.h5", "--plays", tmp_path / "sub" / "plays.tsv",
            "--splits", tmp_path / "sub" / "splits.tsv", "--bootstrap", 100, "--per-user", tmp_path / "pu.tsv"])
    assert b"J\xfcrgen" in (tmp_path / "pu.tsv").read_bytes()
    (tmp_path / "tags.tsv").write_bytes(b"".join(s + b"\t" + (b"r\xf6ck" if k % 2 else b"jazz") + b"\n"
                                                 for k, s in enumerate(songs)))
    invoke(["autotag", tmp_path / "w.h5", tmp_path / "tags.tsv", "--split", "0.34,0.33,0.33", *TAGGER,
            "--predict", tmp_path / "pred.tsv"])
    predicted = (tmp_path / "pred.tsv").read_bytes()
    assert b"caf\xe9\t" in predicted and b"r\xf6ck" in predicted


def test_ids_that_look_like_paths_or_commands_stay_ids(tmp_path, monkeypatch):
    """Ids from data files never name a file to write or a command to run: only the outputs asked for appear."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    hostile = ["../../escaped", "/tmp/dcue-absolute-id", "$(touch pwned)", "`touch pwned2`", "a;touch pwned3",
               "..", "~", "-o", "--help"]
    rows = [f"{u}\t{s}\t{1 + (i + j) % 3}\n" for i, u in enumerate(hostile) for j, s in enumerate(hostile)
            if (i + j) % 3]
    (work / "plays.tsv").write_text("".join(rows))
    (work / "tags.tsv").write_text("".join(f"{s}\t{'x' if k % 2 else 'y'}\n" for k, s in enumerate(hostile)))
    before = set(tmp_path.rglob("*"))
    invoke(["subset", "plays.tsv", "-o", "sub", "--songs", 0, "--users", 0, "--split", "0,0,1"])
    invoke(["wmf", "sub/plays.tsv", "-o", "w.h5", "--factors", 2, "--iterations", 1])
    invoke(["score", "w.h5", "--plays", "sub/plays.tsv", "--splits", "sub/splits.tsv", "--bootstrap", 100,
            "--per-user", "per_user.tsv"])
    invoke(["score", "w.h5", "--user", "$(touch pwned)", "-k", 3])
    invoke(["autotag", "w.h5", "tags.tsv", "--split", "0.34,0.33,0.33", *TAGGER, "--predict", "pred.tsv"])
    created = {p.relative_to(tmp_path).as_posix() for p in set(tmp_path.rglob("*")) - before}
    assert created == {"work/sub", "work/sub/plays.tsv", "work/sub/splits.tsv", "work/w.h5", "work/per_user.tsv",
                       "work/pred.tsv"}
    assert not Path("/tmp/dcue-absolute-id").exists()
