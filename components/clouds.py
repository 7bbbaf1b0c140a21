"""The clouds.yaml the stack hands to consumers (the `cloudsYaml` output): text only, no resource.

One cloud, `openstack-on-aws`, as the admin user, over TLS from outside: the catalog's public
interface, certificates verified against the stack's CA (`cacert` is a file path for
openstacksdk/keystoneauth, relative to the working directory).
"""

from __future__ import annotations

CA_FILE = "openstack-on-aws-ca.pem"
"""Where clouds.yaml expects the CA (`cacert` is a path): `pulumi stack output caCertificate > …`."""


def clouds_yaml(auth_url: str, password: str, cacert: str = CA_FILE) -> str:
    """The admin cloud at `auth_url` (keystoneAuthUrl) with `password` (adminPassword)."""
    return (
        "clouds:\n"
        "  openstack-on-aws:\n"
        "    auth:\n"
        f"      auth_url: {auth_url}\n"
        "      username: admin\n"
        f"      password: {password}\n"
        "      project_name: admin\n"
        "      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        "    region_name: RegionOne\n"
        "    identity_api_version: 3\n"
        "    interface: public\n"
        f"    cacert: {cacert}\n"
        "    verify: true\n"
    )
