"""The bytes of the PostgreSQL CSV export, pinned.

PostgreSQL writes the audit CSV itself (``COPY … TO STDOUT``) with every formula start neutralised; any change to
how it does so must leave the file byte for byte as it was, or exports made before and after it would differ.
Runs on PostgreSQL whatever the suite's own database is: a scratch database, migrated for real, with rows written
as they are stored (a tampered database included: hashes that are not hashes), exported by a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import ROOT
from tests.conftest import scratch_postgres as scratch_database

# id, seq, created_at, actor_id, actor_label, action, object_type, object_id, request_id, principal_id, account_id,
# before, after, aws_request_ids, ip, user_agent, prev_hash, hash
ROWS = [
    (1, 1, "2026-01-01 00:00:00+00", None, "system", "catalog.synced", "catalog", "", None, None, "",
     None, '{"b": 1, "a": [1, "x"], "c": {"z": null, "y": "=1"}}', "[]", "127.0.0.1", "", "0" * 64, "a" * 64),
    (2, 2, "2026-02-01 08:30:00.25+00", None, "mateojackson", "request.created", "access_request", "12", 12, 3,
     "123456789012", None, '{"status": "pending"}', "[]", "10.0.0.1", "curl/8.0", "a" * 64, "d" * 64),
    (3, 3, "2026-03-01 12:00:00.123456+02", None, "=cmd|' /C calc'!A0", "+request.created", "-thing", "@SUM(1)",
     -7, -3, "\t123", '"=1+1"', "-1", '["-x", "=y"]', "::1", "\rline", "1" * 64, "b" * 64),
    (4, 4, "2026-03-01 12:00:00.5+00", None, 'a,"b"', "'quoted", "o\ny", "", 42, 0, "123456789012",
     "null", "5", '["req-1"]', None, " leading space", "2" * 64, "c" * 64),
    (5, 5, "2026-12-31 23:59:59.999999+00", None, "é漢", "request.approved", "access_request", "17", 17, 9,
     "210987654321", '{"status": "pending", "note": "-dash"}', "-0.5", "[]", "10.1.2.3", "Mozilla/5.0 (X11)",
     "=evil", "-abc"),
    (6, 6, "2027-01-01 00:00:00.000001+00", None, "'", "@", "=", "-", 1, 1, "'",
     '"plain"', "true", '[1, 2]', "2001:db8::1", "'already quoted", "@x", "+y"),
    (7, 7, "2027-01-02 00:00:00+00", None, "marymajor", "request.revoked", "access_request", "18", 18, 4,
     "123456789012", '{"note": "a,=b"}', '{"lines": "one\\n-two"}', "[]", "10.0.0.2", "a,=b\n-c", "e" * 64,
     "f" * 64),
    (8, 8, "2027-01-03 00:00:00+00", None, "system", "request.expired", "access_request", "18", 18, 4,
     "123456789012", None, None, "[]", None, "", "f" * 64, "0" * 63 + "1"),
]  # fmt: skip

EXPECTED_ALL = (
    b'id,seq,created_at,actor_id,actor_label,action,object_type,object_id,request_id,principal_id,account_id,before,after,aws_request_ids,ip,user_agent,prev_hash,hash\r\n'
    b'1,1,2026-01-01T00:00:00.000000+00:00,,system,catalog.synced,catalog,"",,,"",null,"{""a"": [1, ""x""], ""b"": 1, ""c"": {""y"": ""=1"", ""z"": null}}",[],127.0.0.1,"",0000000000000000000000000000000000000000000000000000000000000000,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n'
    b'2,2,2026-02-01T08:30:00.250000+00:00,,mateojackson,request.created,access_request,12,12,3,123456789012,null,"{""status"": ""pending""}",[],10.0.0.1,curl/8.0,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\n'
    b'3,3,2026-03-01T10:00:00.123456+00:00,,\'=cmd|\' /C calc\'!A0,\'+request.created,\'-thing,\'@SUM(1),\'-7,\'-3,\'\t123,"""=1+1""",\'-1,"[""-x"", ""=y""]",::1,"\'\rline",1111111111111111111111111111111111111111111111111111111111111111,bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n'
    b'4,4,2026-03-01T12:00:00.500000+00:00,,"a,""b""",\'\'quoted,"o\n'
    b'y","",42,0,123456789012,null,5,"[""req-1""]",, leading space,2222222222222222222222222222222222222222222222222222222222222222,cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\n'
    b'5,5,2026-12-31T23:59:59.999999+00:00,,\xc3\xa9\xe6\xbc\xa2,request.approved,access_request,17,17,9,210987654321,"{""note"": ""-dash"", ""status"": ""pending""}",\'-0.5,[],10.1.2.3,Mozilla/5.0 (X11),\'=evil,\'-abc\n'
    b'6,6,2027-01-01T00:00:00.000001+00:00,,\'\',\'@,\'=,\'-,1,1,\'\',"""plain""",true,"[1, 2]",2001:db8::1,\'\'already quoted,\'@x,\'+y\n'
    b'7,7,2027-01-02T00:00:00.000000+00:00,,marymajor,request.revoked,access_request,18,18,4,123456789012,"{""note"": ""a,=b""}","{""lines"": ""one\\n-two""}",[],10.0.0.2,"a,=b\n'
    b'-c",eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee,ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n'
    b'8,8,2027-01-03T00:00:00.000000+00:00,,system,request.expired,access_request,18,18,4,123456789012,null,null,[],,"",ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff,0000000000000000000000000000000000000000000000000000000000000001\n'
)  # fmt: skip
EXPECTED_FILTERED = (
    b'id,seq,created_at,actor_id,actor_label,action,object_type,object_id,request_id,principal_id,account_id,before,after,aws_request_ids,ip,user_agent,prev_hash,hash\r\n'
    b'2,2,2026-02-01T08:30:00.250000+00:00,,mateojackson,request.created,access_request,12,12,3,123456789012,null,"{""status"": ""pending""}",[],10.0.0.1,curl/8.0,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\n'
    b'5,5,2026-12-31T23:59:59.999999+00:00,,\xc3\xa9\xe6\xbc\xa2,request.approved,access_request,17,17,9,210987654321,"{""note"": ""-dash"", ""status"": ""pending""}",\'-0.5,[],10.1.2.3,Mozilla/5.0 (X11),\'=evil,\'-abc\n'
    b'7,7,2027-01-02T00:00:00.000000+00:00,,marymajor,request.revoked,access_request,18,18,4,123456789012,"{""note"": ""a,=b""}","{""lines"": ""one\\n-two""}",[],10.0.0.2,"a,=b\n'
    b'-c",eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee,ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n'
    b'8,8,2027-01-03T00:00:00.000000+00:00,,system,request.expired,access_request,18,18,4,123456789012,null,null,[],,"",ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff,0000000000000000000000000000000000000000000000000000000000000001\n'
)  # fmt: skip

EXPORT = """
import sys
import django
django.setup()
from accessrequests.audit import exports
filters = {"action": sys.argv[1]} if sys.argv[1] else {}
export = exports.plan(filters, "csv", through_seq=int(sys.argv[2]))
out = sys.stdout.buffer
for chunk in exports.stream_csv(export.queryset, piece_bytes=int(sys.argv[3])):
    out.write(chunk.encode() if isinstance(chunk, str) else chunk)
out.flush()
"""


@pytest.fixture(scope="module")
def scratch_postgres():
    with scratch_database("gatehouse_export_bytes_test") as url:
        env = {**os.environ, "DATABASE_URL": url, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "portal.settings"}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300
        )
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO accessrequests_auditevent (id, seq, created_at, actor_id, actor_label, action,"
                " object_type, object_id, request_id, principal_id, account_id, before, after,"
                " aws_request_ids, ip, user_agent, prev_hash, hash)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                ROWS,
            )
        yield env


def _export(env: dict[str, str], action: str = "", piece_bytes: int = 1 << 20) -> bytes:
    done = subprocess.run(
        [sys.executable, "-c", EXPORT, action, str(len(ROWS)), str(piece_bytes)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.mark.parametrize("piece_bytes", [1 << 20, 1, 400])
def test_the_complete_export_is_byte_for_byte_as_pinned(scratch_postgres, piece_bytes):
    """Whatever the pieces the stream is checked in: all rows at once; one row at a time (clean rows, rows with
    cells to neutralise, and a clean row whose quoted cells hold ',=' and a line break then '-', which the check
    cannot tell from a formula); a few rows, some pieces clean."""
    assert _export(scratch_postgres, piece_bytes=piece_bytes) == EXPECTED_ALL


@pytest.mark.parametrize("piece_bytes", [1 << 20, 1])
def test_a_filtered_export_is_byte_for_byte_as_pinned(scratch_postgres, piece_bytes):
    assert _export(scratch_postgres, action="request.", piece_bytes=piece_bytes) == EXPECTED_FILTERED


def test_the_check_finds_every_cell_that_starts_a_formula_or_a_quote():
    from accessrequests.audit.exports import _needs_neutralising

    clean = b'1,2,2026-01-01T00:00:00.000000+00:00,,system,a-b,x,"",,,"",null,"{""a"": -1}",[],::1,"",ab,cd\n'
    assert not _needs_neutralising(clean * 3)
    for start in "=+-@\t'":
        assert _needs_neutralising(clean + clean.replace(b",system,", f",{start}system,".encode()))
        assert _needs_neutralising(clean.replace(b",system,", f',"{start}sys,tem",'.encode()))
        assert _needs_neutralising(clean + f"{start}1,2".encode() + clean[3:])  # at the start of a row
    assert _needs_neutralising(f'{clean.decode()}1,2,t,,"\rx",'.encode())  # a quoted carriage return
    assert _needs_neutralising(b"-" + clean[1:])  # at the start of the chunk
