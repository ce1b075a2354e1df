"""The embeddings HDF5 contract, written by `embed` and `wmf`, read by `score` and `autotag`.

    /items/ids      (N,) UTF-8 strings      /items/vectors (N, d) float32
    /users/ids      (M,) UTF-8 strings      /users/vectors (M, d) float32   (optional)
    attributes: source (dcue, wmf, wmf-regression, popularity, ...), similarity (cosine|dot),
                plus whatever produced it (hyperparameters, input files, dcue version).
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from dcue_cli import __version__
from dcue_cli.errors import DcueError
from dcue_cli.io.atomic import atomic_path

SIMILARITIES = ("cosine", "dot")
WRITERS_HINT = "was it written by `dcue embed` or `dcue wmf`?"


@dataclass
class Embeddings:
    item_ids: np.ndarray  # (N,) object str
    item_vectors: np.ndarray  # (N, d) float32
    user_ids: Optional[np.ndarray] = None  # (M,) object str
    user_vectors: Optional[np.ndarray] = None  # (M, d) float32
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
    return np.array([str(v) for v in values], dtype=object)


def write_embeddings(path, emb: Embeddings) -> None:
    """Write `emb` atomically (temporary file beside `path`, renamed when complete)."""
    import h5py

    if emb.similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, not {emb.similarity!r}")
    items = np.asarray(emb.item_vectors, dtype=np.float32)
    if items.ndim != 2 or len(items) != len(emb.item_ids):
        raise ValueError("item_vectors must be (len(item_ids), d)")
    string = h5py.string_dtype("utf-8")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
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


def read_embeddings(path, *, need_users: bool = False) -> Embeddings:
    """Read and check an embeddings file; a one-line error names anything missing."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise DcueError(f"{path} does not exist: check the path.") from None
    except OSError as exc:
        raise DcueError(f"{path} is not a readable HDF5 file ({exc}): {WRITERS_HINT}") from None
    with f:
        for key in ("items/ids", "items/vectors"):
            if key not in f:
                raise DcueError(f"{path} has no /{key}: {WRITERS_HINT}")
        if need_users:
            for key in ("users/ids", "users/vectors"):
                if key not in f:
                    raise DcueError(f"{path} has no /{key}: user vectors are needed here; {WRITERS_HINT}")
        item_ids = _decode(f["items/ids"][()])
        item_vectors = np.asarray(f["items/vectors"][()], dtype=np.float32)
        user_ids = user_vectors = None
        if "users/ids" in f and "users/vectors" in f:
            user_ids = _decode(f["users/ids"][()])
            user_vectors = np.asarray(f["users/vectors"][()], dtype=np.float32)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    if item_vectors.ndim != 2 or len(item_vectors) != len(item_ids):
        raise DcueError(f"{path}: /items/vectors has shape {item_vectors.shape} but there are "
                        f"{len(item_ids)} /items/ids: the file is damaged; write it again.")
    if user_vectors is not None and (user_vectors.ndim != 2 or len(user_vectors) != len(user_ids)
                                     or user_vectors.shape[1] != item_vectors.shape[1]):
        raise DcueError(f"{path}: /users/vectors has shape {user_vectors.shape}, which does not fit "
                        f"{len(user_ids)} users of dimension {item_vectors.shape[1]}: write it again.")
    similarity = str(attrs.get("similarity", "dot"))
    if similarity not in SIMILARITIES:
        raise DcueError(f"{path}: attribute similarity={similarity!r} is not cosine or dot: {WRITERS_HINT}")
    return Embeddings(item_ids, item_vectors, user_ids, user_vectors,
                      source=str(attrs.get("source", "unknown")), similarity=similarity,
                      attrs=attrs, path=str(path))


def _decode(values) -> np.ndarray:
    return np.array([v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
                     for v in values], dtype=object)
