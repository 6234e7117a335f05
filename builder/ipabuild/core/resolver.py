"""Resolver options for every container of a stack (ipabuild up, compose/, kube play).

The services find each other by name on every new connection (kdcproxy → kdc, httpd's
/ca proxy → ca, the KDC and the CA → ldap). podman 4.3's aardvark-dns stops answering
while containers join or leave the network, mostly for a moment, sometimes for 10 s.
glibc's default waits 5 s per try and nameserver, so even a short gap stalls a lookup
5 to 20 s and a client in front (kinit through /KdcProxy) gives up. With a 1 s timeout a
short gap costs about a second (measured: 5.0 s → 1.0 s); for the long ones `ipabuild
up` also gives every container /etc/hosts entries for its peers (stack.fixed_hosts).
"""

from __future__ import annotations

import ipaddress

from ipabuild.core.errors import UsageError

DNS_OPTIONS = ["timeout:1", "attempts:5"]

# netavark's DNS domain. podman 4.3 writes `search dns.podman` into a container's
# resolv.conf only when it shares the host's user namespace (measured: a container with
# --userns=auto on the same network gets none). The KDC adds principal aliases for its
# services' names under each search domain, and clients (no user namespace) ask for them:
# so a container in a user namespace of its own (the monolith) is given it explicitly.
NETAVARK_DNS_SEARCH = ["dns.podman"]

# Services' fixed addresses on a stack network: subnet host 10, 11, ...
FIRST_HOST = 10


def service_addresses(subnet: str, services: list[str]) -> dict[str, str]:
    """Each service → its fixed address in ``subnet``: host FIRST_HOST onwards in the
    given order, clear of the gateway (host 1) and of the addresses podman hands out
    from the bottom of the range."""
    network = ipaddress.ip_network(subnet)
    if FIRST_HOST + len(services) >= network.num_addresses - 1:
        raise UsageError(f"network {subnet} is too small for {len(services)} services",
                         "remove the stack's network (`ipabuild down`) and start again")
    return {name: str(network.network_address + FIRST_HOST + index)
            for index, name in enumerate(services)}
