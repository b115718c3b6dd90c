"""A throwaway PostgreSQL server for the distributed-tuning test: Debian's binaries, a temp data folder.

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user (Debian's
package creates it), else as ``nobody``; its folder is made outside pytest's temp root (which is
private to root) and given to that user. It listens on 127.0.0.1 on a free port (its unix socket in
its own folder), with password authentication over TCP and durability off (a test database).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers.mlflow_server import free_port
from helpers.paths import require_postgres

USER = "questlab"  # the database superuser initdb creates
PASSWORD = "pg-s3cret"  # in the URLs: a test checks it never reaches the records
START_TIMEOUT_S = 60


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        folder = Path(on_path).resolve().parent  # /usr/local/bin/initdb may link into Debian's folder
        if (folder / "pg_ctl").exists():
            return folder
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: _version(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(".") if x.isdigit())


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (this user) unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")


@dataclass
class Postgres:
    """A running server; :meth:`url` gives a SQLAlchemy URL of one of its databases."""

    bin_dir: Path
    root: Path
    port: int
    user: pwd.struct_passwd | None

    def url(self, database: str, password: bool = True) -> str:
        auth = f"{USER}:{PASSWORD}" if password else USER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (over TCP, with the password, as the tests connect); return its URL."""
        import psycopg

        # autocommit: CREATE DATABASE cannot run in a transaction
        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no server log)"

    def _run(self, tool: str, *args: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
        cmd = [str(self.bin_dir / tool), *args]
        ids = {} if self.user is None else {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root, **ids)
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}\n"
                f"server log: {self.log_tail()}"
            )
        return done

    def start(self) -> None:
        data = self.root / "data"
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        self._chown(pwfile)
        self._run(
            "initdb", "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        options = (
            f"-k {self.root} -h 127.0.0.1 -p {self.port} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "start", "-D", str(data), "-l", str(self.log), "-w", "-t", str(START_TIMEOUT_S), "-o", options
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "stop", "-D", str(self.root / "data"), "-m", "immediate", "-w", timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """Start a PostgreSQL server for the block and remove it after.

    Without PostgreSQL's binaries the test skips (naming what is missing), except under CI or with
    ``QUESTLAB_REQUIRE_POSTGRES=1``, where it fails (see :func:`helpers.paths.require_postgres`).
    Binaries that are there but cannot start a server fail the test: that is a real error.
    """
    bin_dir = require_postgres(find_bin_dir())
    user = _server_user()
    # Not under pytest's temp root: it is private to root, and the server runs as another user.
    root = Path(tempfile.mkdtemp(prefix="questlab-pg-"))
    server = Postgres(bin_dir=bin_dir, root=root, port=free_port(), user=user)
    server._chown(root)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()
