#!/bin/bash
# Healthy = httpd answers TLS on its https port (any HTTP status).
exec curl -ks -o /dev/null --max-time 3 https://127.0.0.1:443/health
