"""Data protection: customer phone numbers masked or keyed-hashed before flatfiles, table and dashboards;
secrets in no log, metadata, message or file; the UI bound to this machine in the README's commands."""

import gzip
import io
import json
import os
import re
import signal
import subprocess
from contextlib import closing
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_graphql import DagsterGraphQLClient
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.api import run_pipeline
from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.layout import RAW
from ctr_assets.metrics.warehouse import refresh_ctr_view, scratch_connection
from ctr_assets.records.flatten import flatten_object
from ctr_assets.records.normalize import normalize_key
from ctr_assets.records.phones import hash_address, mask_address, phone_protector
from ctr_assets.settings import CtrSettings, SettingError
from ctr_assets_tests.conftest import free_port
from ctr_assets_tests.helpers import settings_for, write_sample
from ctr_assets_tests.test_cli import CLI, cli_environment
from ctr_assets_tests.test_webserver import wait_until_ready

SECRET = "fake-hash-key-7f3a9c1e5b2d4680"
AWS_SECRET = "fakeAWSsecretKEY/4b1d0c9e8f7a6b5c4d3e2f1a0"


@pytest.mark.parametrize("address, masked", [
    ("+15551234567", "+*******4567"), ("+442071234567", "+********4567"), ("sip:ann@example.com", "***:***@*******.com"),
    ("1234", "****"), ("", ""),
])
def test_mask_keeps_only_the_last_four_characters_readable(address, masked):
    assert mask_address(address) == masked


def test_the_keyed_hash_is_stable_per_key_and_unguessable_without_it():
    same = hash_address("+15551234567", b"k" * 16)
    assert same == hash_address("+15551234567", b"k" * 16) and same.startswith("hmac-sha256:")
    assert same != hash_address("+15551234567", b"j" * 16) and same != hash_address("+15551234568", b"k" * 16)
    assert "5551234567" not in same


def test_endpoints_covered_and_not_covered():
    data = json.dumps({
        "ContactId": "c", "InitiationTimestamp": "2026-11-27T10:00:00Z",
        "CustomerEndpoint": {"Address": 15551234567, "Type": "TELEPHONE_NUMBER"},
        "TransferredToEndpoint": {"Address": "+15557654321", "Type": "TELEPHONE_NUMBER"},
        "SystemEndpoint": {"Address": "+18005550100", "Type": "TELEPHONE_NUMBER"},
        "Attributes": {"callbackNumber": "+15551234567"},
    }).encode()
    flat = io.BytesIO()
    flatten_object(data, "raw/2026/11/27/10/x", flat, io.BytesIO(), phone_protector("mask"))
    record = json.loads(flat.getvalue())
    assert record["customerendpoint"]["address"] == "*******4567"  # a JSON number, widened to text first
    assert record["transferredtoendpoint"]["address"] == "+*******4321"
    assert record["systemendpoint"]["address"] == "+18005550100"  # the centre's own number
    assert record["attributes"]["callbacknumber"] == "+15551234567"  # free-form: not covered (see README)


def test_settings_refuse_an_unknown_mode_and_hash_without_a_long_enough_secret():
    with pytest.raises(SettingError, match=r"^CTR_PHONE_NUMBERS: 'scramble' is not one of keep, mask, hash$"):
        CtrSettings.from_env({"CTR_PHONE_NUMBERS": "scramble"})
    with pytest.raises(SettingError, match=r"^CTR_HASH_SECRET: is not set; CTR_PHONE_NUMBERS=hash needs a secret key$"):
        CtrSettings.from_env({"CTR_PHONE_NUMBERS": "hash"})
    with pytest.raises(SettingError) as short:
        CtrSettings.from_env({"CTR_PHONE_NUMBERS": "hash", "CTR_HASH_SECRET": "tooshort"})
    assert "tooshort" not in str(short.value) and "shorter than 16 characters" in str(short.value)
    assert CtrSettings.from_env({"CTR_PHONE_NUMBERS": "hash", "CTR_HASH_SECRET": SECRET}).phone_numbers == "hash"
    assert SECRET not in repr(CtrSettings.from_env({"CTR_PHONE_NUMBERS": "hash", "CTR_HASH_SECRET": SECRET}))


def customer_numbers(storage) -> set[str]:
    """Every customer and transfer number in the raw objects, as sent, but the centre's own numbers
    (a sample transfer goes to another of its queues, whose number is also a system endpoint)."""
    found: dict[str, set[str]] = {"CustomerEndpoint": set(), "TransferredToEndpoint": set(), "SystemEndpoint": set()}
    for item in storage.list(RAW):
        data = storage.read(item.key)
        for match in re.finditer(rb'"(\w+Endpoint)":\{"Address":"([^"]+)"',
                                 gzip.decompress(data) if item.key.endswith(".gz") else data):
            found[match.group(1).decode()].add(match.group(2).decode())
    return (found["CustomerEndpoint"] | found["TransferredToEndpoint"]) - found["SystemEndpoint"]


def every_value_as_text(storage, warehouse: Path) -> dict[str, str]:
    """Each file the pipeline wrote, as text a person or a tool could read: Parquet and DuckDB decoded."""
    texts = {}
    for path in storage.root_path.rglob("*"):
        relative = path.relative_to(storage.root_path).as_posix()
        if not path.is_file() or relative.startswith(RAW) or path == warehouse:
            continue
        if path.suffix == ".parquet":
            with closing(duckdb.connect()) as connection:
                texts[relative] = str(connection.sql(f"SELECT to_json(t) FROM read_parquet('{path}') t").fetchall())
        else:
            texts[relative] = path.read_bytes().decode("utf-8", "replace")
    with closing(duckdb.connect(str(warehouse), read_only=True)) as connection:
        for (name,) in connection.sql("SELECT table_name FROM information_schema.tables").fetchall():
            texts[f"ctr.duckdb:{name}"] = str(connection.sql(f"SELECT to_json(t) FROM {name} t").fetchall())
    return texts


def test_with_hashing_on_no_customer_number_reaches_flatfiles_table_or_dashboards_and_no_secret_leaks(
        tmp_path, monkeypatch, capfd):
    for variable, value in {"CTR_PHONE_NUMBERS": "hash", "CTR_HASH_SECRET": SECRET, "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
                            "AWS_SESSION_TOKEN": AWS_SECRET[::-1]}.items():
        monkeypatch.setenv(variable, value)
    settings = settings_for(tmp_path)
    monkeypatch.setenv("CTR_FIRST_HOUR", settings.first_hour)
    storage = storage_for(settings)
    write_sample(storage, hours=2, contacts_per_hour=40)
    storage.write("raw/2026/03/02/09/ctr-stream-1-2026-03-02-09-59-59-bad", b'{"ContactId":"x","Agent":"James"}garbage')
    numbers = customer_numbers(storage)
    instance = dg.DagsterInstance.ephemeral()

    summary = run_pipeline(settings.storage_url, instance=instance, verbose=True)

    assert summary.ok and summary.flattened["records_quarantined"] == 2 and len(numbers) > 20
    texts = every_value_as_text(storage, Path(settings.warehouse_path).resolve())
    assert {"ctr.duckdb:contacts_per_agent", "dashboards/index.html"} <= set(texts)
    assert any(key.startswith("flatfiles/") for key in texts) and any(key.startswith("parquet/ctr/data/") for key in texts)
    leaked = {(name, number) for name, text in texts.items() for number in numbers
              if number in text or number.lstrip("+") in text}
    assert leaked == set()
    with closing(scratch_connection()) as connection:
        refresh_ctr_view(connection, storage, table_for(settings, storage))
        stored = dict(connection.sql("SELECT contactid, customerendpoint.address FROM ctr "
                                     "WHERE customerendpoint.address IS NOT NULL").fetchall())
    assert stored and all(value.startswith("hmac-sha256:") for value in stored.values())
    assert set(stored.values()) <= {hash_address(number, SECRET.encode()) for number in numbers}

    records = [record for run in instance.get_runs() for record in instance.all_logs(run.run_id)]
    written = [dg.serialize_value(run) for run in instance.get_runs()] + [dg.serialize_value(r) for r in records]
    captured = capfd.readouterr()
    for secret in (SECRET, AWS_SECRET, AWS_SECRET[::-1]):
        assert not any(secret in text for text in written), "in a run record or event log"
        assert secret not in captured.out + captured.err
        assert not any(secret in text for text in texts.values())
        assert not any(secret.encode() in path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())


def test_the_ui_starts_on_this_machine_only(tmp_path):
    """`dagster dev` has no authentication: anyone who can reach its port can run the pipeline. `ctr-assets ui`
    and the dashboards it serves listen on 127.0.0.1 only, as the kernel's socket table says."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    commands = [span for span in re.findall(r"`([^`\n]*dagster dev[^`\n]*)`", readme) if span != "dagster dev"]
    assert commands and all("dagster dev -h 127.0.0.1" in command for command in commands)
    assert "0.0.0.0" not in readme and "ctr-assets ui" in readme
    ui_port, dashboard_port = free_port(), free_port()
    (tmp_path / "ctr_data" / "raw").mkdir(parents=True)
    log = tmp_path / "ui.log"
    with log.open("w") as output:
        ui = subprocess.Popen([*CLI, "ui", "--port", str(ui_port)], cwd=tmp_path, stdout=output,
                              stderr=subprocess.STDOUT, start_new_session=True,
                              env=cli_environment({"CTR_DASHBOARD_URL": f"http://127.0.0.1:{dashboard_port}/"}))
    try:
        wait_until_ready(DagsterGraphQLClient("127.0.0.1", port_number=ui_port, timeout=30), ui, log)
        assert listening(ui_port) == {LOOPBACK} and listening(dashboard_port) == {LOOPBACK}
    finally:
        ui.send_signal(signal.SIGTERM)
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)  # the group started above: ui and its dagster dev
            raise


LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it


def listening(port: int) -> set[str]:
    """The local addresses where a socket listens on `port` (Linux's socket tables, IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.rsplit(":", 1)
            if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


# Spellings that normalize to one name (so a record holding two of them gets `_2`, `_3` copies), and keys
# that read as copies (`Address_2`).
ENDPOINTS = {
    "covered": ["CustomerEndpoint", "customerEndpoint", "CUSTOMER-ENDPOINT", "TransferredToEndpoint",
                "transferredToEndpoint", "Transferred To Endpoint"],
    "system": ["SystemEndpoint", "systemEndpoint"],
}
ADDRESSES = ["Address", "address", "ADDRESS", "Add-ress", "Address_2", "address_3"]


@st.composite
def records_with_copies(draw) -> tuple[bytes, list[str], list[str]]:
    """The raw text of one CTR (keys may repeat), with its covered and its system numbers as they appear."""
    covered, system = [], []
    count = iter(range(10**6))

    def number(kind: str) -> str:
        digits = ("1555" if kind == "covered" else "1800") + f"{next(count):07d}"
        as_text = draw(st.booleans())
        (covered if kind == "covered" else system).append(digits)
        return json.dumps("+" + digits) if as_text else digits

    def endpoint(kind: str, first: bool) -> str:
        fields, typed = [], first  # only the first `address` of the first endpoint is held to its type
        for _ in range(draw(st.integers(1, 3))):
            spelling = draw(st.sampled_from(ADDRESSES))
            value = number(kind)
            if typed and normalize_key(spelling) == "address":
                typed = False
            else:
                value = draw(st.sampled_from(["{}", '{{"Number":{}}}', "[{}]", '[{{"N":[{}]}}]'])).format(value)
            fields.append(f"{json.dumps(spelling)}:{value}")
        inner = "{" + ",".join(fields + ['"Type":"TELEPHONE_NUMBER"']) + "}"
        # A copy is not held to the documented types: it may even be a list of endpoints.
        return inner if first or draw(st.booleans()) else f"[{inner}]"

    members = ['"ContactId":"c1"', '"InitiationTimestamp":"2026-11-27T10:00:00Z"']
    seen = set()
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["covered", "covered", "system"]))
        spelling = draw(st.sampled_from(ENDPOINTS[kind]))
        name = normalize_key(spelling)
        members.append(f"{json.dumps(spelling)}:{endpoint(kind, name not in seen)}")
        seen.add(name)
    return ("{" + ",".join(members) + "}").encode(), covered, system


@settings(max_examples=300, deadline=None)
@given(records_with_copies(), st.sampled_from(["mask", "hash"]))
def test_every_copy_of_a_covered_address_is_protected_and_system_numbers_are_kept(record, mode):
    """Before, only `customerendpoint.address` and `transferredtoendpoint.address` themselves were: a number
    under `address_2` or `customerendpoint_2` stayed in clear."""
    data, covered, system = record
    flat = io.BytesIO()
    flatten_object(data, "raw/2026/11/27/10/x", flat, io.BytesIO(), phone_protector(mode, b"k" * 16))
    (line,) = flat.getvalue().splitlines()
    assert [digits for digits in covered if digits in line.decode()] == []
    assert all(digits in line.decode() for digits in system)


def test_the_copies_the_issue_found_are_masked():
    data = json.dumps({"ContactId": "c", "InitiationTimestamp": "2026-11-27T10:00:00Z",
                       "CustomerEndpoint": {"Address": "+15551230001", "address": "+15551230002"}}).encode()[:-1]
    data += b',"customerEndpoint":{"Address":"+15551230003"}}'
    flat = io.BytesIO()
    flatten_object(data, "raw/2026/11/27/10/x", flat, io.BytesIO(), phone_protector("mask"))
    record = json.loads(flat.getvalue())
    assert record["customerendpoint"] == {"address": "+*******0001", "address_2": "+*******0002"}
    assert record["customerendpoint_2"] == {"address": "+*******0003"}
