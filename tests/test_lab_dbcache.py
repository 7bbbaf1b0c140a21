"""tests/lab/dbcache.py, the lab's migrated MariaDB data folder: what keys it, how it is published
and copied, and that a missing one stops the lab with a clear message (the real build runs in
`make lab-db`, and every lab run starts Neutron and Keystone on its copy)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.lab import dbcache, neutron


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of the test's own, a lock file of its own, a fixed server version, and a
    migration that only makes the folders a data folder has (counted)."""
    lock = tmp_path / "requirements-lab.txt"
    lock.write_text("neutron==28.0.2\n")
    monkeypatch.setattr(dbcache, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(dbcache, "LOCK_FILE", lock)
    monkeypatch.setattr(dbcache, "server_version", lambda: "mariadbd  Ver 10.11.14-MariaDB")
    monkeypatch.setattr(dbcache, "missing", lambda: [])
    runs: list[Path] = []

    def migrate(base: Path) -> dict[str, float]:
        runs.append(base)
        for folder in ("data/mysql", *(f"data/{db}" for db in dbcache.DATABASES), *dbcache.KEY_FOLDERS):
            (base / "entry" / folder).mkdir(parents=True)
        (base / "entry" / "data" / "neutron" / "alembic_version.ibd").write_text("heads")
        (base / "entry" / "fernet-keys" / "0").write_text("a fernet key")
        return {"migrations": 0.0}

    monkeypatch.setattr(dbcache, "_migrate", migrate)
    return lock, runs


def test_the_key_follows_the_lock_file_and_the_server_version(cache, monkeypatch):
    lock, _ = cache
    first = dbcache.key()
    assert dbcache.key() == first and dbcache.entry().name == f"db-{first}"
    lock.write_text("neutron==28.0.3\n")
    assert dbcache.key() != first  # new packages: the schema must be migrated again
    second = dbcache.key()
    monkeypatch.setattr(dbcache, "server_version", lambda: "mariadbd  Ver 11.4.5-MariaDB")
    assert dbcache.key() not in (first, second)  # another server: another on-disk format


def test_the_key_follows_the_address_keystone_is_bootstrapped_with(cache, monkeypatch):
    """Bootstrap writes Keystone's catalog URL on the lab host's management IP into the rows: a
    lab on another address must not get a catalog naming the old one."""
    from tests.lab import net

    first = dbcache.key()
    assert f"http://{net.MGMT_IP}/identity" in dbcache.bootstrap_args()
    monkeypatch.setattr(net, "MGMT_IP", "10.0.9.10")
    assert dbcache.key() != first and "http://10.0.9.10/identity" in dbcache.bootstrap_args()


def test_the_labs_keystone_reads_the_key_folders_and_hash_rounds_the_cache_was_made_with(tmp_path, monkeypatch):
    """Bootstrap's admin password was hashed and the keys made with the cache's keystone.conf: the
    lab's keystone.conf names the key folders keystone_keys copies into its Keystone folder, and
    the same bcrypt rounds."""
    from tests.lab import keystone

    monkeypatch.setattr(neutron.shutil, "copy", lambda *a: None)  # api-paste.ini of the lab venv
    api = neutron.Neutron(tmp_path / "neutron", "ns", tmp_path / "ovs")
    ks = keystone.Keystone(tmp_path / "keystone", tmp_path / "etc", "10.0.1.10", api, "[[local|localrc]]\n")
    ks.write_files()
    conf = (tmp_path / "keystone" / "keystone.conf").read_text()
    for name in dbcache.KEY_FOLDERS:
        assert f"key_repository = {tmp_path}/keystone/{name}\n" in conf
    made_with = dbcache.keystone_conf_text("", Path("/cache")).split("[identity]")[1]
    assert made_with == conf.split("[identity]")[1] and "password_hash_rounds = 4" in made_with


def test_a_missing_folder_stops_the_lab_with_a_message_naming_make_lab_db(cache, tmp_path):
    message = dbcache.problem()
    assert "make lab-db" in message and str(dbcache.entry()) in message
    with pytest.raises(RuntimeError, match="make lab-db"):
        dbcache.prepare(tmp_path / "lab" / "mysql" / "data")
    assert not (tmp_path / "lab" / "mysql" / "data").exists()


def test_built_once_published_whole_and_copied_per_lab(cache, tmp_path):
    _, runs = cache
    built = dbcache.build()
    assert built == dbcache.entry() and (built / "data" / "mysql").is_dir()
    assert dbcache.problem() == ""
    assert dbcache.build() == built and len(runs) == 1  # cached: no second migration
    assert [p.name for p in dbcache.CACHE.iterdir() if p.name.startswith(".build-")] == []  # no half-built folder
    datadir = tmp_path / "lab" / "mysql" / "data"
    dbcache.prepare(datadir)
    assert (datadir / "neutron" / "alembic_version.ibd").read_text() == "heads"
    (datadir / "neutron" / "alembic_version.ibd").write_text("changed by a lab")
    assert (built / "data" / "neutron" / "alembic_version.ibd").read_text() == "heads"  # a copy: the cache stays clean
    # Keystone's key folders, made with bootstrap, go to the lab's Keystone folder
    dbcache.keystone_keys(tmp_path / "lab" / "keystone")
    assert (tmp_path / "lab" / "keystone" / "fernet-keys" / "0").read_text() == "a fernet key"
    assert (tmp_path / "lab" / "keystone" / "credential-keys").is_dir()


def test_builds_side_by_side_migrate_once(cache):
    """Two worktrees' `make lab-db` at once: the flock makes the second wait and find it built."""
    _, runs = cache
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(dbcache.build())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(runs) == 1 and results == [dbcache.entry()] * 2


def test_a_failed_build_publishes_nothing(cache, monkeypatch):
    def broken(base: Path) -> dict[str, float]:
        (base / "data" / "mysql").mkdir(parents=True)
        raise RuntimeError("neutron migrations failed (1)")

    monkeypatch.setattr(dbcache, "_migrate", broken)
    with pytest.raises(RuntimeError, match="neutron migrations failed"):
        dbcache.build()
    assert not dbcache.entry().exists()
    assert [p.name for p in dbcache.CACHE.iterdir() if p.name.startswith(".build-")] == []


def test_the_labs_mariadb_runs_with_the_settings_the_cache_was_made_with(tmp_path, monkeypatch):
    """The copied folder must be read by a server configured as the one that wrote it (InnoDB's
    log size, ...): the lab's my.cnf takes its server settings from dbcache."""
    monkeypatch.setattr(neutron.shutil, "copy", lambda *a: None)  # api-paste.ini of the lab venv
    api = neutron.Neutron(tmp_path / "neutron", "ns", tmp_path / "ovs")
    api.write_config()
    mysqld = (api.etc / "my.cnf").read_text().split("[client]")[0]
    assert dbcache.server_settings() in mysqld
    assert "innodb_log_file_size = 16M" in mysqld
    assert f"datadir = {tmp_path}/neutron/mysql/data" in mysqld
