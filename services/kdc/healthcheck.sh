#!/bin/bash
# Healthy = krb5kdc accepts TCP on the Kerberos port and kadmind on kpasswd's.
exec 3<>/dev/tcp/127.0.0.1/8088 && exec 4<>/dev/tcp/127.0.0.1/8464
