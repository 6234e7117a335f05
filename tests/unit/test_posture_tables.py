"""posture's text tables as a reviewer pastes them (a non-terminal console: CI logs, a
pipe): narrow by their shape, every value whole, titles on one line, no padding; and the
NetworkPolicy view of peers beside the measured one, in the table, the JSON and the HTML."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from ipabuild.core.tables import print_table
from ipabuild.proof import posture, scan
from ipabuild.proof.blastradius import (
    CONNECT,
    KEY,
    NO_POLICY,
    NONE,
    PEER,
    READ,
    READ_WRITE,
    SECRET,
    Column,
    Daemon,
    Matrix,
    Row,
    cluster_text,
    matrix_notes,
    matrix_table,
    reach_notes,
    reach_table,
)
from ipabuild.proof.netpolicy import policy_view
from ipabuild.proof.posture import ContainerPosture, ImageFacts, posture_table
from ipabuild.proof.scan import OverlayScan, ScanFinding, ScanReport, findings_notes, findings_table

# The split stack's secrets and keys as `posture --name dev` found them.
SECRETS = ["admin-password", "ca-admin-password", "ca-pkcs12-password",
           "http-service-password", "http-session-key", "http-tls-key-seed", "kdc-master-key",
           "ldap-dm-password", "ldap-service-password", "ldap-tls-key-seed",
           "ra-agent-key-seed"]
KEYS = ["ca:/etc/pki/ipabuild-client/ca_admin_cert.p12", "ca:/etc/pki/pki-tomcat/alias/key4.db",
        "ca:/etc/pki/pki-tomcat/password.conf", "http:/tmp/ipabuild-http/http.keytab",
        "http:/tmp/ipabuild-http/ra-agent.key", "http:/tmp/ipabuild-http/session.key",
        "http:/tmp/ipabuild-http/tls.key",
        "ldap:/data/etc/dirsrv/slapd-EXAMPLE-TEST/Server-Cert-Key.pem",
        "ldap:/data/etc/dirsrv/slapd-EXAMPLE-TEST/key4.db",
        "ldap:/data/etc/dirsrv/slapd-EXAMPLE-TEST/pin.txt",
        "ldap:/data/etc/dirsrv/slapd-EXAMPLE-TEST/pwdfile.txt",
        "ldap:/data/etc/dirsrv/ssca/key4.db", "ldap:/data/etc/dirsrv/ssca/pin.txt",
        "ldap:/data/etc/dirsrv/ssca/pwdfile.txt", "ldap:/tmp/ipabuild-ldap/ldap.keytab"]
# service -> (uid, commands, listening ports, secrets it reads)
SPLIT = {"ca": (10017, ["ipabuild-ca", "java"], [8080, 8443],
                {"ca-admin-password", "ca-pkcs12-password", "http-tls-key-seed",
                 "ldap-dm-password", "ldap-tls-key-seed", "ra-agent-key-seed"}),
         "http": (2000000002, ["apache2", "cat"], [80, 443],
                  {"http-service-password", "http-session-key", "http-tls-key-seed",
                   "ra-agent-key-seed"}),
         "kdc": (2000000001, ["kadmind", "krb5kdc"], [8088, 8464, 8749],
                 {"admin-password", "http-service-password", "kdc-master-key",
                  "ldap-service-password"}),
         "ldap": (2000000000, ["ns-slapd", "python3"], [3389, 3636],
                  {"ldap-dm-password", "ldap-service-password", "ldap-tls-key-seed"})}
PEERS = {"ca": [8080, 8443], "http": [80, 443], "kdc": [8088, 8464, 8749],
         "ldap": [3389, 3636]}
LONG_REASON = ("no runAsUser is pinned: OpenShift's restricted-v2 assigns a UID from the "
               "namespace's range (a pinned UID outside it is refused) and plain Kubernetes "
               "runs the image's numeric USER; with hostUsers false the check passes")
TAG_REASON = ("the committed overlays name the project's tag; `ipabuild manifests --registry "
              "R --digests` after `ipabuild images --push R` writes the pushed digests instead")


def _secret_columns(names: list[str]) -> list[Column]:
    return [Column(SECRET, f"secret:{n}", n) for n in names]


def _key_columns(labels: list[str]) -> list[Column]:
    return [Column(KEY, f"key:{label}", label, owner=label.split(":")[0]) for label in labels]


def _peer_columns() -> list[Column]:
    return [Column(PEER, f"peer:{s}:{p}", f"{s}:{p}", owner=s, port=p)
            for s, ports in PEERS.items() for p in ports]


def split_matrix() -> Matrix:
    """Four split daemons with 10-digit UIDs, 11 secrets and 15 keys: each daemon reads
    its own secrets and reads and writes its own container's keys; peers all connect."""
    columns = _secret_columns(SECRETS) + _key_columns(KEYS) + _peer_columns()
    rows = []
    for service, (uid, commands, ports, secrets) in SPLIT.items():
        cells = {f"secret:{s}": READ for s in secrets}
        cells |= {c.id: READ_WRITE for c in columns if c.kind == KEY and c.owner == service}
        cells |= {c.id: CONNECT for c in columns if c.kind == PEER}
        rows.append(Row(Daemon("split", service, f"ipabuild-dev-{service}", uid, 0, commands,
                               ports=ports), cells))
    return Matrix("split", columns, rows)


def monolith_matrix() -> Matrix:
    """The monolith: UID 0 reads and writes everything, every daemon reads
    admin-password."""
    secrets = _secret_columns(SECRETS[:7])
    keys = _key_columns([f"monolithic:{k.split(':', 1)[1]}" for k in KEYS])
    rows = []
    for uid, command in ((0, "krb5kdc"), (33, "apache2"), (389, "ns-slapd"), (17, "java")):
        cells = ({c.id: READ_WRITE for c in secrets + keys} if uid == 0
                 else {"secret:admin-password": READ, keys[uid % len(keys)].id: READ})
        rows.append(Row(Daemon("monolithic", "monolithic", "ipabuild-m-monolithic", uid, uid,
                               [command]), cells))
    return Matrix("monolithic", secrets + keys, rows)


def _print(table: Table, notes: list[str] | None = None, *, terminal: bool = False,
           width: int = 80) -> str:
    out = StringIO()
    print_table(table, Console(file=out, force_terminal=terminal, width=width,
                               color_system=None), notes=notes or [])
    return out.getvalue()


def _body(text: str) -> list[list[str]]:
    """The cells of each body line of a printed table."""
    lines = text.split("┡", 1)[1].split("└", 1)[0].splitlines()[1:]
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines
            if line.startswith("│")]


def _table_width(text: str) -> int:
    return max(len(line) for line in text.splitlines() if line[:1] in "┏┃┡│├└")


def test_split_matrix_is_transposed_and_fits_in_about_120_columns() -> None:
    matrix = split_matrix()
    text = _print(matrix_table(matrix), matrix_notes(matrix))
    assert "…" not in text
    assert _table_width(text) <= 125, text
    rows = {cells[1]: cells for cells in _body(text)}
    for thing in matrix.of_kind(SECRET) + matrix.of_kind(KEY):
        # one line per secret or key: its kind, its whole label, then every daemon's cell
        assert rows[thing.label] == [thing.kind, thing.label,
                                     *[r.cell(thing) for r in matrix.rows]], thing.label
    assert rows["reads"][2:] == ["9 of 26", "8 of 26", "4 of 26", "11 of 26"]
    assert rows["writes"][2:] == ["3 of 26", "4 of 26", "0 of 26", "8 of 26"]
    header = text.split("┡", 1)[0]
    for service, (uid, *_rest) in SPLIT.items():
        assert service in header and str(uid) in header  # short headers: service, UID
    assert "kdc 2000000001: kdc kadmind+krb5kdc (uid 2000000001), gid 0, in " \
           "ipabuild-dev-kdc" in text.splitlines()
    assert "read by every daemon: none" in text


def test_monolith_matrix_marks_the_daemon_that_reads_everything() -> None:
    matrix = monolith_matrix()
    table = matrix_table(matrix)
    text = _print(matrix_table(matrix), matrix_notes(matrix))
    assert _table_width(text) <= 135, text
    rows = {cells[1]: cells for cells in _body(text)}
    assert rows["reads"][2:] == ["all 22", "2 of 22", "2 of 22", "2 of 22"]
    assert [c.header_style for c in table.columns[2:]] == ["bold red", "", "", ""]
    # a secret every daemon reads is a red row, and said in words under the table
    styles = dict(zip(table.columns[1].cells, (r.style for r in table.rows), strict=True))
    assert styles["admin-password"] == "bold red" and styles["kdc-master-key"] == ""
    assert "read by every daemon: admin-password" in text
    assert "reads every secret and key: monolithic krb5kdc (uid 0)" in text


def test_matrix_on_a_terminal_fits_its_width() -> None:
    text = _print(matrix_table(split_matrix()), terminal=True, width=100)
    assert "…" not in text and all(len(line) <= 100 for line in text.splitlines())
    assert "read+write" in text


def _scan_report() -> ScanReport:
    findings = [ScanFinding("CKV_K8S_14", "tag", r, TAG_REASON)
                for r in ("Deployment/http", "StatefulSet/ca", "StatefulSet/ldap")]
    findings += [ScanFinding("CKV_K8S_40", "uid", r, LONG_REASON)
                 for r in ("Deployment/http", "StatefulSet/ca")]
    findings.append(ScanFinding("CKV_K8S_99", "Ensure a made-up thing", "StatefulSet/ldap"))
    return ScanReport("checkov 3.3.30", [OverlayScan("split", findings=findings),
                                         OverlayScan("split-userns", findings=findings[:3])])


def test_findings_print_each_reason_once() -> None:
    report = _scan_report()
    text = _print(findings_table(report), findings_notes(report))
    assert _table_width(text) <= 90, text  # was overlay + check + resource + every reason
    assert text.count(TAG_REASON) == 1 and text.count(LONG_REASON) == 1
    assert f"[1] {TAG_REASON}" in text.splitlines() and f"[2] {LONG_REASON}" in text
    rows = _body(text)
    assert len(rows) == 9
    assert ["split", "CKV_K8S_40", "StatefulSet/ca", "[2]"] in rows
    assert ["split-userns", "CKV_K8S_14", "StatefulSet/ldap", "[1]"] in rows
    assert ["split", "CKV_K8S_99", "StatefulSet/ldap",
            "UNEXPLAINED: Ensure a made-up thing"] in rows
    assert json.dumps(report.to_json())  # the JSON keeps every finding's whole reason
    assert report.to_json()["overlays"][0]["findings"][3]["exception"] == LONG_REASON


def _posture_row() -> ContainerPosture:
    return ContainerPosture("split", "dev", "ldap", "ipabuild-dev-ldap", [2000000000],
                            [2000000000, 2000000000], [0], [0, 0], "host's", [], True,
                            ["filter"], True, False, 0, [], 0, 3, [], [3389, 3636],
                            ImageFacts("ipabuild/ldap"))


def test_every_table_posture_prints_has_its_title_on_one_line_and_no_padding() -> None:
    """A centred title over a wide table used to paste with hundreds of blanks; a title
    longer than its narrow table used to wrap. Now: one line, centred, nothing trailing."""
    matrix = split_matrix()
    matrix.cluster = policy_view("split-userns", _manifests())
    report = _scan_report()
    tables = [posture_table([_posture_row()]), matrix_table(matrix), reach_table(matrix),
              findings_table(report), matrix_table(Matrix("x", [], [split_matrix().rows[0]]))]
    for table in tables:
        title = str(table.title)
        text = _print(table)
        lines = text.splitlines()
        assert all(line == line.rstrip() for line in lines), title
        assert lines[0].strip() == title, title  # the title, whole, on the first line
        width = _table_width(text)
        assert len(lines[0]) <= max(width, len(title)), title
        assert len(lines[0]) - len(title) <= max(0, (width - len(title)) // 2) + 1, title


# ---- the NetworkPolicy view of peers --------------------------------------------------

def _manifests() -> list[dict[str, object]]:
    """ldap's pod runs ldap and kdc; http and ca their own; default deny, then http may
    open ldap and ca, ca may open ldap, ldap's pod opens ldap (its replicas)."""
    def workload(name: str, ports: dict[str, list[int]]) -> dict[str, object]:
        return {"kind": "StatefulSet", "metadata": {"name": name, "namespace": "ipa"},
                "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": {
                    "containers": [{"name": c, "ports": [{"containerPort": p} for p in ps]}
                                   for c, ps in ports.items()]}}}}

    def allow(name: str, to: list[str], ingress_from: list[str] | None,
              ports: list[int]) -> dict[str, object]:
        rule: dict[str, object] = {"ports": [{"port": p} for p in ports]}
        if ingress_from is not None:
            rule["from"] = [{"podSelector": {"matchLabels": {"app": a}}} for a in ingress_from]
        return {"kind": "NetworkPolicy", "metadata": {"name": f"{name}-allow", "namespace": "ipa"},
                "spec": {"podSelector": {"matchLabels": {"app": name}},
                         "policyTypes": ["Ingress", "Egress"], "ingress": [rule],
                         "egress": [{"to": [{"podSelector": {"matchLabels": {"app": t}}}]}
                                    for t in to]}}

    return [workload("ldap", {"ldap": [3389, 3636], "kdc": [8088, 8464, 8749]}),
            workload("http", {"http": [80, 443]}), workload("ca", {"ca": [8080, 8443]}),
            {"kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": "ipa"},
             "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
            allow("ldap", ["ldap"], ["http", "ca", "ldap"], [3389, 3636, 8088, 8464, 8749]),
            allow("http", ["ldap", "ca"], None, [80, 443]),
            allow("ca", ["ldap"], ["http"], [8080, 8443])]


def test_reach_table_shows_the_cluster_peers_beside_the_measured_ones() -> None:
    matrix = split_matrix()
    matrix.cluster = policy_view("split-userns", _manifests())
    text = _print(reach_table(matrix), reach_notes(matrix))
    rows = {(cells[0], cells[1]): cells[2] for cells in _body(text) if len(cells) == 3}
    measured, cluster = "peer ports it connects to", "peers allowed by NetworkPolicies (cluster)"
    kdc = "kdc kadmind+krb5kdc (uid 2000000001)"
    assert rows[kdc, measured] == "ca:8080, ca:8443, http:80, http:443, ldap:3389, ldap:3636"
    assert rows[kdc, cluster] == "none; same pod: ldap:3389, ldap:3636"  # egress: ldap's pods
    ldap = "ldap ns-slapd+python3 (uid 2000000000)"
    assert rows[ldap, cluster] == "none; same pod: kdc:8088, kdc:8464, kdc:8749"  # not its own
    assert rows["http apache2+cat (uid 2000000002)", cluster] == (
        "ca:8080, ca:8443, kdc:8088, kdc:8464, kdc:8749, ldap:3389, ldap:3636")
    assert rows["ca ipabuild-ca+java (uid 10017)", cluster] == (
        "kdc:8088, kdc:8464, kdc:8749, ldap:3389, ldap:3636")
    assert _table_width(text) <= 160  # was 336 with a column per kind
    assert "overlay split-userns, 4 NetworkPolicies" in text


def test_no_policy_no_overlay_no_pod() -> None:
    matrix = split_matrix()
    row = matrix.rows[0]
    assert cluster_text(matrix, row) == "not known (no overlay built)"
    matrix.cluster = policy_view("o", [o for o in _manifests() if o["kind"] != "NetworkPolicy"])
    assert cluster_text(matrix, row) == NO_POLICY == "no NetworkPolicy: all"
    assert {p["label"] for p in matrix.to_json()["rows"][0]["cluster_peers"]} == {  # type: ignore[index]
        "kdc:8088", "kdc:8464", "kdc:8749", "ldap:3389", "ldap:3636", "http:80",
        "http:443"}  # the JSON lists what "all" is (less ca's own ports)
    matrix.cluster = policy_view("o", _manifests()[1:])
    assert cluster_text(matrix, matrix.rows[3]) == "not in overlay o"


def test_json_keeps_its_shape_and_adds_the_cluster_peers() -> None:
    before = {"mode", "stack", "name", "columns", "rows", "summary"}
    row_before = {"daemon", "cells", "details", "probe_ids", "probe_capabilities", "error",
                  "label", "same_credentials"}
    matrix = split_matrix()
    plain = matrix.to_json()
    assert before <= set(plain) and plain["network_policies"] is None
    assert row_before <= set(plain["rows"][0])  # type: ignore[index]
    assert plain["rows"][0]["cluster_peers"] is None  # type: ignore[index]
    matrix.cluster = policy_view("split-userns", _manifests())
    data = matrix.to_json()
    assert data["network_policies"] == {
        "overlay": "split-userns", "policies": ["deny", "ldap-allow", "http-allow", "ca-allow"],
        "pods": {"StatefulSet/ldap": ["ldap", "kdc"], "StatefulSet/http": ["http"],
                 "StatefulSet/ca": ["ca"]}}
    kdc = data["rows"][2]  # type: ignore[index]
    assert kdc["measured_peers"] == ["ca:8080", "ca:8443", "http:80", "http:443", "ldap:3389",
                                     "ldap:3636"]
    assert {"service": "ldap", "port": 3389, "protocol": "TCP", "pod": "StatefulSet/ldap",
            "same_pod": True, "label": "ldap:3389"} in kdc["cluster_peers"]
    assert kdc["cluster_peers_text"] == cluster_text(matrix, matrix.rows[2])
    json.dumps(data)


def test_html_shows_both_peer_views() -> None:
    matrix = split_matrix()
    matrix.cluster = policy_view("split-userns", _manifests())
    document = posture.report_json([], ["split"], {}, blast=[matrix])
    html = posture.report_html(document)
    assert 'id="peers-split"' in html and "overlay split-userns" in html
    assert "none; same pod: ldap:3389, ldap:3636" in html
    assert "peers allowed by NetworkPolicies (cluster" in html


def test_with_network_policies_reads_the_scans_yaml() -> None:
    """The mode's overlay (split-userns for split) from the YAML the scan built."""
    text = yaml.safe_dump_all(_manifests())
    matrices = [split_matrix(), Matrix("monolithic", [], [])]
    posture.with_network_policies(matrices, {"split-userns": text, "split": ""})
    assert matrices[0].cluster is not None and matrices[0].cluster.overlay == "split-userns"
    assert matrices[1].cluster is None  # no monolithic-userns YAML given
    assert cluster_text(matrices[0], matrices[0].rows[2]) == "none; same pod: ldap:3389, " \
                                                               "ldap:3636"


def test_scan_takes_the_yaml_it_is_given(tmp_path: Path) -> None:
    """Built once by the caller: scan renders nothing (tmp_path has no kustomize/)."""
    text = yaml.safe_dump_all(_manifests())
    report = scan.scan(tmp_path, [], ["split-userns", "absent"], None, {"split-userns": text})
    assert [o.overlay for o in report.overlays] == ["split-userns"]
    assert set(report.overlays[0].pss) == {"StatefulSet/ldap", "StatefulSet/http",
                                           "StatefulSet/ca"}
    assert NONE == "none"
