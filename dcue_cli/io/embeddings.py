"""The embeddings HDF5 contract, written by `embed` and `wmf`, read by `score` and `autotag`.

    /items/ids      (N,) UTF-8 strings      /items/vectors (N, d) float32
    /users/ids      (M,) UTF-8 strings      /users/vectors (M, d) float32   (optional)
    attributes: source (dcue, wmf, wmf-regression, popularity, ...), similarity (cosine|dot),
                plus whatever produced it (hyperparameters, input files, dcue version).
"""

import io
from dataclasses import dataclass, field

import numpy as np

from dcue_cli import __version__
from dcue_cli.errors import DcueError, first_line
from dcue_cli.io.atomic import write_bytes_atomically

SIMILARITIES = ("cosine", "dot")
WRITERS_HINT = "was it written by `dcue embed` or `dcue wmf`?"


@dataclass
class Embeddings:
    item_ids: np.ndarray  # (N,) object str
    item_vectors: np.ndarray  # (N, d) float32
    user_ids: np.ndarray | None = None  # (M,) object str
    user_vectors: np.ndarray | None = None  # (M, d) float32
    source: str = "unknown"
    similarity: str = "dot"
    attrs: dict = field(default_factory=dict)
    path: str = ""

    @property
    def name(self) -> str:
        return str(self.attrs.get("name") or self.source)

    def item_index(self) -> dict:
        return {item: i for i, item in enumerate(self.item_ids)}

    def user_index(self) -> dict:
        return {} if self.user_ids is None else {u: i for i, u in enumerate(self.user_ids)}


def _str_array(values) -> np.ndarray:
    # As UTF-8 bytes, undecodable bytes of an id (surrogate escapes) restored: h5py would refuse them.
    return np.array([str(v).encode("utf-8", "surrogateescape") for v in values], dtype=object)


def write_embeddings(path, emb: Embeddings) -> None:
    """Write `emb` atomically (temporary file beside `path`, renamed when complete)."""
    import h5py

    if emb.similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, not {emb.similarity!r}")
    items = np.asarray(emb.item_vectors, dtype=np.float32)
    if items.ndim != 2 or len(items) != len(emb.item_ids):
        raise ValueError("item_vectors must be (len(item_ids), d)")
    string = h5py.string_dtype("utf-8")
    # Built in memory, then written in one go: HDF5 left with a file it could not flush (a full
    # disk) crashes the process at exit.
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        g = f.create_group("items")
        g.create_dataset("ids", data=_str_array(emb.item_ids), dtype=string)
        g.create_dataset("vectors", data=items)
        if emb.user_vectors is not None:
            users = np.asarray(emb.user_vectors, dtype=np.float32)
            if users.ndim != 2 or len(users) != len(emb.user_ids) or users.shape[1] != items.shape[1]:
                raise ValueError("user_vectors must be (len(user_ids), d) with the items' d")
            g = f.create_group("users")
            g.create_dataset("ids", data=_str_array(emb.user_ids), dtype=string)
            g.create_dataset("vectors", data=users)
        f.attrs["source"] = emb.source
        f.attrs["similarity"] = emb.similarity
        f.attrs["dcue_version"] = __version__
        for key, value in emb.attrs.items():
            if key in ("source", "similarity", "dcue_version") or value is None:
                continue
            f.attrs[key] = value if isinstance(value, (int, float, str, bool, np.number)) else str(value)
    write_bytes_atomically(path, buffer.getbuffer())


def is_embeddings_file(path) -> bool:
    """True when `path` is an HDF5 file with an /items group (what `embed` and `wmf` write): the
    only kind of file their -o may replace."""
    import h5py

    from dcue_cli.io.mels import is_hdf5

    if not is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return "items" in f
    except (OSError, RuntimeError, ValueError):
        return False


def read_embeddings(path, *, need_users: bool = False) -> Embeddings:
    """Read and check an embeddings file; a one-line error names anything missing."""
    import os

    import h5py

    if os.path.isdir(path):  # h5py's message for it runs over several lines
        raise DcueError(f"{path} is a folder, not an embeddings file: {WRITERS_HINT}")
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise DcueError(f"{path} does not exist: check the path.") from None
    except OSError as exc:
        raise DcueError(f"{path} is not a readable HDF5 file ({first_line(exc)}): {WRITERS_HINT}") from None
    with f:
        try:
            item_ids, item_vectors, user_ids, user_vectors, attrs = _read_groups(f, path, need_users)
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:  # h5py on damaged metadata or data
            raise DcueError(f"{path} is damaged ({first_line(exc)}): write it again ({WRITERS_HINT})") from None
    if len(item_ids) == 0:
        raise DcueError(f"{path} holds no item vectors: write it again ({WRITERS_HINT})")
    if item_vectors.ndim != 2 or len(item_vectors) != len(item_ids):
        raise DcueError(f"{path}: /items/vectors has shape {item_vectors.shape} but there are "
                        f"{len(item_ids)} /items/ids: the file is damaged; write it again.")
    if user_vectors is not None and (user_vectors.ndim != 2 or len(user_vectors) != len(user_ids)
                                     or user_vectors.shape[1] != item_vectors.shape[1]):
        raise DcueError(f"{path}: /users/vectors has shape {user_vectors.shape}, which does not fit "
                        f"{len(user_ids)} users of dimension {item_vectors.shape[1]}: write it again.")
    _refuse_duplicates(path, item_ids, "item")
    if user_ids is not None:
        _refuse_duplicates(path, user_ids, "user")
    similarity = str(attrs.get("similarity", "dot"))
    if similarity not in SIMILARITIES:
        raise DcueError(f"{path}: attribute similarity={similarity!r} is not cosine or dot: {WRITERS_HINT}")
    return Embeddings(item_ids, item_vectors, user_ids, user_vectors,
                      source=str(attrs.get("source", "unknown")), similarity=similarity,
                      attrs=attrs, path=str(path))


def _read_groups(f, path, need_users):
    import h5py

    def dataset(key, kinds, what):
        node = f.get(key)  # a damaged object raises here: "damaged", not "no"
        if not isinstance(node, h5py.Dataset):
            extra = "user vectors are needed here; " if key.startswith("users/") else ""
            raise DcueError(f"{path} has no /{key}: {extra}{WRITERS_HINT}")
        if node.dtype.kind not in kinds:
            raise DcueError(f"{path}: /{key} holds {node.dtype} values, not {what}: {WRITERS_HINT}")
        return node[()]

    ids_kinds, vector_kinds = "OSUiu", "fiu"  # ids: strings (or numbers); vectors: real numbers
    item_ids = _decode(np.atleast_1d(dataset("items/ids", ids_kinds, "ids")))
    item_vectors = np.asarray(dataset("items/vectors", vector_kinds, "real numbers"), dtype=np.float32)
    user_ids = user_vectors = None
    if need_users or ("users/ids" in f and "users/vectors" in f):
        user_ids = _decode(np.atleast_1d(dataset("users/ids", ids_kinds, "ids")))
        user_vectors = np.asarray(dataset("users/vectors", vector_kinds, "real numbers"), dtype=np.float32)
    attrs = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return item_ids, item_vectors, user_ids, user_vectors, attrs


def _refuse_duplicates(path, ids, word: str) -> None:
    """Two vectors under one id: which one a score used would depend on the reader."""
    if len(set(ids)) == len(ids):
        return
    seen = set()
    for position, value in enumerate(ids):
        if value in seen:
            raise DcueError(f"{path}: {word} {str(value)!r} appears twice in /{word}s/ids (again at row "
                            f"{position:,}): each {word} needs one vector; write the file again.")
        seen.add(value)


def _decode(values) -> np.ndarray:
    return np.array([v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
                     for v in values], dtype=object)


def refuse_non_finite(path, vectors: np.ndarray, ids, word: str = "item") -> None:
    """A one-line error when any row of `vectors` holds NaN or infinity (a diverged run's output)."""
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise DcueError(f"{path}: {int(bad.sum()):,} {word} vectors hold NaN or infinity (e.g. {word} "
                        f"{str(ids[np.flatnonzero(bad)[0]])!r}): write the file again (a diverged run "
                        "gives such vectors).")


def refuse_overflow(path, users: np.ndarray, items: np.ndarray) -> None:
    """A one-line error when vectors are so large that a score could overflow float32 (a bound on
    any dot product and any squared norm, by Cauchy-Schwarz)."""
    largest = max(float(np.abs(users).max(initial=0)), float(np.abs(items).max(initial=0)))
    if users.shape[1] * largest * largest > 1e37:
        raise DcueError(f"{path}: vector values as large as {largest:.1e} make the scores overflow float32: "
                        "write the file again (a diverged run gives such vectors).")
