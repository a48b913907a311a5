"""Run a notebook in a fresh kernel (nbclient), as the grader, the exercise tests and the lesson timer do."""

from __future__ import annotations

from typing import Any


def _poll_in_slices(channel: Any, interval: float) -> None:
    """Make channel.get_msg(timeout) wait in slices of `interval` seconds instead of one long wait."""
    import inspect
    import time
    from queue import Empty

    original = channel.get_msg

    async def get_msg(timeout: float | None = None, **kw: Any) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
            try:
                msg = original(timeout=step, **kw)
                return await msg if inspect.isawaitable(msg) else msg
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg


def execute_notebook(nb, cwd: str, timeout: int | None = None, allow_errors: bool = False):
    """Execute a notebook (nbformat.NotebookNode, in place) in a fresh kernel with nbclient; returns it.

    The kernel's reply and output channels are polled in 1-second slices rather than with one long wait. We saw rare
    stalls right after widget cells in which the kernel was idle, its reply already sent, and the client still
    waiting (cf. jupyter/nbclient#312); a fresh poll picks up a message a long wait has missed.
    """
    from nbclient import NotebookClient

    class _Client(NotebookClient):
        async def async_start_new_kernel_client(self):  # type: ignore[override]
            kc = await super().async_start_new_kernel_client()
            _poll_in_slices(self.kc.shell_channel, 1.0)
            _poll_in_slices(self.kc.iopub_channel, 1.0)
            return kc

    client = _Client(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb
