#!/bin/bash
# Healthy = first-start initialisation finished (dscreate's temporary instance answers
# before the final password holds) and the directory answers a real LDAP search.
[ -e /data/.ipabuild-initialised ] || exit 1
exec ldapsearch -LLL -x -H ldap://127.0.0.1:3389 -b "" -s base namingContexts >/dev/null
