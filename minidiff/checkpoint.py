"""Atomic safetensors checkpoints (base layer helper used by train.py and pretrained.py).

A write goes to a temporary file in the same folder, is flushed to disk, then renamed over the target, so a crash
mid-write leaves the previous checkpoint intact. Loading never unpickles: tensors come from safetensors and
everything else from the JSON stored in the file's metadata.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable

import torch


def _tmp_prefix(path: str | os.PathLike) -> str:
    return f".tmp-{os.path.basename(path)}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (owned by someone else) or we cannot tell: leave its file alone
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Delete the temporary files that interrupted writes of `path` left behind (a `kill -9` mid-save): those named
    .tmp-BASENAME-PID-* whose writing process no longer exists. Returns the removed paths."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix = _tmp_prefix(path)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for n in names:
        if not n.startswith(prefix):
            continue
        pid = n[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                os.remove(os.path.join(folder, n))
                removed.append(os.path.join(folder, n))
            except OSError:
                pass
    return removed


def check_writable(path: str | os.PathLike, what: str = "the output") -> None:
    """Fail now, not after an hour of training, if `path` cannot be written: its folder is created if needed and a
    probe file is written and removed there; `path` itself must not be a folder."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{what} {path} is a folder; give a file path (e.g. {os.path.join(path, 'run.safetensors')})")
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=_tmp_prefix(path) + f"{os.getpid()}-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise PermissionError(f"cannot write {what} {path} ({e.strerror or e}); choose a folder you can write to") \
            from None


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "",
                 make_folder: bool = True) -> None:
    """Call `write(tmp)` on a temporary file in `path`'s folder, flush it to disk, then rename it over `path`: a
    reader (or a crash) never sees half a file. On any error the temporary file is removed and the error re-raised;
    temporaries left by earlier writes that were killed (`kill -9`) are removed first."""
    folder = os.path.dirname(os.path.abspath(path))
    if make_folder:
        os.makedirs(folder, exist_ok=True)
    elif not os.path.isdir(folder):
        raise FileNotFoundError(f"the folder {folder} does not exist: create it first or choose another path")
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path) + f"{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates files readable by the owner only
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def check_finite(tensors: dict[str, torch.Tensor], source: str) -> None:
    """Every floating-point tensor must be finite: weights full of NaN load without complaint otherwise, and then
    every sample is NaN."""
    for k, v in tensors.items():
        if v.dtype.is_floating_point and not bool(torch.isfinite(v).all()):
            raise ValueError(f"{source} holds NaN or infinite values in {k!r}: the run that wrote it diverged or the "
                             "file is damaged; retrain, or restore the file from git")


def save_atomic(path: str, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Write `tensors` (+ JSON-serialisable `meta`) to `path` atomically."""
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_atomic(path, lambda tmp: save_file(clean, tmp, metadata={"minidiff": json.dumps(meta or {})}),
                 ".safetensors")


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    """Write `obj` as indented JSON to `path` via a temporary file in the same folder and a rename."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj, indent=1) + "\n")

    write_atomic(path, write, ".json")


def load(path: str, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by save_atomic: (tensors, meta). Clear errors for a missing or corrupt file."""
    from safetensors import safe_open

    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    remove_stale_temporaries(path)
    try:
        with safe_open(path, framework="pt", device=str(device)) as f:
            meta = json.loads((f.metadata() or {}).get("minidiff", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises various errors for truncated/garbled files
        raise ValueError(f"checkpoint {path} is corrupt or not a safetensors file ({type(e).__name__}: {e}); "
                         "delete it and train again, or restore it from git") from None
    return tensors, meta


# ------------------------------------------------------------------------------------ the optimizer's state in a file


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state_dict split for safetensors: its tensors as "optim.<param id>.<name>" (e.g. Adam's exp_avg)
    and the rest (param_groups, scalar state) as JSON-serialisable metadata."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """The inverse of `optimizer_tensors`: put the saved state back into `opt`."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
