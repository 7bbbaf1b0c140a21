"""Real Keystone (2026.1: keystone 29.1.0) for the lab, and the lab host's Apache as DevStack sets it up.

    Keystone     uWSGI on the unix socket <work>/keystone-wsgi-public.socket (keystone.wsgi.api), as
                 DevStack runs it; its database `keystone` in the lab's MariaDB (tests/lab/neutron.py);
                 fernet tokens. Bootstrapped as DevStack does (admin, project admin, RegionOne, the
                 identity service with its public endpoint only), then DevStack's `service` project,
                 the `neutron` service user and the network service with its public endpoint.
    Apache       the host's web server, Debian's layout under /etc/apache2 (apache2.conf, ports.conf,
                 mods-available/-enabled, sites-available/-enabled), as DevStack leaves it: port 80 on
                 every address of the host, server-wide `ProxyPass /identity` and `/networking` to the
                 uWSGI sockets of Keystone and Neutron. The tls-front step adds its vhost on 443.
    catalog      as DevStack makes it: http://10.0.1.10/identity and http://10.0.1.10/networking
    clouds.yaml  /etc/openstack/clouds.yaml with cloud `devstack-admin`, as DevStack writes it

This machine's /etc is never written: the lab host is a container (tests/lab/container.py); this
module writes its files into the container's /etc (`etc`, the overlay root as the lab sees it), and
Apache runs inside as a service of the container, so the files the steps write over SSH and their
`apache2ctl graceful` are the ones this Apache reads. Keystone's uWSGI stays outside, in the host's
network namespace (its socket is in the lab's work folder, bound into the container). Only Debian's
apache2-bin (the server and its modules) is in the host's root filesystem, not the `apache2` package:
the two scripts of it the tls-front step calls (a2enmod/a2dismod, apache2ctl) are tests/lab/apache/,
installed in the host's /usr/local/bin.

Setup (uWSGI, the service user and endpoints; the database with its schema and bootstrap's rows,
and the fernet and credential keys, come made by `make lab-db`, tests/lab/dbcache.py) runs in a
thread that Neutron starts once MariaDB answers (`database_ready`), beside Neutron's own start;
Neutron's first API call waits for it (`token`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.lab import dbcache, neutron
from tests.lab.dbcache import ADMIN_PASSWORD, REGION
from tests.lab.neutron import LAB_VENV, wait_for

if TYPE_CHECKING:  # container.py imports neutron, which this module imports
    from tests.lab.container import Container

SERVICE_PASSWORD = "Lab-Service-Passw0rd"
APACHE = "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
APACHE_SCRIPTS = Path(__file__).resolve().parent / "apache"
# Debian's mods-available entries the lab's Apache needs (module -> its `# Depends:` line).
AVAILABLE = {
    "mpm_event": "",
    "authz_core": "",
    "setenvif": "",
    "mime": "",
    "socache_shmcb": "",
    "ssl": "setenvif mime socache_shmcb",
    "proxy": "",
    "proxy_http": "proxy",
    "proxy_uwsgi": "proxy",
    "proxy_wstunnel": "proxy",
    "rewrite": "",
    "headers": "",
}
# Enabled before the steps run: Ubuntu's defaults among them, and what DevStack enables (proxy, proxy_uwsgi).
ENABLED = ("mpm_event", "authz_core", "setenvif", "mime", "proxy", "proxy_uwsgi")


def prerequisites() -> list[str]:
    """What keeps the lab's Keystone and Apache from running here (empty when they can run)."""
    problems = []
    if not Path(APACHE).exists():
        problems.append(f"missing {APACHE} (package apache2-bin)")
    missing = [f"mod_{m}.so" for m in AVAILABLE if not (MODULES / f"mod_{m}.so").exists()]
    if missing:
        problems.append(f"missing Apache modules in {MODULES}: {' '.join(missing)}")
    if not (LAB_VENV / "bin" / "keystone-manage").exists():
        problems.append(f"lab virtualenv {LAB_VENV} lacks keystone-manage (run `make lab-venv`)")
    return problems


def parse_local_conf(text: str, conf: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """A DevStack local.conf: its localrc variables, and the sections its `[[post-config|<conf>]]`
    meta-sections set (section -> option -> value)."""
    localrc: dict[str, str] = {}
    sections: dict[str, dict[str, str]] = {}
    meta, section = "", ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[[") and line.endswith("]]"):
            meta, section = line[2:-2], ""
        elif meta == "local|localrc" and "=" in line:
            name, _, value = line.partition("=")
            localrc[name] = value
        elif meta == f"post-config|{conf}" and line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif meta == f"post-config|{conf}" and section and "=" in line:
            name, _, value = line.partition("=")
            sections.setdefault(section, {})[name.strip()] = value.strip()
    return localrc, sections


class Keystone:
    """Keystone and the host's Apache of one lab: `work` is its folder, `etc` the upper layer of the
    host's /etc, `neutron` the lab's Neutron (its MariaDB, its process groups, its API socket)."""

    def __init__(self, work: Path, etc: Path, host_ip: str, api: neutron.Neutron, local_conf: str):
        self.work = work
        self.localrc, self.neutron_conf = parse_local_conf(local_conf, "$NEUTRON_CONF")
        """The program's local.conf for this host: its localrc variables and what it sets in neutron.conf."""
        self.glance_conf = parse_local_conf(local_conf, "$GLANCE_API_CONF")[1]
        """What it sets in glance-api.conf (the lab has no Glance: its quota check runs alone, `oslo_limit`)."""
        self.etc = etc
        self.host_ip = host_ip
        self.neutron = api
        self.url = f"http://{host_ip}/identity"
        """Keystone as DevStack's catalog and clouds.yaml name it (KEYSTONE_SERVICE_URI)."""
        self.socket = work / "keystone-wsgi-public.socket"
        self.apache_run = work / "apache"
        self.timings: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._token: tuple[str, float] = ("", 0.0)
        self._lock = threading.Lock()

    # --- files -----------------------------------------------------------------------------------
    def write_files(self) -> None:
        """keystone.conf, the uWSGI ini, the host's Apache configuration and clouds.yaml (in the
        upper layer of the host's /etc)."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.apache_run.mkdir(exist_ok=True)
        sock = self.neutron.work / "mysql" / "mysqld.sock"
        database = f"mysql+pymysql://keystone:{neutron.DB_PASSWORD}@localhost/keystone?unix_socket={sock}&charset=utf8"
        (self.work / "keystone.conf").write_text(
            f"[DEFAULT]\nlog_file = {self.work}/keystone.log\n" + dbcache.keystone_conf_text(database, self.work)
        )
        # keystone.server.configure parses sys.argv with oslo.config: hide uWSGI's.
        (self.work / "keystone_api.py").write_text(
            "import sys\n\nsys.argv = sys.argv[:1]\nfrom keystone.wsgi.api import application  # noqa: E402,F401\n"
        )
        (self.work / "keystone-uwsgi.ini").write_text(neutron.uwsgi_ini(self.socket, self.work, "keystone_api"))
        self._write_apache()
        clouds = self.etc / "openstack" / "clouds.yaml"
        clouds.parent.mkdir(parents=True, exist_ok=True)
        clouds.write_text(
            "clouds:\n  devstack-admin:\n    auth:\n"
            f"      auth_url: {self.url}\n      username: admin\n      password: {ADMIN_PASSWORD}\n"
            "      project_name: admin\n      user_domain_id: default\n      project_domain_id: default\n"
            f"    region_name: {REGION}\n    identity_api_version: 3\n"
        )
        clouds.chmod(0o600)

    def _write_apache(self) -> None:
        a, run = self.etc / "apache2", self.apache_run
        for d in ("mods-available", "mods-enabled", "sites-available", "sites-enabled"):
            (a / d).mkdir(parents=True, exist_ok=True)
        (a / "apache2.conf").write_text(
            f"""# The lab host's Apache (tests/lab/keystone.py): Debian's apache2.conf, abbreviated.
PidFile {run}/apache2.pid
DefaultRuntimeDir {run}
Mutex file:{run} default
ErrorLog {run}/error.log
LogLevel warn
User nobody
Group nogroup
ServerName lab-host
IncludeOptional mods-enabled/*.load
IncludeOptional mods-enabled/*.conf
Include ports.conf
IncludeOptional sites-enabled/*.conf
"""
        )
        (a / "ports.conf").write_text("Listen 80\n\n<IfModule ssl_module>\n\tListen 443\n</IfModule>\n")
        for mod, depends in AVAILABLE.items():
            head = f"# Depends: {depends}\n" if depends else ""
            (a / "mods-available" / f"{mod}.load").write_text(f"{head}LoadModule {mod}_module {MODULES}/mod_{mod}.so\n")
        # Debian's mime.conf points at its mime-support's table; the lab's Apache serves no files.
        (a / "mods-available" / "mime.conf").write_text("TypesConfig /dev/null\n")
        (a / "mods-available" / "ssl.conf").write_text(
            f"<IfModule mod_ssl.c>\n\tSSLSessionCache shmcb:{run}/ssl_scache(512000)\n</IfModule>\n"
        )
        for mod in ENABLED:
            for ext in ("load", "conf"):
                link = a / "mods-enabled" / f"{mod}.{ext}"
                if (a / "mods-available" / f"{mod}.{ext}").exists() and not link.is_symlink():
                    link.symlink_to(f"../mods-available/{mod}.{ext}")
        # DevStack's write_uwsgi_config: one site per uWSGI service, a server-wide ProxyPass line.
        for site, path, sock in (
            ("keystone-wsgi-public", "/identity", self.socket),
            ("neutron-api", "/networking", self.neutron.uwsgi_socket),
        ):
            (a / "sites-available" / f"{site}.conf").write_text(
                f'ProxyPass "{path}" "unix:{sock}|uwsgi://uwsgi-uds-{site}" retry=0\n'
            )
            link = a / "sites-enabled" / f"{site}.conf"
            if not link.is_symlink():
                link.symlink_to(f"../sites-available/{site}.conf")

    def install_scripts(self, bindir: Path) -> None:
        """Debian's a2enmod/a2dismod and apache2ctl (the lab's stand-ins) into the host's /usr/local/bin."""
        for name, script in (("a2enmod", "a2enmod"), ("a2dismod", "a2enmod"), ("apache2ctl", "apache2ctl")):
            shutil.copy(APACHE_SCRIPTS / script, bindir / name)
            (bindir / name).chmod(0o755)

    # --- processes -------------------------------------------------------------------------------
    def start_apache(self, host: Container) -> None:
        """The host's Apache (the container's apache2-bin) as the host's apache2.service, as DevStack
        leaves it: its /etc, its PID namespace; `systemctl reload apache2` (what tls-front runs
        under systemd) is Debian's graceful restart. Stopped with the host."""
        reload = "/usr/local/bin/apache2ctl graceful"
        host.unit("apache2", APACHE, "-DFOREGROUND", output=self.apache_run / "apache2.out", reload=reload)
        wait_for("the host's Apache", lambda: self._http_code("/") not in ("000", ""), 30, 0.1)

    def database_ready(self) -> None:
        """Neutron's hook: MariaDB answers; set Keystone up in the background."""
        self._thread = threading.Thread(target=self._setup, name="keystone-setup", daemon=True)
        self._thread.start()

    def _setup(self) -> None:
        t0 = time.monotonic()
        try:
            # The schema, bootstrap's rows and both key folders come made by `make lab-db`
            # (tests/lab/dbcache.py): the database in the lab's MariaDB data folder, the keys here.
            dbcache.keystone_keys(self.work)
            env = {**self.neutron.env(), "OS_KEYSTONE_CONFIG_FILES": str(self.work / "keystone.conf")}
            self.neutron.start("keystone", "uwsgi", "--ini", str(self.work / "keystone-uwsgi.ini"), env=env)
            wait_for("Keystone through the host's Apache", lambda: self._http_code("/identity/v3") == "200", 60)
            self._register_neutron()
            if self.localrc.get("KEYSTONE_ADMIN_ENDPOINT") == "True":  # DevStack's bootstrap_keystone
                self._endpoint("identity", "admin", self.url)
        except BaseException as e:  # noqa: BLE001 - handed to the caller of token()
            self._error = e
        finally:
            self.timings["keystone setup"] = time.monotonic() - t0

    def _register_neutron(self) -> None:
        """DevStack's `service` project, the `neutron` user (role service there) and the network
        service with its public endpoint http://<host>/networking."""
        token = self._issue("admin", ADMIN_PASSWORD)
        roles = {r["name"]: r["id"] for r in self.call("GET", "/v3/roles", token=token)["roles"]}
        project = self.call(
            "POST", "/v3/projects", {"project": {"name": "service", "domain_id": "default"}}, token=token
        )["project"]
        user = self.call(
            "POST",
            "/v3/users",
            {"user": {"name": "neutron", "password": SERVICE_PASSWORD, "domain_id": "default"}},
            token=token,
        )["user"]
        for role in ("service", "admin"):  # DevStack's create_service_user gives both
            self.call("PUT", f"/v3/projects/{project['id']}/users/{user['id']}/roles/{roles[role]}", token=token)
        self.call("POST", "/v3/services", {"service": {"type": "network", "name": "neutron"}}, token=token)
        self._endpoint("network", "public", f"http://{self.host_ip}/networking")

    def _endpoint(self, service_type: str, interface: str, url: str) -> None:
        """An endpoint of the service of that type, in RegionOne."""
        token = self._issue("admin", ADMIN_PASSWORD)
        (service,) = [s for s in self.call("GET", "/v3/services", token=token)["services"] if s["type"] == service_type]
        endpoint = {"service_id": service["id"], "interface": interface, "region_id": REGION, "url": url}
        self.call("POST", "/v3/endpoints", {"endpoint": endpoint}, token=token)

    # --- the API -----------------------------------------------------------------------------------
    def _curl(self, url: str, *args: str, body: str | None = None) -> subprocess.CompletedProcess:
        """curl in the host's network namespace."""
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.neutron.netns}", "--", "curl", "-sS", *args, url],
            input=body,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def _http_code(self, path: str) -> str:
        """The HTTP status of GET http://<host><path> ("000": no answer)."""
        return self._curl(f"http://{self.host_ip}{path}", "-o", "/dev/null", "-w", "%{http_code}").stdout.strip()

    def call(
        self, method: str, path: str, body: dict | None = None, token: str = "", ok: tuple[int, ...] = (200, 201, 204)
    ) -> dict:
        """One call to Keystone's API through the host's Apache (the token from a header file)."""
        args = ["-X", method, "-o", "-", "-w", "\n%{http_code}"]
        if token:
            header = self.work / "token.header"
            header.touch(mode=0o600)
            header.write_text(f"X-Auth-Token: {token}\n")
            args += ["-H", f"@{header}"]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        p = self._curl(f"{self.url}{path}", *args, body=json.dumps(body) if body is not None else None)
        text, _, code = p.stdout.rpartition("\n")
        if p.returncode != 0 or not code.isdigit() or int(code) not in ok:
            raise RuntimeError(f"keystone {method} {path} -> {code or p.returncode}: {text[-500:]} {p.stderr}")
        return json.loads(text) if text.strip() else {}

    def _issue(self, user: str, password: str, project: str = "admin", scope: dict | None = None) -> str:
        """A token (password method, domain Default) scoped to the project, or to `scope`."""
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}},
                },
                "scope": scope or {"project": {"name": project, "domain": {"id": "default"}}},
            }
        }
        p = self._curl(
            f"{self.url}/v3/auth/tokens",
            "-X",
            "POST",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            body=json.dumps(body),
        )
        for line in p.stdout.splitlines():
            if line.lower().startswith("x-subject-token:"):
                return line.split(":", 1)[1].strip()
        raise RuntimeError(f"no token for {user}: {p.stdout[-500:]} {p.stderr}")

    def wait(self, timeout: float = 300) -> None:
        """Until the setup thread is done; its error, if any, raised here."""
        if self._thread is None:
            raise RuntimeError("Keystone's setup never started (Neutron's database_ready hook)")
        t = time.monotonic()
        self._thread.join(timeout)
        self.timings.setdefault("keystone waited for", time.monotonic() - t)
        if self._thread.is_alive():
            raise TimeoutError(f"Keystone's setup did not finish within {timeout:.0f} s")
        if self._error is not None:
            raise RuntimeError(f"Keystone's setup failed: {self._error}") from self._error

    def token(self) -> str:
        """An admin token (project admin) for the lab's own calls; a new one after 30 minutes."""
        with self._lock:
            value, issued = self._token
            if not value or time.monotonic() - issued > 1800:
                self.wait()
                self._token = (self._issue("admin", ADMIN_PASSWORD), time.monotonic())
            return self._token[0]

    def authtoken(self) -> str:
        """neutron.conf's keystonemiddleware section as DevStack writes it (lib/keystone
        configure_keystone_authtoken_middleware: `interface = public`), then the program's
        local.conf post-config for $NEUTRON_CONF [keystone_authtoken] over it."""
        options = {
            "auth_type": "password",
            "interface": "public",
            "auth_url": self.url,
            "username": "neutron",
            "password": SERVICE_PASSWORD,
            "user_domain_name": "Default",
            "project_name": "service",
            "project_domain_name": "Default",
            "www_authenticate_uri": self.url,
            **self.neutron_conf.get("keystone_authtoken", {}),
        }
        return "\n[keystone_authtoken]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())

    def keystoneauth(self, user: str) -> dict[str, str]:
        """A client section as DevStack's configure_keystoneauth writes it, for service user `user`."""
        return {
            "auth_type": "password",
            "auth_url": self.url,
            "username": user,
            "password": SERVICE_PASSWORD,
            "user_domain_name": "Default",
            "project_name": "service",
            "project_domain_name": "Default",
            "region_name": REGION,
        }

    def nova_client(self) -> str:
        """neutron.conf's [nova] as DevStack writes it (lib/neutron: the `nova` service user, to send
        Nova its ports' events, network-vif-plugged among them), then the program's post-config."""
        options = {**self.keystoneauth("nova"), **self.neutron_conf.get("nova", {})}
        return "\n[nova]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())

    def oslo_limit(self, post_config: bool = True) -> str:
        """glance-api.conf's [oslo_limit] as DevStack writes it (lib/glance configure_glance_quotas:
        no interface, so openstacksdk's default, public), then, with `post_config`, the program's
        local.conf post-config for $GLANCE_API_CONF [oslo_limit] over it. The user is the lab's
        admin (DevStack's `glance` user, with the system reader role, does not exist here) and the
        endpoint the network one (Glance's own in DevStack): oslo.limit reads its service and region."""
        token = self.token()
        services = self.call("GET", "/v3/services", token=token)["services"]
        (network,) = [s["id"] for s in services if s["type"] == "network"]
        (endpoint,) = [
            e["id"]
            for e in self.call("GET", "/v3/endpoints", token=token)["endpoints"]
            if e["service_id"] == network and e["interface"] == "public"
        ]
        options = {
            "user_domain_name": "Default",
            "password": ADMIN_PASSWORD,
            "username": "admin",
            "auth_type": "password",
            "auth_url": self.url,
            "system_scope": "all",
            "endpoint_id": endpoint,
            # the lab's own: each request bounded (a keystoneauth session option), so that a lookup
            # of the public address, not routed from the host, fails in seconds, not TCP's minutes
            "timeout": "5",
            **(self.glance_conf.get("oslo_limit", {}) if post_config else {}),
        }
        return "[oslo_limit]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())

    def endpoints(self) -> dict[tuple[str, str], str]:
        """The catalog: (service type, interface) -> URL."""
        token = self.token()
        types = {s["id"]: s["type"] for s in self.call("GET", "/v3/services", token=token)["services"]}
        listed = self.call("GET", "/v3/endpoints", token=token)["endpoints"]
        return {(types[e["service_id"]], e["interface"]): e["url"] for e in listed}
