#!/bin/bash
# Healthy = the KDC accepts a TCP connection on its Kerberos port.
exec 3<>/dev/tcp/127.0.0.1/8088
