#!/bin/bash
# Healthy = the first start has finished and all four daemons answer: the directory a
# real LDAP search, the KDC a TCP connection, httpd TLS, Dogtag that its CA subsystem is running.
[ -e /data/.ipabuild-initialised ] || exit 1
ldapsearch -LLL -x -H ldap://127.0.0.1:3389 -b "" -s base namingContexts >/dev/null || exit 1
(exec 3<>/dev/tcp/127.0.0.1/8088) 2>/dev/null || exit 1
curl -ks -o /dev/null --max-time 3 https://127.0.0.1:8443/health || exit 1
curl -fsk --max-time 4 https://127.0.0.1:9443/ca/admin/ca/getStatus \
    | grep -q "<Status>running</Status>"
