"""Nova's control plane, Placement and Glance (2026.1: nova 33.0.x, openstack-placement 15.0.0,
glance 32.0.0) for the lab, configured as DevStack's lib/nova, lib/placement and lib/glance
configure them, beside the lab's Neutron and Keystone (no nova-compute: no hypervisor yet).

    placement-api   uWSGI (placement.wsgi.api) on <work>/placement-api.socket, Apache `/placement`
    glance-api      uWSGI (glance.wsgi.api) on <work>/glance-api.socket, Apache `/image`; the file
                    store in <work>/images; Keystone's unified limits for its quotas (DevStack's
                    GLANCE_ENABLE_QUOTAS: registered limits, the `glance` user a system reader)
    nova-api        uWSGI (nova.wsgi.osapi_compute) on <work>/nova-api.socket, Apache `/compute`
    nova-conductor, nova-scheduler   one conductor for the whole cloud (DevStack's CELLSV2_SETUP=
                    singleconductor: nova.conf's database is cell1's), one worker each

The databases (nova_api, nova_cell0, nova_cell1, placement, glance: DevStack's names, users nova,
placement, glance) come migrated in the lab's MariaDB data folder, with cell0 and cell1 mapped
(tests/lab/dbcache.py, `make lab-db`). The messages go through the lab's RabbitMQ. Keystone as
DevStack leaves it: the users nova, placement and glance in project `service` (roles service and
admin), the services compute, placement and image with their public endpoints
http://<host>/compute/v2.1, /placement, /image. The program's local.conf post-config for
$NOVA_CONF, $PLACEMENT_CONF and $GLANCE_API_CONF goes over each file (its [keystone_authtoken]
interface, Nova's [neutron] and [placement] valid_interfaces, the [oslo_limit] interface), so the
lab runs the settings the program writes.

`start(backends)` runs in a thread of its own: once MariaDB answers and Keystone is set up, it
registers the users and endpoints, writes the files and starts the five services (their processes
in the lab host's network namespace, in Neutron's process groups: `Neutron.down` kills them);
Neutron starts meanwhile. `wait()` returns once the three APIs answer through the host's Apache and
the conductor and scheduler are up in Nova's service list.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from tests.lab import keystone, neutron
from tests.lab.dbcache import DB_PASSWORD, REGION
from tests.lab.keystone import SERVICE_PASSWORD
from tests.lab.neutron import AMQP_PORT, HOSTNAME, LAB_VENV, group_processes, wait_for

if TYPE_CHECKING:
    from tests.lab.container import Container

# service user -> (service type, its path behind the host's Apache, the catalog's URL suffix)
SERVICES = {
    "nova": ("compute", "/compute", "/v2.1"),
    "placement": ("placement", "/placement", ""),
    "glance": ("image", "/image", ""),
}
# DevStack's lib/glance defaults (GLANCE_LIMIT_*), registered in Keystone for the glance service
GLANCE_LIMITS = {
    "image_size_total": 2000,
    "image_stage_total": 2000,
    "image_count_total": 100,
    "image_count_uploading": 100,
}
PROCESSES = ("placement-api", "glance-api", "nova-api", "nova-metadata", "nova-conductor", "nova-scheduler")
TRANSPORT = f"rabbit://guest:guest@127.0.0.1:{AMQP_PORT}/"  # the lab's RabbitMQ, on the host's loopback
RABBIT = {"rabbit_retry_interval": "1", "rabbit_retry_backoff": "0"}  # as neutron.conf: RabbitMQ may still boot
COMPUTE_UNIT = "devstack@n-cpu"  # nova-compute in the lab host, as DevStack's unit
# The guest image (tests/lab/guest.sh) in Glance: a name with "cirros" in it, as the smoke step looks
# for the image DevStack uploads; and DevStack's flavor for it (lib/nova create_flavors)
GUEST_IMAGE = "lab-guest-cirros-compatible"
GUEST_FLAVOR = ("c1", "256", "1", "1", "cirros256")  # id, RAM MB, disk GB, vCPUs, name
# nova-cpu.conf's [libvirt] for the lab's accelerator (tests/lab/kvm.py), as the program's local.conf
# sets LIBVIRT_TYPE and LIBVIRT_CPU_MODE (onhost/steps/lib.sh libvirt_cpu_mode) and DevStack writes them
LIBVIRT = {
    "kvm": {"virt_type": "kvm", "cpu_mode": "host-passthrough"},
    "tcg": {"virt_type": "qemu", "cpu_mode": "custom", "cpu_models": "Nehalem"},
}
CONF_FILES = {"nova": "$NOVA_CONF", "placement": "$PLACEMENT_CONF", "glance": "$GLANCE_API_CONF"}


def render(sections: dict[str, dict[str, str]], post_config: dict[str, dict[str, str]]) -> str:
    """An ini file: DevStack's options, then the local.conf post-config over them (as DevStack
    applies [[post-config|...]] after configuring the service)."""
    merged = {name: dict(options) for name, options in sections.items()}
    for name, options in post_config.items():
        merged.setdefault(name, {}).update(options)
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in options.items()) + "\n" for name, options in merged.items()
    )


class Nova:
    """Placement, Glance and Nova's control plane of one lab, configured and run under `work`."""

    def __init__(self, work: Path, api: neutron.Neutron, identity: keystone.Keystone, local_conf: str):
        self.work = work
        self.etc = work / "etc"
        self.neutron = api
        self.keystone = identity
        self.host_ip = identity.host_ip
        self.post_config = {user: keystone.parse_local_conf(local_conf, f)[1] for user, f in CONF_FILES.items()}
        """What the program's local.conf sets in nova.conf, placement.conf and glance-api.conf."""
        self.sockets = {user: work / f"{user}-api.socket" for user in SERVICES}
        self.timings: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.glance_endpoint = ""

    def url(self, user: str) -> str:
        """The service's public endpoint, as DevStack registers it."""
        _, path, suffix = SERVICES[user]
        return f"http://{self.host_ip}{path}{suffix}"

    def write_apache(self, etc: Path) -> None:
        """The three sites of the host's Apache (DevStack's write_uwsgi_config: a server-wide
        ProxyPass to each uWSGI socket), beside Keystone's and Neutron's (keystone.write_files)."""
        for user, (_, path, _) in SERVICES.items():
            site = f"{user}-api"
            (etc / "apache2" / "sites-available" / f"{site}.conf").write_text(
                f'ProxyPass "{path}" "unix:{self.sockets[user]}|uwsgi://uwsgi-uds-{site}" retry=0\n'
            )
            link = etc / "apache2" / "sites-enabled" / f"{site}.conf"
            if not link.is_symlink():
                link.symlink_to(f"../sites-available/{site}.conf")

    # --- configuration -------------------------------------------------------------------------
    def database(self, db: str, user: str) -> str:
        sock = self.neutron.work / "mysql" / "mysqld.sock"
        return f"mysql+pymysql://{user}:{DB_PASSWORD}@localhost/{db}?unix_socket={sock}&charset=utf8"

    def authtoken(self, user: str) -> dict[str, str]:
        """[keystone_authtoken] as DevStack's configure_keystone_authtoken_middleware writes it."""
        return {
            "auth_type": "password",
            "interface": "public",
            "auth_url": self.keystone.url,
            "username": user,
            "password": SERVICE_PASSWORD,
            "user_domain_name": "Default",
            "project_name": "service",
            "project_domain_name": "Default",
            "www_authenticate_uri": self.keystone.url,
        }

    def keystoneauth(self) -> dict[str, str]:
        """A client section as DevStack's configure_keystoneauth writes it (Nova's user)."""
        return {**self.keystone.keystoneauth("nova"), "interface": "public"}

    def write_config(self) -> None:
        w, etc, log = self.work, self.etc, self.neutron.log
        for d in (etc, w / "state", w / "images", w / "image-cache"):
            d.mkdir(parents=True, exist_ok=True)
        nova = {
            "DEFAULT": {
                "host": HOSTNAME,
                "debug": "false",
                "transport_url": TRANSPORT,
                "state_path": f"{w}/state",
                "my_ip": self.host_ip,
                "instance_name_template": "instance-%08x",
                "report_interval": "10",  # DevStack's NOVA_SERVICE_REPORT_INTERVAL
                "service_down_time": "60",
                "enabled_apis": "osapi_compute",
                "rootwrap_config": f"{LAB_VENV}/etc/nova/rootwrap.conf",
            },
            "wsgi": {"api_paste_config": f"{etc}/api-paste.ini"},
            "api": {"response_validation": "error"},
            "database": {"connection": self.database("nova_cell1", "nova")},
            "api_database": {"connection": self.database("nova_api", "nova")},
            "conductor": {"workers": "1"},
            "scheduler": {"workers": "1"},
            "key_manager": {"backend": "nova.keymgr.conf_key_mgr.ConfKeyManager"},
            "oslo_policy": {"enforce_new_defaults": "True"},
            "oslo_concurrency": {"lock_path": f"{w}/state"},
            "oslo_messaging_rabbit": RABBIT,
            "oslo_messaging_notifications": {"driver": "messagingv2", "transport_url": TRANSPORT},
            "upgrade_levels": {"compute": "auto"},
            "keystone_authtoken": self.authtoken("nova"),
            "placement": self.keystoneauth(),
            "neutron": {
                **self.keystoneauth(),
                "default_floating_pool": "public",
                # the metadata API trusts what Neutron's metadata agent signs (DevStack's q-meta)
                "service_metadata_proxy": "True",
                "metadata_proxy_shared_secret": neutron.METADATA_SECRET,
            },
        }
        placement = {
            "DEFAULT": {"debug": "false", "log_file": f"{log}/placement-api.log"},
            "placement_database": {"connection": self.database("placement", "placement")},
            "api": {"auth_strategy": "keystone"},
            "keystone_authtoken": self.authtoken("placement"),
            "oslo_policy": {"enforce_new_defaults": "True"},
        }
        glance = {
            "DEFAULT": {
                "debug": "false",
                "log_file": f"{log}/glance-api.log",
                "image_cache_dir": f"{w}/image-cache/",
                "image_cache_driver": "centralized_db",
                "show_image_direct_url": "False",
                "show_multiple_locations": "False",
                "public_endpoint": self.url("glance"),
                "worker_self_reference_url": self.url("glance"),
                "use_keystone_limits": "True",
                "enforce_secure_rbac": "true",
                "transport_url": TRANSPORT,
                "node_staging_uri": f"file://{w}/staging",  # (its default is /tmp/staging)
            },
            "database": {"connection": self.database("glance", "glance")},
            "oslo_concurrency": {"lock_path": f"{w}/state"},
            "paste_deploy": {"flavor": "keystone+cachemanagement"},
            "keystone_authtoken": self.authtoken("glance"),
            "oslo_messaging_rabbit": RABBIT,
            "oslo_messaging_notifications": {"driver": "messagingv2"},
            "image_format": {"require_image_format_match": "True"},
            "glance_store": {"filesystem_store_datadir": f"{w}/images/"},
            "oslo_policy": {"enforce_new_defaults": "true"},
            "oslo_limit": {  # DevStack's configure_glance_quotas
                "user_domain_name": "Default",
                "password": SERVICE_PASSWORD,
                "username": "glance",
                "auth_type": "password",
                "auth_url": self.keystone.url,
                "system_scope": "all",
                "endpoint_id": self.glance_endpoint,
            },
        }
        (etc / "nova.conf").write_text(render(nova, self.post_config["nova"]))
        (etc / "nova-api-log.conf").write_text(f"[DEFAULT]\nlog_file = {log}/nova-api.log\n")
        (etc / "placement.conf").write_text(render(placement, self.post_config["placement"]))
        (etc / "glance-api.conf").write_text(render(glance, self.post_config["glance"]))
        for source, target in (
            ("glance/glance-api-paste.ini", "glance-api-paste.ini"),
            ("nova/api-paste.ini", "api-paste.ini"),
        ):
            shutil.copy(LAB_VENV / "etc" / source, etc / target)
        modules = {"nova": "nova.wsgi.osapi_compute", "placement": "placement.wsgi.api", "glance": "glance.wsgi.api"}
        for user, module in modules.items():
            (etc / f"{user}-api-uwsgi.ini").write_text(neutron.uwsgi_ini(self.sockets[user], etc, module))
        # Nova's metadata API as DevStack's n-api-meta: uWSGI on its own port (8775), for the agent
        listen = f"http-socket = 127.0.0.1:{neutron.METADATA_PORT}\n"
        ini = neutron.uwsgi_ini(w / "nova-metadata.socket", etc, "nova.wsgi.metadata", listen)
        (etc / "nova-metadata-uwsgi.ini").write_text(ini)

    def env(self) -> dict[str, str]:
        """Where the WSGI apps find their files (each reads its own variables)."""
        return {
            **self.neutron.env(),
            "OS_NOVA_CONFIG_DIR": str(self.etc),
            "OS_NOVA_CONFIG_FILES": "api-paste.ini;nova.conf;nova-api-log.conf",  # paste's first
            "OS_PLACEMENT_CONFIG_DIR": str(self.etc),
            "OS_GLANCE_CONFIG_DIR": str(self.etc),
        }

    # --- Keystone ------------------------------------------------------------------------------
    def register(self) -> None:
        """DevStack's create_nova_accounts, create_placement_accounts, create_glance_accounts (with
        configure_glance_quotas): users, services, public endpoints, Glance's registered limits."""
        ks = self.keystone
        token = ks.token()
        roles = {r["name"]: r["id"] for r in ks.call("GET", "/v3/roles", token=token)["roles"]}
        (project,) = ks.call("GET", "/v3/projects?name=service", token=token)["projects"]
        users = {}
        for user, (kind, _, _) in SERVICES.items():
            body = {"user": {"name": user, "password": SERVICE_PASSWORD, "domain_id": "default"}}
            users[user] = ks.call("POST", "/v3/users", body, token=token)["user"]["id"]
            for role in ("service", "admin"):  # DevStack's create_service_user gives both
                ks.call("PUT", f"/v3/projects/{project['id']}/users/{users[user]}/roles/{roles[role]}", token=token)
            service = ks.call("POST", "/v3/services", {"service": {"type": kind, "name": user}}, token=token)
            endpoint = {"service_id": service["service"]["id"], "interface": "public", "region_id": REGION}
            made = ks.call("POST", "/v3/endpoints", {"endpoint": {**endpoint, "url": self.url(user)}}, token=token)
            if user == "glance":
                glance_service, self.glance_endpoint = service["service"]["id"], made["endpoint"]["id"]
        # Registered limits are system-wide: a system-scoped token (DevStack's devstack-system-admin).
        system = ks._issue("admin", keystone.ADMIN_PASSWORD, scope={"system": {"all": True}})
        for resource, limit in GLANCE_LIMITS.items():
            body = {
                "service_id": glance_service,
                "region_id": REGION,
                "resource_name": resource,
                "default_limit": limit,
            }
            ks.call("POST", "/v3/registered_limits", {"registered_limits": [body]}, token=system)
        ks.call("PUT", f"/v3/system/users/{users['glance']}/roles/{roles['reader']}", token=system)

    # --- processes -----------------------------------------------------------------------------
    def start(self, backends: Future) -> None:
        """Set up and start everything in a thread once `backends` (Neutron.start_backends) is done."""
        self._thread = threading.Thread(target=self._up, args=(backends,), name="nova-setup", daemon=True)
        self._thread.start()

    def _up(self, backends: Future) -> None:
        t0 = time.monotonic()
        try:
            backends.result()  # MariaDB answers; Keystone's setup has started
            measured = "keystone waited for" in self.keystone.timings
            self.keystone.wait()
            if not measured:  # that timing is Neutron's wait for Keystone, not this thread's
                self.keystone.timings.pop("keystone waited for", None)
            self.timings["nova: keystone ready"] = time.monotonic() - t0
            self.register()
            self.timings["nova: registered"] = time.monotonic() - t0
            self.write_config()
            env, etc = self.env(), self.etc
            for user in SERVICES:
                self.neutron.start(f"{user}-api", "uwsgi", "--ini", f"{etc}/{user}-api-uwsgi.ini", env=env)
            self.neutron.start("nova-metadata", "uwsgi", "--ini", f"{etc}/nova-metadata-uwsgi.ini", env=env)
            for daemon in ("conductor", "scheduler"):
                log = f"{self.neutron.log}/nova-{daemon}.log"
                self.neutron.start(
                    f"nova-{daemon}", f"nova-{daemon}", "--config-file", f"{etc}/nova.conf", "--log-file", log, env=env
                )
            for user, path in (("placement", "/placement"), ("glance", "/image/versions"), ("nova", "/compute")):
                wait_for(f"{user} through the host's Apache", lambda p=path: self.http_code(p) == "200", 120)
            self.timings["nova: apis answering"] = time.monotonic() - t0
            wait_for("nova-conductor and nova-scheduler up", self.services_up, 120, every=0.5)
        except BaseException as e:  # noqa: BLE001 - handed to the caller of wait()
            self._error = e
        finally:
            self.timings["nova, placement, glance up"] = time.monotonic() - t0

    # --- nova-compute in the host ---------------------------------------------------------------
    def compute_config(self, accel: str) -> str:
        """nova-cpu.conf as DevStack writes $NOVA_CPU_CONF for the controller's compute service:
        the libvirt driver with KVM when `accel` is "kvm" (tests/lab/kvm.py: a guest booted under it
        here), else QEMU's emulation (nested KVM can stop guests in their BIOS), each with the CPU
        mode the program's local.conf gives it (host-passthrough, DevStack's custom Nehalem), os-vif
        on the host's Open vSwitch, Placement and Neutron through the catalog; no VNC (no proxy in
        the lab)."""
        w = self.work
        keystoneauth = self.keystoneauth()
        sections = {
            "DEFAULT": {
                "host": HOSTNAME,
                "compute_driver": "libvirt.LibvirtDriver",
                "transport_url": TRANSPORT,
                "state_path": f"{w}/state",
                "instances_path": f"{w}/instances",
                "my_ip": self.host_ip,
                "debug": "false",
                "report_interval": "10",
                "service_down_time": "60",
                "log_file": f"{self.neutron.log}/nova-compute.log",
                # Neutron's port events reach Nova on the compute service's internal endpoint (the
                # program's [nova] endpoint_type for neutron.conf), which public-endpoints makes:
                # without that step here, Nova boots without waiting for network-vif-plugged
                "vif_plugging_is_fatal": "False",
                "vif_plugging_timeout": "0",
            },
            "libvirt": LIBVIRT[accel],
            "os_vif_ovs": {"ovsdb_connection": "unix:/run/openvswitch/db.sock"},
            "vnc": {"enabled": "false"},
            # privsep's helpers through plain sudo, not nova-rootwrap (whose filters DevStack installs
            # in /etc/nova): sudo finds privsep-helper in /usr/local/bin
            "workarounds": {"disable_rootwrap": "True"},
            "oslo_concurrency": {"lock_path": f"{w}/state"},
            "oslo_messaging_rabbit": RABBIT,
            "placement": keystoneauth,
            "neutron": keystoneauth,
        }
        return render(sections, self.post_config["nova"])

    def start_compute(self, host: Container, accel: str) -> float:
        """nova-compute as the host's unit (DevStack's devstack@n-cpu), its privsep helper where
        sudo finds it (as pip puts it on a host), then, once it reports up, DevStack's
        `cell_v2 discover_hosts`; the seconds it took."""
        t = time.monotonic()
        conf = self.etc / "nova-cpu.conf"
        conf.write_text(self.compute_config(accel))
        (self.work / "instances").mkdir(exist_ok=True)
        link = host.root / "usr/local/bin/privsep-helper"  # no nova-rootwrap: disable_rootwrap
        if not link.is_symlink():
            link.symlink_to(LAB_VENV / "bin" / "privsep-helper")
        env = {"PATH": self.neutron.env()["PATH"]}
        binary = str(LAB_VENV / "bin" / "nova-compute")
        host.unit(
            COMPUTE_UNIT,
            binary,
            "--config-file",
            str(conf),
            env=env,
            output=self.neutron.log / "n-cpu.out",
            stop_timeout=3,
            kill_mode="process",
        )
        # discover_hosts maps the compute *nodes* it finds: a node's record comes with the resource
        # tracker's first update, seconds after the service reports up, just before its resource
        # provider in Placement (the API lists no hypervisor before the host is mapped)
        wait_for("nova-compute's resource provider in Placement", self.provider_listed, 120, every=0.5)
        self.manage("cell_v2", "discover_hosts")
        hosts = self.manage("cell_v2", "list_hosts").stdout
        if f" {HOSTNAME} " not in hosts:
            raise RuntimeError(f"discover_hosts did not map {HOSTNAME}: {hosts}")
        self.timings["nova-compute up"] = time.monotonic() - t
        return self.timings["nova-compute up"]

    def provider_listed(self) -> bool:
        return bool(self.api("placement", "GET", f"/resource_providers?name={HOSTNAME}")["resource_providers"])

    def services_up(self) -> bool:
        listed = self.api("nova", "GET", "/os-services")["services"]
        return {s["binary"] for s in listed if s["state"] == "up"} >= {"nova-conductor", "nova-scheduler"}

    def cpu(self) -> float:
        """The CPU seconds (user and system) the five services' processes have used so far."""
        groups = {self.neutron.groups[n] for n in PROCESSES if n in self.neutron.groups}
        ticks = sum(int(fields[11]) + int(fields[12]) for _, fields in group_processes(groups))  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def wait(self, timeout: float = 300) -> None:
        """Until the services are up; the setup's error, if any, raised here."""
        if self._thread is None:
            raise RuntimeError("Nova's setup never started (Nova.start)")
        self._thread.join(timeout)
        self.timings["nova, placement, glance CPU so far"] = self.cpu()
        if self._thread.is_alive():
            raise TimeoutError(f"Nova, Placement and Glance were not up within {timeout:.0f} s")
        if self._error is not None:
            raise RuntimeError(f"Nova, Placement or Glance failed: {self._error}") from self._error

    # --- the APIs ------------------------------------------------------------------------------
    def http_code(self, path: str) -> str:
        """The HTTP status of GET http://<host><path> ("000": no answer)."""
        p = self.keystone._curl(f"http://{self.host_ip}{path}", "-o", "/dev/null", "-w", "%{http_code}")
        return p.stdout.strip()

    def api(self, user: str, method: str, path: str, body: dict | None = None, headers: tuple[str, ...] = ()) -> dict:
        """One call to the service's public endpoint with an admin token (from a file, not a command
        line) through the host's Apache; the decoded JSON answer."""
        header = self.work / "token.header"
        header.touch(mode=0o600)
        header.write_text(f"X-Auth-Token: {self.keystone.token()}\n" + "".join(f"{h}\n" for h in headers))
        args = ["-X", method, "-o", "-", "-w", "\n%{http_code}", "-H", f"@{header}"]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        p = self.keystone._curl(f"{self.url(user)}{path}", *args, body=json.dumps(body) if body is not None else None)
        text, _, code = p.stdout.rpartition("\n")
        if p.returncode != 0 or not code.isdigit() or int(code) >= 300:
            raise RuntimeError(f"{user} {method} {path} -> {code or p.returncode}: {text[-500:]} {p.stderr}")
        return json.loads(text) if text.strip() else {}

    # --- servers, as a user boots them through the API ----------------------------------------
    def boot(self, name: str, port_id: str, user_data: str) -> str:
        """A server of the guest image and flavor on the Neutron port `port_id`, with `user_data`;
        its ID (Nova builds it asynchronously: `status` says when it is ACTIVE)."""
        (image,) = self.api("glance", "GET", f"/v2/images?name={GUEST_IMAGE}")["images"]
        server: dict[str, object] = {
            "name": name,
            "imageRef": image["id"],
            "flavorRef": GUEST_FLAVOR[0],
            "networks": [{"port": port_id}],
            "user_data": base64.b64encode(user_data.encode()).decode(),
        }
        return self.api("nova", "POST", "/servers", {"server": server})["server"]["id"]

    def status(self, server: str) -> str:
        """The server's status ("GONE" once Nova no longer has it)."""
        try:
            return self.api("nova", "GET", f"/servers/{server}")["server"]["status"]
        except RuntimeError as e:
            if "-> 404" in str(e):
                return "GONE"
            raise

    def console(self, server: str) -> str:
        """The server's console log, as `openstack console log show` reads it."""
        return self.api("nova", "POST", f"/servers/{server}/action", {"os-getConsoleOutput": {}})["output"]

    def delete(self, server: str) -> None:
        """Delete the server and wait until Nova no longer has it (its port is the caller's)."""
        self.api("nova", "DELETE", f"/servers/{server}")
        wait_for(f"server {server} deleted", lambda: bool(self.status(server) == "GONE"), 60, every=0.5)

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        """nova-manage with the lab's nova.conf, in the host's network namespace."""
        return self.neutron.run("nova-manage", "--config-file", f"{self.etc}/nova.conf", *args, env=self.env())
