#!/bin/bash
# Run in a separate client container (the ca image has the real `pki` CLI): fetch the CA
# certificate through http's /ca proxy, submit a CSR, approve it as the CA admin, export
# the certificate and verify it against the CA certificate with openssl.
set -e; cd /tmp
# Retries: the CA may still be warming up behind the proxy right after the stack is up.
curl -sSfk --retry 10 --retry-delay 3 --retry-all-errors -H 'Accept: application/json' \
    -o ca.json https://http.example.test/ca/rest/certs/0x1
python3 -c "import json,sys; print(json.load(open('ca.json'))['Encoded'])" > ca.pem
echo pass > nsspw; pki -d nss -C nsspw client-init >/dev/null
pki -d nss -C nsspw client-cert-import --ca-cert ca.pem CA >/dev/null
pki -d nss -C nsspw client-cert-import --pkcs12 /in/admin.p12 --pkcs12-password-file /in/p12pw >/dev/null
nick=$(certutil -L -d nss | grep -i "PKI Administrator" | sed 's/  *u,u,u$//')
openssl req -new -newkey rsa:2048 -nodes -subj /CN=host1.example.test -keyout k.pem -out req.csr 2>/dev/null
pki -d nss -C nsspw -U https://ca.example.test:8443 ca-cert-request-submit --profile caServerCert --csr-file req.csr > sub.txt
req=$(awk -F': ' '/Request ID/ {print $2}' sub.txt)
pki -d nss -C nsspw -U https://ca.example.test:8443 -n "$nick" ca-cert-request-approve "$req" --force > appr.txt
serial=$(awk -F': ' '/Certificate ID/ {print $2}' appr.txt)
pki -U https://ca.example.test:8443 -d nss -C nsspw ca-cert-export "$serial" --output-file cert.pem >/dev/null
openssl verify -CAfile ca.pem cert.pem
echo "SERIAL=$serial"
