"""Dogtag's schema file merged into one modify (services/ca/pki_schema.py): nothing lost,
order kept, anything unexpected refused. The real file is merged in the ca image's build
and loaded by pkispawn in every stack the integration tests start."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_modules import load

pki_schema = load("services/ca/pki_schema.py")

DOGTAG_LIKE = """\
dn: cn=schema
changetype: modify
add: attributeTypes
attributeTypes: ( usertype-oid NAME 'usertype' DESC 'Distinguish whether the user
  is administrator.' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 X-ORIGIN 'user defined' )

dn: cn=schema
changetype: modify
add: objectClasses
objectClasses: ( cmsuser-oid NAME 'cmsuser' SUP top STRUCTURAL MUST usertype X-ORIGIN 'x' )

dn: cn=schema
changetype: modify
add: attributeTypes
attributeTypes: ( a-oid NAME 'a' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributeTypes: ( b-oid NAME 'b' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
-
add: objectClasses
objectClasses: ( ab-oid NAME 'ab' SUP top STRUCTURAL MAY ( a $ b ) )
"""


def test_every_definition_lands_in_one_record_attribute_types_first() -> None:
    merged = pki_schema.one_modify(DOGTAG_LIKE)
    assert merged.count("dn: ") == 1
    assert merged.splitlines()[:3] == ["dn: cn=schema", "changetype: modify", "add: attributeTypes"]
    found = pki_schema.definitions(merged)
    assert [v.split()[3] for v in found["attributeTypes"]] == ["'usertype'", "'a'", "'b'"]
    assert [v.split()[3] for v in found["objectClasses"]] == ["'cmsuser'", "'ab'"]
    assert found == pki_schema.definitions(DOGTAG_LIKE)
    # A folded value is unfolded whole, not cut at the fold.
    assert "user is administrator.' SYNTAX" in found["attributeTypes"][0]


@pytest.mark.parametrize(("text", "complaint"), [
    ("dn: cn=config\nchangetype: modify\nadd: attributeTypes\nattributeTypes: ( x )\n",
     "a record for 'cn=config'"),
    ("dn: cn=schema\nchangetype: add\nattributeTypes: ( x )\n", "changetype 'add'"),
    ("dn: cn=schema\nchangetype: modify\ndelete: attributeTypes\n", "'delete' is neither"),
    ("dn: cn=schema\nchangetype: modify\nadd: matchingRules\n", "adds 'matchingRules'"),
    ("dn: cn=schema\nchangetype: modify\n", "no attribute type"),
])
def test_anything_but_added_definitions_is_refused(text: str, complaint: str) -> None:
    with pytest.raises(pki_schema.SchemaFileError, match=complaint):
        pki_schema.one_modify(text)


def test_the_command_rewrites_the_file_and_says_what_it_holds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "schema.ldif"
    path.write_text(DOGTAG_LIKE)
    assert pki_schema.main(["pki_schema.py", str(path)]) == 0
    assert path.read_text().count("dn: ") == 1
    assert "3 attribute types and 2 object classes in one modify" in capsys.readouterr().out
    # Merging the merged file again changes nothing.
    before = path.read_text()
    assert pki_schema.main(["pki_schema.py", str(path)]) == 0
    assert path.read_text() == before


def test_a_file_it_cannot_keep_whole_fails_the_build_step(tmp_path: Path) -> None:
    path = tmp_path / "schema.ldif"
    path.write_text("dn: cn=schema\nchangetype: modify\nreplace: attributeTypes\n")
    assert pki_schema.main(["pki_schema.py", str(path)]) == 1
    assert "replace" in path.read_text()  # untouched
