"""A documented minimal JSON Schema for the OpenShift kinds the manifests emit.

kubernetes-validate ships only upstream Kubernetes schemas, and OpenShift's published
OpenAPI is not available offline here. This schema is ours: it lists the fields of
``route.openshift.io/v1`` Route (OpenShift 4.x API reference, "Route [route.openshift.io/v1]")
that the manifests may use, with their types and enumerations, and rejects anything else
(strict, like kubernetes-validate's strict mode).
"""

from __future__ import annotations

from typing import Any

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_TARGET = {"type": "object", "additionalProperties": False, "required": ["kind", "name"],
           "properties": {"kind": {"enum": ["Service", ""]}, "name": _NAME,
                          "weight": {"type": "integer", "minimum": 0, "maximum": 256}}}

ROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "route.openshift.io/v1"},
        "kind": {"const": "Route"},
        "metadata": {"type": "object", "additionalProperties": False, "required": ["name"],
                     "properties": {"name": _NAME, "namespace": _NAME, "labels": _STRINGS,
                                    "annotations": _STRINGS}},
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["to"],
            "properties": {
                "host": {"type": "string"},
                "subdomain": {"type": "string"},
                "path": {"type": "string"},
                "to": _TARGET,
                "alternateBackends": {"type": "array", "items": _TARGET, "maxItems": 3},
                "port": {"type": "object", "additionalProperties": False,
                         "required": ["targetPort"],
                         "properties": {"targetPort": {"type": ["string", "integer"]}}},
                "tls": {"type": "object", "additionalProperties": False,
                        "required": ["termination"],
                        "properties": {
                            "termination": {"enum": ["edge", "passthrough", "reencrypt"]},
                            "insecureEdgeTerminationPolicy": {
                                "enum": ["Allow", "None", "Redirect", ""]},
                            "certificate": {"type": "string"},
                            "key": {"type": "string"},
                            "caCertificate": {"type": "string"},
                            "destinationCACertificate": {"type": "string"}}},
                "wildcardPolicy": {"enum": ["None", "Subdomain"]},
            },
        },
    },
}

SCHEMAS = {("route.openshift.io/v1", "Route"): ROUTE_SCHEMA}


def is_openshift(obj: dict[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0].endswith("openshift.io")


def validate_openshift(obj: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError (or KeyError for a kind without a schema)."""
    import jsonschema  # comes with kubernetes-validate (the `test` extras)

    schema = SCHEMAS[(obj.get("apiVersion", ""), obj.get("kind", ""))]
    jsonschema.validate(obj, schema)
