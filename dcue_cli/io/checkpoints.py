"""The model checkpoint (`dcue train -o model.pt`): written atomically, read with one-line errors.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) that loads with
`torch.load(path, weights_only=True)`: a file holding Python objects is refused, since
loading it could run code. Its keys: `format` ("dcue-model"), `version`, `dcue_version`,
`objective`, `similarity` (cosine or dot), `source`, `model_config` and `train_config`
(dicts), `feature_config` (the mel settings the model was trained on), `normalisation`
(mean and std), `model` (the weights), `optimizer`, `position` (epoch, step, lr scale), `best`
(validation AUC, epoch, patience counters), `user_ids`, `data` (a fingerprint of the inputs),
`target` (the regression target's provenance), `rng`; for the regression baseline also
`user_vectors` and `target_scale`. `dcue_cli.train.state` builds and restores it.
"""

import io
import os

from dcue_cli.errors import DcueError
from dcue_cli.io.mels import is_hdf5

CHECKPOINT_FORMAT = "dcue-model"
CHECKPOINT_VERSION = 1
# what a torch.save file starts with: a zip archive (torch >= 1.6) or a protocol-2+ pickle (older)
TORCH_HEADS = (b"PK\x03\x04", b"\x80")
CHECKPOINT_KEYS = ("model", "model_config", "train_config", "user_ids", "normalisation", "feature_config")


def save_checkpoint(path, state: dict) -> None:
    """torch.save to a temporary file beside `path`, renamed into place when complete."""
    import torch

    from dcue_cli.io.atomic import write_bytes_atomically

    # in memory first: torch's own file writer reports a full disk as an opaque RuntimeError
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomically(path, buffer.getbuffer())


def load_checkpoint(path, map_location="cpu") -> dict:
    """A checkpoint written by `dcue train`, loaded with weights_only=True; one-line errors."""
    import torch

    path = str(path)
    if not os.path.exists(path):
        raise DcueError(f"{path} does not exist: check the path (write it with `dcue train`).")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise DcueError(f"{path} is empty, not a dcue model checkpoint: write it with `dcue train`.")
    if is_hdf5(path):
        raise DcueError(f"{path} is an HDF5 file (mels or embeddings?), not a dcue model checkpoint: give the "
                        "model.pt written by `dcue train`.")
    if not head.startswith(TORCH_HEADS):
        kind = "a text file" if _looks_like_text(head) else "not a torch file"
        raise DcueError(f"{path} is not a dcue model checkpoint ({kind}, not a torch checkpoint): "
                        "write it with `dcue train`.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        if type(exc).__name__ == "UnpicklingError" and "Weights only load failed" in str(exc):
            why = "it holds Python objects, not only tensors and plain values: refused, as loading it could run code"
        else:
            why = f"truncated, damaged or not a torch file: {type(exc).__name__}: {mismatch_detail(exc)}"
        raise DcueError(f"{path} is not a dcue model checkpoint ({why}): write it with `dcue train`.") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DcueError(f"{path} is not a dcue model checkpoint (no format={CHECKPOINT_FORMAT!r}): "
                        "write it with `dcue train`.")
    if int(ckpt.get("version", 0)) > CHECKPOINT_VERSION:
        raise DcueError(f"{path} was written by a newer dcue (checkpoint version {ckpt['version']}): "
                        "upgrade dcue to read it.")
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        raise DcueError(f"{path} is a damaged dcue checkpoint (no {', '.join(missing)}): "
                        "write it again with `dcue train`.")
    return ckpt


def _looks_like_text(head: bytes) -> bool:
    """Whether a file's first bytes are printable text (a TSV or list given as a checkpoint)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def model_from_checkpoint(ckpt: dict, path="the checkpoint"):
    """The DCUE network of a checkpoint, its weights loaded; a one-line DcueError when they do
    not fit its own model_config (a damaged or hand-edited checkpoint)."""
    from dcue_cli.model import DCUE

    model = DCUE(model_config_of(ckpt, path))
    load_weights(model, ckpt["model"], path)
    return model


def model_config_of(ckpt: dict, path):
    from dcue_cli.model import ModelConfig

    try:
        return ModelConfig.from_dict(ckpt["model_config"])
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise DcueError(f"{path} has an unusable model_config ({mismatch_detail(exc)}): "
                        "write it again with `dcue train`.") from None


def load_weights(module, state: dict, path, what="model weights") -> None:
    """module.load_state_dict(state), with a one-line error naming the first mismatch."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise DcueError(f"{path}: its {what} do not fit the model it describes ({mismatch_detail(exc)}): "
                        "it is damaged or from another model size; write it again with `dcue train`.") from None


def mismatch_detail(exc) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "size mismatch" in line or "Missing key" in line
                   or "Unexpected key" in line), lines[0] if lines else type(exc).__name__)
    return detail.rstrip(".")[:300]
