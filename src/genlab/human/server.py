"""Serving a study with waitress, a multi-threaded production WSGI server (pure Python).

:func:`serve` blocks (``genlab hype serve``); :func:`start` runs the same server in a
background thread and returns a handle with its ``url`` and ``stop()`` (tests, the
scripted demo).
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from waitress.server import create_server

from genlab.human.app import create_app


@dataclass
class Running:
    """A server started by :func:`start`: its base ``url`` (no trailing slash) and ``port``."""

    url: str
    port: int
    _server: object
    _thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listening socket and the open connections, finish the worker threads."""
        srv = self._server
        srv.task_dispatcher.shutdown()
        for ch in list(srv._map.values()):  # the listener and every open channel
            ch.close()
        self._thread.join(timeout)


def make_server(db_path: str | Path, *, host: str = "127.0.0.1", port: int = 8000, threads: int = 8):
    """The waitress server for the study in ``db_path`` (``port=0``: any free port)."""
    return create_server(create_app(db_path), host=host, port=port, threads=threads, ident="genlab-hype",
                         clear_untrusted_proxy_headers=True)


def start(db_path: str | Path, *, host: str = "127.0.0.1", port: int = 0, threads: int = 8) -> Running:
    """Serve ``db_path`` in a daemon thread; returns at once with the bound address."""
    srv = make_server(db_path, host=host, port=port, threads=threads)
    t = threading.Thread(target=srv.run, name="genlab-hype-server", daemon=True)
    t.start()
    port = int(srv.effective_port)
    return Running(f"http://{host}:{port}", port, srv, t)


def serve(db_path: str | Path, *, host: str = "127.0.0.1", port: int = 8000, threads: int = 8,
          announce=print) -> None:
    """Serve ``db_path`` until interrupted, announcing the rater and admin addresses."""
    from genlab.human.db import Study

    study = Study.load(db_path)
    srv = make_server(db_path, host=host, port=port, threads=threads)
    base = f"http://{host}:{int(srv.effective_port)}"
    announce(f"HYPE study ({study.config.protocol}) on {len(study.models)} model(s): "
             f"{', '.join(study.models)}; database {Path(db_path).resolve()}")
    announce(f"raters:  {base}/")
    announce(f"admin:   {base}/admin?token={study.admin_token}")
    announce("stop with Ctrl-C; every answer is committed as it arrives, and raters resume on restart")

    def _term(_signum, _frame):  # SIGTERM (kill, systemd, docker stop): finish in-flight requests, as Ctrl-C
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _term)
    try:
        srv.run()  # returns after Ctrl-C / SIGTERM once the worker threads are done
    finally:
        srv.close()
    announce("stopped; every committed judgement is in the database")
