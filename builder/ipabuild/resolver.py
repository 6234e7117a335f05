"""Resolver options for every container of a stack (ipabuild up and compose/).

The services find each other by name on every new connection (kdcproxy → kdc, httpd's
/ca proxy → ca, the KDC and the CA → ldap). podman 4.3's aardvark-dns reloads whenever a
container joins the network and drops the queries it gets meanwhile; glibc's default
then waits 5 s per try and nameserver, so a lookup stalls 5 to 20 s and a client in front
(kinit through /KdcProxy, a certificate fetch through /ca) gives up. With a 1 s timeout
and more attempts a dropped query costs about a second (measured: 5.0 s → 1.0 s).
"""

DNS_OPTIONS = ["timeout:1", "attempts:5"]
