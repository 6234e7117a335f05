"""Return the Kerberos principal that mod_auth_gssapi authenticated (REMOTE_USER)."""


def application(environ, start_response):
    principal = environ.get("REMOTE_USER", "")
    body = (principal + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
