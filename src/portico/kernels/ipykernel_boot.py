"""Starts ipykernel with an iopub socket that never drops what Portico has not yet read.

Run as a script by a kernel's own interpreter, in place of `-m ipykernel_launcher`:
    python .../ipykernel_boot.py HWM -f CONNECTION_FILE ...
It imports nothing of Portico's (the kernel's environment need not have Portico), only
ipykernel, which the kernelspec it replaces needed anyway.

Why: ipykernel's iopub PUB socket keeps ZeroMQ's default send high-water mark of 1,000
messages.  While Portico is not reading (a GC pause, CPU steal, a stopped process), the
kernel's queue fills and the PUB socket silently drops every message past it, the last
status: idle included.  HWM 0 means no limit: the kernel holds what Portico has not yet
read, in its own memory, for as long as Portico is stalled; and at exit it waits until
Portico has read it (ipykernel waits 1 s and drops the rest).
"""

import sys
from pathlib import Path


def main() -> None:
    # Like ipykernel_launcher: this script's directory (Portico's package) must not shadow
    # the user's modules; ipykernel puts the working directory back itself.
    if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    hwm = int(sys.argv.pop(1))

    import zmq
    from ipykernel.kernelapp import IPKernelApp

    class HighWaterContext:
        """The kernel's context, with every PUB/XPUB socket it makes given the high-water mark."""

        def __init__(self, context: "zmq.Context[zmq.Socket[bytes]]") -> None:
            self._context = context

        def socket(self, kind: int, *args: object, **kwargs: object) -> "zmq.Socket[bytes]":
            sock = self._context.socket(kind, *args, **kwargs)  # type: ignore[arg-type]
            if kind in (zmq.PUB, zmq.XPUB):
                sock.setsockopt(zmq.SNDHWM, hwm)
            return sock

        def __getattr__(self, name: str) -> object:
            return getattr(self._context, name)

    class App(IPKernelApp):
        def init_iopub(self, context: "zmq.Context[zmq.Socket[bytes]]") -> None:
            super().init_iopub(HighWaterContext(context))  # type: ignore[no-untyped-call]
            # ipykernel lingers 1 s at exit: a restart's shutdown (or a cell that finishes after
            # it) then cuts what Portico has not read yet.  No limit here; the kernel's manager
            # still ends the process with a signal after shutdown_wait_time.
            self.iopub_thread.socket.linger = -1

    App.launch_instance()


if __name__ == "__main__":
    main()
