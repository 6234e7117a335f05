"""posture's report carries the blast radius matrices: summary lines, JSON, HTML."""

from __future__ import annotations

import json

from ipabuild.proof import posture
from ipabuild.proof.blastradius import Matrix
from tests.unit.test_blastradius import _split


def test_report_json_and_html_carry_the_matrices() -> None:
    document = posture.report_json([], ["monolithic", "split"], {},
                                   blast=[Matrix("monolithic", [], []), _split()])
    assert any(line.startswith("blast radius, split: http apache2 → 1 of 3 secrets")
               for line in document["summary"])  # type: ignore[attr-defined]
    assert "blast radius, monolithic: not measured (nothing running in this mode)" in \
        document["summary"]  # type: ignore[operator]
    json.dumps(document)
    html = posture.report_html(document)
    assert 'id="blast-split"' in html and 'id="reach-split"' in html
    assert 'class="c-read-write"' in html and "ldap-dm-password" in html
    assert 'id="blast-monolithic"' not in html  # nothing measured, nothing drawn
