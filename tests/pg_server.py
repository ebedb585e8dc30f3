"""A throwaway PostgreSQL server for tests and benchmarks, from /usr/lib/postgresql/*/bin."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def server_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin folder, or None."""
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(initdbs[-1]).parent if initdbs else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def temporary_postgres(bindir: Path, *settings: str):
    """Start a server in a temp dir on a free port; yield its connection facts; remove it after.

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
    """
    root = Path(tempfile.mkdtemp(prefix="recsys-pg-"))
    run_as = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = root / "data"
    subprocess.run([*run_as, bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)  # fmt: skip
    options = " ".join([f"-p {port} -k {root} -c listen_addresses=127.0.0.1", *(f"-c {s}" for s in settings)])
    subprocess.run([*run_as, bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-o", options, "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "postgres"}
    finally:
        subprocess.run([*run_as, bindir / "pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
