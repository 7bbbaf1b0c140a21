"""The lab's MariaDB data folder with Neutron's and Keystone's schemas migrated, built once, copied per lab.

Migrating both schemas is the heaviest CPU work of a lab's build (neutron-db-manage: 142 alembic
migrations; keystone-manage db_sync), and it gives the same result every time for the same
packages. So `make lab-db` (a prerequisite of `make test` and `make lab`, like the lab virtualenv)
runs them once, on a private MariaDB exactly as the lab runs it (same my.cnf settings, same
databases and users), shuts it down cleanly and keeps its whole data folder under
/var/cache/ooa-lab/db-<key> (OOA_LAB_DB_CACHE overrides the folder); each lab copies that folder
(~0.3 s) instead of running mariadb-install-db and both migrations (measured: 1.9 + 4.7 + 2.7 s
alone, 2-3 times that in a lab build where they compete for the CPU).

What the tests prove does not change: the schema is the one neutron-db-manage and keystone-manage
made from the pinned packages, only made earlier. The key is a hash of what decides that result:
the lab's lock file (tests/lab/requirements-lab.txt), the MariaDB server's version, and this
module's text (the server settings, the SQL that makes the databases and users, the commands). A
key without its folder (packages changed, never built) is a clear failure of the lab's
prerequisites naming `make lab-db`, never a silent migration.

Concurrency: builds take an exclusive flock on <cache>/db.lock and publish with an atomic rename
(a lab never sees a half-built folder). Old keys' folders are left in place (labs of other
worktrees may use them); `rm -rf /var/cache/ooa-lab` is always safe between runs.

Entry points: `python -m tests.lab.dbcache build|path`; `prepare(datadir)` for the lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_VENV = Path(os.environ.get("OOA_LAB_VENV", REPO / ".lab-venv"))
CACHE = Path(os.environ.get("OOA_LAB_DB_CACHE", "/var/cache/ooa-lab"))
LOCK_FILE = REPO / "tests" / "lab" / "requirements-lab.txt"
DB_PASSWORD = "lab-only"  # a throw-away database on a private unix socket
DATABASES = ("neutron", "keystone")
SERVER = "mariadbd"
BINARIES = ["mariadbd", "mariadb-install-db", "mariadb", "mariadb-admin"]


def server_settings() -> str:
    """my.cnf's [mysqld] settings that shape the data folder (the lab adds only its paths)."""
    return """skip-networking
skip-name-resolve
user = root
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
performance_schema = OFF
max_connections = 200
"""


def my_cnf(base: Path) -> str:
    """A my.cnf whose data folder is <base>/data, socket <base>/mysqld.sock, logs in <base>."""
    return f"""[mysqld]
datadir = {base}/data
socket = {base}/mysqld.sock
pid-file = {base}/mysqld.pid
log-error = {base}/mariadb.err
{server_settings()}
[client]
socket = {base}/mysqld.sock
"""


def setup_sql() -> str:
    """The databases and their users, as DevStack makes them (one user per service)."""
    return "".join(
        f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8;\n"
        f"CREATE USER IF NOT EXISTS '{db}'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';\n"
        f"GRANT ALL ON {db}.* TO '{db}'@'localhost';\n"
        for db in DATABASES
    )


def server_version() -> str:
    return subprocess.run([SERVER, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def key() -> str:
    """What decides the migrated data folder: the lock file, the server's version, this module."""
    h = hashlib.sha256()
    for part in (LOCK_FILE.read_bytes(), server_version().encode(), Path(__file__).read_bytes()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def entry() -> Path:
    """The cached data folder for today's key."""
    return CACHE / f"db-{key()}"


def missing() -> list[str]:
    """What keeps the cache from being built or used here (empty when it can be)."""
    problems = [f"missing binary {b}" for b in BINARIES if shutil.which(b) is None]
    absent = [b for b in ("neutron-db-manage", "keystone-manage") if not (LAB_VENV / "bin" / b).exists()]
    if absent:
        problems.append(f"lab virtualenv {LAB_VENV} lacks {' '.join(absent)} (run `make lab-venv`)")
    return problems


def problem() -> str:
    """Why a lab cannot use the cache ('' when it can): for the lab's prerequisites."""
    if missing():
        return ""  # the lab's own prerequisites name what is missing
    where = entry()
    if not (where / "mysql").is_dir():
        return (
            f"no migrated lab database for this lock file and MariaDB at {where} "
            "(run `make lab-db`: it migrates Neutron's and Keystone's schemas once)"
        )
    return ""


def prepare(datadir: Path) -> float:
    """Copy the cached data folder to `datadir` (which must not exist); the seconds it took."""
    t = time.monotonic()
    source = entry()
    if not (source / "mysql").is_dir():
        raise RuntimeError(problem() or f"no cached lab database at {source}")
    datadir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(datadir)], check=True)
    return time.monotonic() - t


def _run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> None:
    p = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=600, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")


def _migrate(base: Path) -> dict[str, float]:
    """install-db, the server, the databases and users, both migrations (side by side), a clean
    shutdown; the seconds each part took."""
    timings: dict[str, float] = {}
    cnf = base / "my.cnf"
    cnf.write_text(my_cnf(base))
    my = f"--defaults-file={cnf}"
    t = time.monotonic()
    _run("mariadb-install-db", my, "--auth-root-authentication-method=socket")
    timings["install-db"] = time.monotonic() - t
    log = open(base / "mariadbd.out", "ab")  # noqa: SIM115 - the child keeps it
    server = subprocess.Popen([SERVER, my], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["mariadb", my, "-uroot", "-e", "select 1"], capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"MariaDB did not start: see {base}/mariadb.err")
            time.sleep(0.1)
        _run("mariadb", my, "-uroot", input=setup_sql())
        sock = base / "mysqld.sock"
        url = f"mysql+pymysql://{{0}}:{DB_PASSWORD}@localhost/{{0}}?unix_socket={sock}&charset=utf8"
        neutron_conf, keystone_conf = base / "neutron.conf", base / "keystone.conf"
        neutron_conf.write_text(
            "[DEFAULT]\ncore_plugin = ml2\nservice_plugins = router\n"
            f"[database]\nconnection = {url.format('neutron')}\n"
        )
        keystone_conf.write_text(f"[database]\nconnection = {url.format('keystone')}\n")
        env = {**os.environ, "PATH": f"{LAB_VENV}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        commands = {
            "neutron migrations": ["neutron-db-manage", "--config-file", str(neutron_conf), "upgrade", "heads"],
            "keystone db_sync": ["keystone-manage", "--config-file", str(keystone_conf), "db_sync"],
        }
        t = time.monotonic()
        running = {
            name: subprocess.Popen(
                args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for name, args in commands.items()
        }
        for name, p in running.items():
            out, _ = p.communicate(timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"{name} failed ({p.returncode}): {out.strip()[-2000:]}")
        timings["migrations (both, side by side)"] = time.monotonic() - t
        _run("mariadb-admin", my, "-uroot", "shutdown")
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return timings


def build() -> Path:
    """The cached data folder for today's key, built if missing (under the cache's flock)."""
    CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = entry()
    with open(CACHE / "db.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "mysql").is_dir():
            return target
        t = time.monotonic()
        base = CACHE / f".build-{os.getpid()}"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(mode=0o700)
        try:
            timings = _migrate(base)
            (base / "data").rename(target)  # atomic: a lab sees the whole folder or none
        finally:
            shutil.rmtree(base, ignore_errors=True)
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        print(f"lab database {target} built in {time.monotonic() - t:.1f} s ({parts})", file=sys.stderr)
    return target


def main(argv: list[str]) -> int:
    action = argv[1] if len(argv) > 1 else ""
    if action == "path":
        print(entry())
        return 0
    if action != "build":
        print("usage: python -m tests.lab.dbcache build|path", file=sys.stderr)
        return 2
    problems = missing()
    if os.geteuid() != 0:
        problems.append("not root (the cache is under /var/cache)")
    if problems:  # the lab's prerequisites then say it cannot run (a failure when CI=true)
        print(f"warning: lab database not built: {'; '.join(problems)}", file=sys.stderr)
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        build()
        return 0
    return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv))
