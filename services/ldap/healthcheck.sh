#!/bin/bash
# Healthy = the directory answers a real LDAP search on its root DSE.
exec ldapsearch -LLL -x -H ldap://127.0.0.1:3389 -b "" -s base namingContexts >/dev/null
