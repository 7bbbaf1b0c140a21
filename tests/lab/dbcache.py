"""The lab's MariaDB data folder with the schemas of Neutron, Keystone, Nova (nova_api, nova_cell0,
nova_cell1: cell0 and cell1 mapped), Placement and Glance migrated and Keystone bootstrapped, with
Keystone's key repositories: built once, copied per lab.

Migrating the schemas is the heaviest CPU work of a lab's build (neutron-db-manage: 142 alembic
migrations; keystone-manage db_sync; DevStack's init_nova with nova-manage: api_db sync, cell_v2
map_cell0, db sync, db online_data_migrations, cell_v2 create_cell; placement-manage db sync;
glance-manage db_sync), and it gives the same result every time for the same
packages; so do Keystone's fernet and credential key setups and its bootstrap (DevStack's admin,
project admin, RegionOne, the identity service and its public endpoint: rows only). So `make
lab-db` (a prerequisite of `make test` and `make lab`, like the lab virtualenv) runs them once, on
a private MariaDB exactly as the lab runs it (same my.cnf settings, same databases and users),
shuts it down cleanly and keeps its whole data folder and both key folders under
/var/cache/ooa-lab/db-<key> (OOA_LAB_DB_CACHE overrides the folder); each lab copies them (~0.3 s)
instead of running mariadb-install-db, the migrations and three keystone-manage commands (measured
before Nova, Placement and Glance joined: 1.9 + 4.7 + 2.7 s alone for the first three, 2-3 times
that in a lab build where they compete for the CPU; with them the cache's build takes ~35 s). The
key setups ran beside bootstrap in the lab, which raced: bootstrap fails when it loads the token
provider before fernet_setup has made the keys; here they run in order.

What the tests prove does not change: the schema and rows are the ones the services' own tools
made from the pinned packages, only made earlier (Nova's cell mappings as URL templates, filled from
each lab's own nova.conf). The key is a hash of what decides
that result: the lab's lock file (tests/lab/requirements-lab.txt), the MariaDB server's version,
this module's text (the server settings, the SQL that makes the databases and users, the commands)
and the bootstrap's arguments (Keystone's URL on the lab host's management IP). A key without its
folder (packages changed, never built) is a clear failure of the lab's prerequisites naming `make
lab-db`, never a silent migration.

Concurrency: builds take an exclusive flock on <cache>/db.lock and publish with an atomic rename
(a lab never sees a half-built folder). Old keys' folders are left in place (labs of other
worktrees may use them); `rm -rf /var/cache/ooa-lab` is always safe between runs.

Entry points: `python -m tests.lab.dbcache build|path`; `prepare(datadir)` and
`keystone_keys(folder)` for the lab.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_VENV = Path(os.environ.get("OOA_LAB_VENV", REPO / ".lab-venv"))
CACHE = Path(os.environ.get("OOA_LAB_DB_CACHE", "/var/cache/ooa-lab"))
LOCK_FILE = REPO / "tests" / "lab" / "requirements-lab.txt"
DB_PASSWORD = "lab-only"  # a throw-away database on a private unix socket
# database -> its user, as DevStack names them (Nova's three databases share the user `nova`)
DATABASES = {
    "neutron": "neutron",
    "keystone": "keystone",
    "nova_api": "nova",
    "nova_cell0": "nova",
    "nova_cell1": "nova",
    "placement": "placement",
    "glance": "glance",
}
# Nova's cell mappings (rows in nova_api) name their cell's database and message queue. Stored as
# Nova's URL templates, filled from the reading service's own [database] connection and
# transport_url, they hold in every lab: each lab's MariaDB has its own socket path.
CELL_DB_TEMPLATE = "{scheme}://{username}:{password}@{hostname}/%s?{query}"
CELL_MQ_TEMPLATE = "{scheme}://{username}:{password}@{hostname}:{port}/{path}"
ADMIN_PASSWORD = "Lab-Admin-Passw0rd"  # a throw-away cloud in network namespaces; DevStack's charset
REGION = "RegionOne"
KEY_FOLDERS = ("fernet-keys", "credential-keys")
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
        f"CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';\n"
        f"GRANT ALL ON {db}.* TO '{user}'@'localhost';\n"
        for db, user in DATABASES.items()
    )


def keystone_url() -> str:
    """Keystone as DevStack's catalog and clouds.yaml name it (KEYSTONE_SERVICE_URI) on the lab host."""
    from tests.lab.net import MGMT_IP  # net imports neutron, which imports this module

    return f"http://{MGMT_IP}/identity"


def bootstrap_args() -> list[str]:
    """keystone-manage bootstrap as DevStack's bootstrap_keystone runs it."""
    return [
        "bootstrap",
        *("--bootstrap-password", ADMIN_PASSWORD, "--bootstrap-username", "admin"),
        *("--bootstrap-project-name", "admin", "--bootstrap-role-name", "admin"),
        *("--bootstrap-service-name", "keystone", "--bootstrap-region-id", REGION),
        *("--bootstrap-public-url", keystone_url()),
    ]


def keystone_conf_text(url: str, keys: Path) -> str:
    """What keystone-manage needs here: the database, the key folders under `keys`, and bcrypt's
    fewest rounds (the lab's keystone.conf has them too: a token request takes ~0.1 s instead of
    ~1 s on a busy lab; bootstrap's admin password is hashed with them)."""
    return (
        f"[database]\nconnection = {url}\n[fernet_tokens]\nkey_repository = {keys}/fernet-keys\n"
        f"[fernet_receipts]\nkey_repository = {keys}/fernet-keys\n"
        f"[credential]\nkey_repository = {keys}/credential-keys\n"
        "[token]\nprovider = fernet\n[identity]\npassword_hash_rounds = 4\n"
    )


def server_version() -> str:
    return subprocess.run([SERVER, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def key() -> str:
    """What decides the cached folders: the lock file, the server's version, this module, bootstrap's arguments."""
    h = hashlib.sha256()
    parts = (LOCK_FILE.read_bytes(), server_version().encode(), Path(__file__).read_bytes())
    for part in (*parts, " ".join(bootstrap_args()).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def entry() -> Path:
    """The cache's folder for today's key: data (MariaDB's), fernet-keys, credential-keys."""
    return CACHE / f"db-{key()}"


def missing() -> list[str]:
    """What keeps the cache from being built or used here (empty when it can be)."""
    problems = [f"missing binary {b}" for b in BINARIES if shutil.which(b) is None]
    absent = [
        b
        for b in ("neutron-db-manage", "keystone-manage", "nova-manage", "placement-manage", "glance-manage")
        if not (LAB_VENV / "bin" / b).exists()
    ]
    if absent:
        problems.append(f"lab virtualenv {LAB_VENV} lacks {' '.join(absent)} (run `make lab-venv`)")
    return problems


def problem() -> str:
    """Why a lab cannot use the cache ('' when it can): for the lab's prerequisites."""
    if missing():
        return ""  # the lab's own prerequisites name what is missing
    where = entry()
    if not (where / "data" / "mysql").is_dir():
        return (
            f"no migrated lab database for this lock file and MariaDB at {where} "
            "(run `make lab-db`: it migrates the services' schemas and bootstraps Keystone once)"
        )
    return ""


def prepare(datadir: Path) -> float:
    """Copy the cached data folder to `datadir` (which must not exist); the seconds it took."""
    t = time.monotonic()
    _copy(entry() / "data", datadir)
    return time.monotonic() - t


def keystone_keys(folder: Path) -> None:
    """Copy the cached fernet and credential key folders into `folder` (modes kept: 0700 folders)."""
    source = entry()  # its key runs `mariadbd --version`: once
    for name in KEY_FOLDERS:
        _copy(source / name, folder / name)


def _copy(source: Path, target: Path) -> None:
    if not source.is_dir():
        raise RuntimeError(problem() or f"no {source} in the lab's cache")
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(target)], check=True)


def _run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> None:
    p = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=600, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")


def _migrate(base: Path) -> dict[str, float]:
    """install-db, the server, the databases and users, the migrations (side by side), Keystone's
    key setups (side by side) and bootstrap, a clean shutdown; the seconds each part took. What is
    kept goes to <base>/entry (data, fernet-keys, credential-keys)."""
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

        def url(user: str, db: str = "") -> str:
            return f"mysql+pymysql://{user}:{DB_PASSWORD}@localhost/{db or user}?unix_socket={sock}&charset=utf8"

        neutron_conf, keystone_conf = base / "neutron.conf", base / "keystone.conf"
        neutron_conf.write_text(
            f"[DEFAULT]\ncore_plugin = ml2\nservice_plugins = router\n[database]\nconnection = {url('neutron')}\n"
        )
        keep = base / "entry"
        keep.mkdir()
        keystone_conf.write_text(keystone_conf_text(url("keystone"), keep))
        nova_conf, placement_conf, glance_conf = base / "nova.conf", base / "placement.conf", base / "glance.conf"
        nova_conf.write_text(
            # any broker URL: nova-manage only parses it (the cell's mapping keeps the template)
            "[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/\n"
            f"[database]\nconnection = {url('nova', 'nova_cell1')}\n"
            f"[api_database]\nconnection = {url('nova', 'nova_api')}\n"
        )
        placement_conf.write_text(f"[placement_database]\nconnection = {url('placement')}\n")
        glance_conf.write_text(f"[database]\nconnection = {url('glance')}\n")
        env = {**os.environ, "PATH": f"{LAB_VENV}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        manage = ["keystone-manage", "--config-file", str(keystone_conf)]
        owner = ["--keystone-user", "root", "--keystone-group", "root"]
        nova = ["nova-manage", "--config-file", str(nova_conf)]
        t = time.monotonic()
        _side_by_side(
            {
                "neutron migrations": [["neutron-db-manage", "--config-file", str(neutron_conf), "upgrade", "heads"]],
                "keystone db_sync": [[*manage, "db_sync"]],
                # DevStack's init_nova (CELLSV2_SETUP=singleconductor: the main database is cell1's)
                "nova": [
                    [*nova, "api_db", "sync"],
                    [*nova, "cell_v2", "map_cell0", "--database_connection", CELL_DB_TEMPLATE % "nova_cell0"],
                    [*nova, "db", "sync"],
                    [*nova, "db", "online_data_migrations"],
                    [
                        *nova,
                        "cell_v2",
                        "create_cell",
                        "--name",
                        "cell1",
                        "--verbose",
                        "--database_connection",
                        CELL_DB_TEMPLATE % "nova_cell1",
                        "--transport-url",
                        CELL_MQ_TEMPLATE,
                    ],
                ],
                "placement-manage db sync": [["placement-manage", "--config-file", str(placement_conf), "db", "sync"]],
                "glance-manage db_sync": [["glance-manage", "--config-file", str(glance_conf), "db_sync"]],
            },
            env,
        )
        timings["migrations (side by side)"] = time.monotonic() - t
        t = time.monotonic()
        _side_by_side({f"keystone {k}": [[*manage, k, *owner]] for k in ("fernet_setup", "credential_setup")}, env)
        _side_by_side({"keystone bootstrap": [[*manage, *bootstrap_args()]]}, env)  # it loads the fernet keys
        timings["keystone keys and bootstrap"] = time.monotonic() - t
        _run("mariadb-admin", my, "-uroot", "shutdown")
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    (base / "data").rename(keep / "data")
    return timings


def _side_by_side(commands: dict[str, list[list[str]]], env: dict[str, str]) -> None:
    """Run the named sequences at once (each one's commands in order); the first failure (its
    command, code and output) is raised."""

    def sequence(name: str) -> None:
        for args in commands[name]:
            p = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                out = (p.stdout + p.stderr).strip()[-2000:]
                raise RuntimeError(f"{name}: {' '.join(args[:4])} ... failed ({p.returncode}): {out}")

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        for done in [pool.submit(sequence, name) for name in commands]:
            done.result()


def build() -> Path:
    """The cache's folder for today's key, built if missing (under the cache's flock)."""
    CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = entry()
    with open(CACHE / "db.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "data" / "mysql").is_dir():
            return target
        t = time.monotonic()
        base = CACHE / f".build-{os.getpid()}"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(mode=0o700)
        try:
            timings = _migrate(base)
            (base / "entry").rename(target)  # atomic: a lab sees the whole folder or none
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
