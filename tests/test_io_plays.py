"""dcue_cli.io.plays and its readers: what they read, that every reader reads a file alike, and how
every hostile plays file ends (a one-line `file:line` error, or a counted skip).

Readers: `read_plays` picks the numpy fixed-width reader, then pandas, then the line reader; what
`write_plays` writes reads back unchanged, whatever the line endings, BOM, blank lines or gzip;
any bytes at all either read or fail with a one-line DcueError, never another exception.
"""

import gzip
from unittest import mock

import numpy as np
import pytest
from conftest import assert_absent, error_line, fails, invoke, tsv_ids
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcue_cli.errors import DcueError
from dcue_cli.io import plays_checked, plays_fixed, plays_pandas
from dcue_cli.io.plays import NeedsCheck, Plays, read_plays, write_plays

# Each example writes a file under tmp_path: the function-scoped fixture is shared on purpose.
FILES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PLAYS_FIX = (" (expected user_id<TAB>item_id<TAB>count; use --columns to pick fields, --skip-bad to skip "
             "bad lines)")
ATTRS = ("user_ids", "item_ids", "users", "items", "counts")

ids = tsv_ids().filter(lambda s: "\x00" not in s)  # a NUL is refused: no HDF5 output can hold it
counts = st.integers(min_value=1, max_value=2**31 - 1)
rows = st.lists(st.tuples(ids, ids, counts), min_size=1, max_size=30)


def _rows_of(plays):
    return sorted(zip(plays.user_ids[plays.users].tolist(), plays.item_ids[plays.items].tolist(),
                      plays.counts.tolist()))


def _as_plays(triples):
    users, items = {}, {}
    u = [users.setdefault(a, len(users)) for a, _, _ in triples]
    i = [items.setdefault(b, len(items)) for _, b, _ in triples]
    return Plays(np.array(list(users), dtype=object), np.array(list(items), dtype=object),
                 np.array(u, np.int32), np.array(i, np.int32), np.array([c for _, _, c in triples], np.int32))


# ----------------------------------------------------------------------------- the Plays table


def test_plays_bom_crlf_header_and_latin1(tmp_path):
    p = tmp_path / "p.tsv"
    p.write_bytes("\ufeffuser\titem\tcount\r\nu1\ts\xe9\t2\r\n".encode("utf-8") + b"u\xe92\ts1\t1\r\n")
    plays = read_plays(p)
    assert list(plays.user_ids) == ["u1", "u\udce92"]  # Latin-1 byte kept, not fatal
    assert list(plays.item_ids) == ["sé", "s1"]
    assert plays.counts.tolist() == [2, 1]


def test_plays_to_csr_and_deduplicate(tmp_path):
    (tmp_path / "p.tsv").write_text("a\tx\t1\na\tx\t2\nb\ty\t5\n")
    plays = read_plays(tmp_path / "p.tsv")
    assert plays.deduplicate().counts.tolist() == [3, 5]
    assert plays.to_csr().toarray().tolist() == [[3, 0], [0, 5]]
    assert plays.to_csr(binary=True).toarray().tolist() == [[1, 0], [0, 1]]


# ----------------------------------------------------------------------------- the readers agree


def _spied_readers():
    """Patch the three readers with spies that record (reader, 'read' or 'refused') as they run."""
    ran = []

    def spy(name, real):
        def wrapper(*args, **kwargs):
            try:
                result = real(*args, **kwargs)
            except NeedsCheck:
                ran.append((name, "refused"))
                raise
            ran.append((name, "read"))
            return result
        return wrapper

    patches = [mock.patch.object(plays_fixed, "read_fixed_width", spy("fixed", plays_fixed.read_fixed_width)),
               mock.patch.object(plays_pandas, "read_with_pandas", spy("pandas", plays_pandas.read_with_pandas)),
               mock.patch.object(plays_checked, "read_checked", spy("checked", plays_checked.read_checked))]
    return ran, patches


@FILES
@given(n_users=st.integers(1, 20), n_items=st.integers(1, 20), width=st.integers(1, 12), fixed=st.booleans(),
       final_newline=st.booleans(), block_bytes=st.integers(16, 4096), chunk_rows=st.integers(1, 50),
       data=st.data())
def test_every_reader_reads_a_file_alike_and_read_plays_takes_the_fastest_that_can(
        tmp_path, n_users, n_items, width, fixed, final_newline, block_bytes, chunk_rows, data):
    """Ids of one width (the Taste Profile) go the numpy path, others the pandas path; both, and the
    line reader, give the same ids in order of first appearance, codes and counts, in any blocks or chunks."""
    alphabet = st.sampled_from("abcdefXYZ0123456789")
    sizes = {"min_size": width, "max_size": width} if fixed else {"min_size": 1, "max_size": 12}
    user_ids = data.draw(st.lists(st.text(alphabet, **sizes), min_size=n_users, max_size=n_users, unique=True))
    item_ids = data.draw(st.lists(st.text(alphabet, **sizes), min_size=n_items, max_size=n_items, unique=True))
    triples = data.draw(st.lists(st.tuples(st.sampled_from(user_ids), st.sampled_from(item_ids),
                                           st.integers(1, 999_999_999)), min_size=1, max_size=40))
    one_width = len({len(u) for u, _, _ in triples}) == 1 and len({len(i) for _, i, _ in triples}) == 1
    path = tmp_path / "plays.tsv"
    text = "\n".join(f"{u}\t{i}\t{c}" for u, i, c in triples)
    path.write_text(text + ("\n" if final_newline else ""))

    checked = plays_checked.read_checked(path, (0, 1, 2), False, False)
    general = plays_pandas.read_with_pandas(path, (0, 1, 2), False, chunk_rows, False)
    agreeing = [general]
    if one_width:
        agreeing.append(plays_fixed.read_fixed_width(path, False, block_bytes=block_bytes))
    else:
        with pytest.raises(NeedsCheck):
            plays_fixed.read_fixed_width(path, False, block_bytes=block_bytes)
    for plays in agreeing:
        for attr in ATTRS:
            assert np.array_equal(getattr(plays, attr), getattr(checked, attr)), attr
    assert _rows_of(checked) == sorted(triples)

    ran, patches = _spied_readers()
    with patches[0], patches[1], patches[2]:
        read_plays(path, show_progress=False)
        assert ran == ([("fixed", "read")] if one_width else [("fixed", "refused"), ("pandas", "read")])
        ran.clear()
        read_plays(path, skip_bad=True, show_progress=False)
        assert ran == [("checked", "read")]


# ----------------------------------------------------------------------------- what is read


@FILES
@given(triples=rows, skip_bad=st.booleans())
def test_plays_written_then_read_are_the_same_rows(tmp_path, triples, skip_bad):
    path = tmp_path / "plays.tsv"
    write_plays(path, _as_plays(triples))
    got = read_plays(path, skip_bad=skip_bad, show_progress=False)  # skip_bad: the line-by-line path
    assert _rows_of(got) == sorted(triples)
    assert got.skipped == 0


@FILES
@given(triples=rows, crlf=st.booleans(), bom=st.booleans(), blanks=st.lists(st.integers(0, 40), max_size=4),
       gz=st.booleans())
def test_line_endings_bom_blank_lines_and_gzip_do_not_change_what_is_read(tmp_path, triples, crlf, bom, blanks,
                                                                          gz):
    lines = [f"{u}\t{i}\t{c}" for u, i, c in triples]
    for at in sorted(blanks, reverse=True):
        lines.insert(min(at, len(lines)), "")
    newline = "\r\n" if crlf else "\n"
    data = ("\ufeff" if bom else "") + newline.join(lines) + newline
    raw = data.encode("utf-8", "surrogateescape")
    path = tmp_path / ("plays.tsv.gz" if gz else "plays.tsv")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    got = read_plays(path, header=False, show_progress=False)
    assert _rows_of(got) == sorted(triples)


@FILES
@given(data=st.binary(max_size=300), skip_bad=st.booleans(), header=st.sampled_from([None, True, False]))
def test_any_bytes_are_read_or_refused_in_one_line(tmp_path, data, skip_bad, header):
    path = tmp_path / "plays.tsv"
    path.write_bytes(data)
    try:
        plays = read_plays(path, header=header, skip_bad=skip_bad, show_progress=False)
    except DcueError as exc:
        assert "\n" not in exc.message and exc.message.startswith(str(path))
        return
    assert len(plays) > 0 and np.all(plays.counts >= 1)
    assert plays.users.max() < plays.n_users and plays.items.max() < plays.n_items


@FILES
@given(lines=st.lists(st.tuples(st.text(st.sampled_from("ab1\t x"), max_size=6),
                                st.sampled_from(["1", "2", "0", "-3", "2.5", "x", "", "1e3", " 4 "])),
                      min_size=1, max_size=15))
def test_skip_bad_keeps_exactly_the_good_lines(tmp_path, lines):
    """With --skip-bad, a line is kept iff it has three fields, two non-empty ids and a count >= 1."""
    text = "".join(f"{ids}\t{count}\n" for ids, count in lines)
    path = tmp_path / "plays.tsv"
    path.write_text(text)
    expected = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != 3 or not fields[0] or not fields[1]:
            continue
        try:
            value = float(fields[2])
        except ValueError:
            continue
        if value >= 1 and value == int(value) and value < 2**31:
            expected.append((fields[0], fields[1], int(value)))
    try:
        got = read_plays(path, header=False, skip_bad=True, show_progress=False)
    except DcueError as exc:
        assert not expected and "has no plays" in exc.message
        return
    assert _rows_of(got) == sorted(expected)
    assert got.skipped == sum(1 for raw in text.splitlines() if raw.strip()) - len(expected)


# ----------------------------------------------------------------------------- hostile plays files, through the commands

CLEAN = "u1\ti1\t3\nu1\ti2\t1\nu2\ti1\t2\nu2\ti3\t5\n"
NUL = "2: a NUL byte in the user or item id (an HDF5 output cannot hold one): 'u\\x002\\ti2\\t1'"

BAD_PLAYS = {  # name: (bytes, the message after "<file>:")
    "two fields": (b"u1\ti1\t3\nu1\ti2\n", "2: expected 3 tab-separated fields, found 2: 'u1\\ti2'"),
    "four fields": (b"u1\ti1\t3\nu1\ti2\t1\tx\n", "2: expected 3 tab-separated fields, found 4: 'u1\\ti2\\t1\\tx'"),
    "spaces not tabs": (b"u1 i1 3\n", "1: expected 3 tab-separated fields, found 1: 'u1 i1 3'"),
    "comma separated": (b"u1,i1,3\n", "1: expected 3 tab-separated fields, found 1: 'u1,i1,3'"),
    "word count": (b"u1\ti1\t3\nu1\ti2\tmany\n", "2: count 'many' is not a positive integer: 'u1\\ti2\\tmany'"),
    "negative count": (b"u1\ti1\t3\nu1\ti2\t-1\n", "2: count '-1' is not a positive integer: 'u1\\ti2\\t-1'"),
    "zero count": (b"u1\ti1\t3\nu1\ti2\t0\n", "2: count '0' is not a positive integer: 'u1\\ti2\\t0'"),
    "fractional count": (b"u1\ti1\t3\nu1\ti2\t2.5\n", "2: count '2.5' is not a positive integer: 'u1\\ti2\\t2.5'"),
    "huge count": (b"u1\ti1\t3\nu1\ti2\t99999999999\n",
                   "2: count '99999999999' is too large (max 2147483647): 'u1\\ti2\\t99999999999'"),
    "count just too large": (b"u1\ti1\t3\nu1\ti2\t2147483648\n",
                             "2: count '2147483648' is too large (max 2147483647): 'u1\\ti2\\t2147483648'"),
    "nan count": (b"u1\ti1\t3\nu1\ti2\tnan\n", "2: count 'nan' is not a positive integer: 'u1\\ti2\\tnan'"),
    "empty id": (b"u1\ti1\t3\n\ti2\t1\n", "2: empty user or item id: '\\ti2\\t1'"),
    "NUL in a user id (fixed width)": (b"u1\ti1\t3\nu\x002\ti2\t1\n", NUL),
    "NUL in an item id (varying width)": (b"u1\ti1\t3\nu1\ti\x002x\t1\n", NUL.replace("u\\x002\\ti2", "u1\\ti\\x002x")),
    "utf-16": ("u1\ti1\t3\n".encode("utf-16"), None),
}


@pytest.mark.parametrize("case", sorted(BAD_PLAYS))
def test_bad_plays_line_is_named_and_nothing_is_written(tmp_path, case):
    data, message = BAD_PLAYS[case]
    path = tmp_path / "plays.tsv"
    path.write_bytes(data)
    result = invoke(["subset", path, "-o", tmp_path / "out", "--songs", 0, "--users", 0], expect=1)
    text = error_line(result)
    assert text.startswith(f"{path}:") and text.endswith(PLAYS_FIX)
    if message:
        assert text == f"{path}:{message}{PLAYS_FIX}"
    assert_absent(tmp_path / "out" / "plays.tsv", tmp_path / "out" / "splits.tsv")


@pytest.mark.parametrize("command", ["wmf", "score cold", "score warm", "score query"])
def test_every_command_reading_plays_names_the_bad_line(world, tmp_path, command):
    path = tmp_path / "plays.tsv"
    path.write_bytes(b"u01\ts01\t3\nu01\ts02\t-4\n")
    message = f"{path}:2: count '-4' is not a positive integer: 'u01\\ts02\\t-4'{PLAYS_FIX}"
    out = tmp_path / "w.h5"
    args = {
        "wmf": ["wmf", path, "-o", out, "--factors", 2, "--iterations", 1],
        "score cold": ["score", world / "emb.h5", "--plays", path, "--splits", world / "splits.tsv"],
        "score warm": ["score", world / "emb.h5", "--train-plays", world / "plays.tsv", "--test-plays", path],
        "score query": ["score", world / "emb.h5", "--user", "u01", "--exclude-played", path],
    }[command]
    fails(args, message)
    assert_absent(out)


def test_skip_bad_counts_what_it_skips(tmp_path):
    path = tmp_path / "plays.tsv"
    path.write_bytes(b"u1\ti1\t3\nu1\ti2\t-1\nu1\ti3\nu2\ti1\tx\nu2\ti2\t2\n")
    result = invoke(["subset", path, "-o", tmp_path / "out", "--songs", 0, "--users", 0, "--skip-bad"])
    assert f"Warning: {path}: skipped 3 bad lines (--skip-bad)" in result.stderr
    assert f"read {path}: 2 rows, 2 users, 2 songs (3 bad lines skipped)" in result.stderr
    assert (tmp_path / "out" / "plays.tsv").read_text() == "u1\ti1\t3\nu2\ti2\t2\n"
    path.write_bytes(b"bad\nworse\n")
    fails(["subset", path, "-o", tmp_path / "out2", "--skip-bad"],
          f"{path} has no plays (every line was bad): expected lines of user_id<TAB>item_id<TAB>count.")
    assert_absent(tmp_path / "out2" / "plays.tsv")


@pytest.mark.parametrize("variant", ["bom", "crlf", "blank lines", "bom crlf blank gz", "trailing spaces in counts",
                                     "header", "stdin", "cr only", "cr only header", "cr only stdin gz"])
def test_harmless_variations_read_exactly_like_the_clean_file(tmp_path, variant):
    invoke(["subset", "-", "-o", tmp_path / "clean", "--songs", 0, "--users", 0], input=CLEAN)
    text = CLEAN
    if "crlf" in variant:
        text = text.replace("\n", "\r\n")
    if "header" in variant:
        text = "user\tsong\tplays\n" + text
    if "cr only" in variant:  # old Mac files: read as line ends, not as one header line
        text = text.replace("\n", "\r")
    if "blank" in variant:
        text = "\n\n" + text.replace("\r\n" if "crlf" in variant else "\n", "\n\n  \n", 2) + "\n\n"
    if "trailing" in variant:
        text = text.replace("\n", " \n")
    data = (b"\xef\xbb\xbf" if "bom" in variant else b"") + text.encode()
    name = "plays.tsv.gz" if "gz" in variant else "plays.tsv"
    (tmp_path / name).write_bytes(gzip.compress(data) if "gz" in variant else data)
    stdin = "stdin" in variant
    source = "-" if stdin else tmp_path / name
    result = invoke(["subset", source, "-o", tmp_path / "out", "--songs", 0, "--users", 0],
                    input=(tmp_path / name).read_bytes() if stdin else None)
    for out in ("plays.tsv", "splits.tsv"):
        assert (tmp_path / "out" / out).read_bytes() == (tmp_path / "clean" / out).read_bytes(), out
    if variant == "header":  # a header where none is expected is detected, and said
        assert f"{tmp_path / name}:1: skipped as a header line (--header no reads it as data): " \
               "'user\\tsong\\tplays'" in result.stderr
        fails(["subset", tmp_path / name, "-o", tmp_path / "no", "--header", "no"],
              f"{tmp_path / name}:1: count 'plays' is not a positive integer: 'user\\tsong\\tplays'{PLAYS_FIX}")


@pytest.mark.parametrize("data, message", [
    (b"", "{p} has no plays: expected lines of user_id<TAB>item_id<TAB>count."),
    (b"\n\n  \n", "{p} has no plays: expected lines of user_id<TAB>item_id<TAB>count."),
    (b"user\titem\tcount\n", "{p} has no plays: expected lines of user_id<TAB>item_id<TAB>count."),
    (b"\x1f\x8b" + b"not really gzip" * 4,
     "{p} is a damaged gzip file (Unknown compression method): download or compress it again (`gzip -t` checks it)."),
])
def test_empty_and_damaged_plays_files(tmp_path, data, message):
    path = tmp_path / "plays.tsv"
    path.write_bytes(data)
    fails(["subset", path, "-o", tmp_path / "out"], message.format(p=path))
    assert_absent(tmp_path / "out" / "plays.tsv")


def test_truncated_gzip_is_named_not_aborted(tmp_path):
    rng = np.random.default_rng(0)
    text = "".join(f"user{u}\tsong{rng.integers(0, 99)}\t{rng.integers(1, 9)}\n" for u in range(3000))
    packed = gzip.compress(text.encode())
    (tmp_path / "plays.tsv.gz").write_bytes(packed[:len(packed) // 2])
    message = ("{p} is a damaged gzip file (Compressed file ended before the end-of-stream marker was reached): "
               "download or compress it again (`gzip -t` checks it).")
    fails(["subset", tmp_path / "plays.tsv.gz", "-o", tmp_path / "out"], message.format(p=tmp_path / "plays.tsv.gz"))
    fails(["subset", "-", "-o", tmp_path / "out"], message.format(p="<stdin>"), input=packed[:len(packed) // 2])
    assert_absent(tmp_path / "out" / "plays.tsv")


# ----------------------------------------------------------------------------- second round (helper REL-IO)


def test_every_fast_reader_hands_a_nul_byte_to_the_checked_reader(tmp_path):
    """HDF5 strings cannot hold NUL: wmf and embed crashed on one at the very end, after the fit."""
    path = tmp_path / "p.tsv"
    path.write_bytes(b"u1\ti1\t3\nu\x002\ti2\t1\n")
    with pytest.raises(NeedsCheck):
        plays_fixed.read_fixed_width(path, show_progress=False)
    with pytest.raises(NeedsCheck):
        plays_pandas.read_with_pandas(path, (0, 1, 2), False, show_progress=False)
    with pytest.raises(NeedsCheck):
        plays_pandas.read_with_pandas(path, (1, 0, 2), False, show_progress=False)


@pytest.mark.parametrize("how", ["subset", "subset header", "subset --columns", "wmf", "train"])
def test_a_nul_byte_in_an_id_is_refused_where_the_plays_are_read(toy, tmp_path, how):
    path = tmp_path / "plays.tsv"
    header = b"user\titem\tcount\n" if how == "subset header" else b""
    path.write_bytes(header + b"U001\tS0001\t3\nU0\x002\tS0002\t1\n")
    line = 3 if header else 2
    out = tmp_path / "out"
    args = {"subset": ["subset", path, "-o", out],
            "subset header": ["subset", path, "-o", out, "--header", "yes"],
            "subset --columns": ["subset", path, "-o", out, "--columns", "1,0,2"],
            "wmf": ["wmf", path, "-o", out / "w.h5", "--factors", 2],
            "train": ["train", toy / "mels.h5", path, "--splits", toy / "splits.tsv", "-o", out / "m.pt"]}[how]
    fails(args, f"{path}:{line}: a NUL byte in the user or item id (an HDF5 output cannot hold one): "
                f"'U0\\x002\\tS0002\\t1'{PLAYS_FIX}")
    assert not out.exists()
    result = invoke(["subset", path, "-o", out, "--skip-bad", "--header", "yes" if header else "no"])
    assert f"{path}: skipped 1 bad line (--skip-bad)" in result.stderr
    assert (out / "plays.tsv").read_text() == "U001\tS0001\t3\n"


def _feed_fifo(path, data: bytes):
    """A named pipe at `path` that a thread fills with `data` once (as `mkfifo` and a writer)."""
    import os
    import threading

    os.mkfifo(path)

    def write():
        with open(path, "wb") as pipe:
            pipe.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("data", [CLEAN.encode(), gzip.compress(CLEAN.encode()),
                                  b"user\titem\tcount\n" + CLEAN.encode()])
def test_a_named_pipe_is_read_once_like_the_file(tmp_path, data):
    """The header detection and the fast readers opened the plays again: a FIFO hung forever."""
    (tmp_path / "clean.tsv").write_text(CLEAN)
    invoke(["subset", tmp_path / "clean.tsv", "-o", tmp_path / "clean", "--songs", 0, "--users", 0])
    thread = _feed_fifo(tmp_path / "fifo", data)
    invoke(["subset", tmp_path / "fifo", "-o", tmp_path / "out", "--songs", 0, "--users", 0])
    thread.join(5)
    for out in ("plays.tsv", "splits.tsv"):
        assert (tmp_path / "out" / out).read_bytes() == (tmp_path / "clean" / out).read_bytes(), out


def test_a_bad_line_in_a_named_pipe_is_named_by_the_pipe(tmp_path):
    thread = _feed_fifo(tmp_path / "fifo", b"u1\ti1\t3\nu1\ti2\t-1\n")
    fails(["subset", tmp_path / "fifo", "-o", tmp_path / "out"],
          f"{tmp_path / 'fifo'}:2: count '-1' is not a positive integer: 'u1\\ti2\\t-1'{PLAYS_FIX}")
    thread.join(5)
    assert_absent(tmp_path / "out" / "plays.tsv")


@pytest.mark.parametrize("source", ["/dev/stdin", "process substitution"])
def test_dev_stdin_and_process_substitution_are_read_once(tmp_path, source):
    """`dcue subset <(cat p.tsv)` and /dev/stdin said "has no plays": the first open consumed the data."""
    import os
    import shutil
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    (tmp_path / "p.tsv").write_text(CLEAN)
    if source == "/dev/stdin":
        command = [sys.executable, "-m", "dcue_cli", "-q", "subset", "/dev/stdin", "-o", str(tmp_path / "out"),
                   "--songs", "0", "--users", "0"]
        done = subprocess.run(command, input=CLEAN.encode(), capture_output=True, env=env, timeout=120, check=False)
    else:
        if not shutil.which("bash"):
            pytest.skip("no bash for <(...)")
        line = (f"{sys.executable} -m dcue_cli -q subset <(cat {tmp_path / 'p.tsv'}) -o {tmp_path / 'out'} "
                "--songs 0 --users 0")
        done = subprocess.run(["bash", "-c", line], capture_output=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert sorted((tmp_path / "out" / "plays.tsv").read_text().splitlines()) == sorted(CLEAN.splitlines())
