"""The MQTT subscriber over TLS (`mqtts://`), against a Mosquitto of the test's own with a TLS
listener and a certificate from a CA made for the test: the production path (the default SSL
context, the hostname checked) that no other test takes. The subscriber reads through
`_ReadAhead`, which wraps the SSL socket there and counts what it has decrypted but not handed
out as read ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import ssl
import uuid
from collections.abc import Sequence
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from healthflow.bench.server import mosquitto_binary, own_mosquitto
from healthflow.vitals.ingest_mqtt import Broker, MqttIngest
from healthflow.vitals.ports import DeviceMessage

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(
        mosquitto_binary() is None and os.environ.get("HEALTHFLOW_REQUIRE_SERVICES") != "1",
        reason="no mosquitto binary to run a TLS broker with",
    ),
]


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None = None
) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
    )


def _write_pki(folder: Path) -> Path:
    """A CA and a certificate for `localhost` signed by it: the CA's path (clients trust it)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        _certificate("HealthFlow test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _certificate("localhost", key, issuer=ca.subject)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(cert.public_bytes(pem))
    (folder / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "ca.pem"


class Collected:
    """DeviceMessages that keeps what it is handed, in order."""

    def __init__(self, expected: int) -> None:
        self.bodies: list[dict[str, object]] = []
        self.expected = expected
        self.all_in = asyncio.Event()

    async def submit_many(self, messages: Sequence[DeviceMessage]) -> list[Exception | None]:
        self.bodies.extend(m.body for m in messages)
        if len(self.bodies) >= self.expected:
            self.all_in.set()
        return [None] * len(messages)


async def test_messages_over_tls_arrive_whole_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = mosquitto_binary()
    assert binary is not None, "mosquitto is required here (HEALTHFLOW_REQUIRE_SERVICES=1)"
    ca = _write_pki(tmp_path)
    # the subscriber builds its context with ssl.create_default_context(), as in production:
    # OpenSSL's default verify paths take the test CA from SSL_CERT_FILE
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    tls = f"cafile {ca}\ncertfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
    if os.geteuid() == 0:  # started as root, Mosquitto drops to its own user: the files are ours
        tls += "user root\n"
    count = 600  # ~90 KB of messages: more than one read ahead, more than one TLS record
    async with own_mosquitto(binary, tmp_path, extra_conf=tls) as url:
        port = Broker.from_url(url).port
        prefix = f"hf-tls-{uuid.uuid4().hex[:8]}/"
        intake = Collected(count)
        ingest = MqttIngest(
            intake,
            Broker.from_url(f"mqtts://localhost:{port}"),
            client_id=f"{prefix}sub",
            topic_prefix=prefix,
            max_message_bytes=65536,
            queue_size=50,
        )
        task = asyncio.create_task(ingest.run())
        try:
            async with asyncio.timeout(20):
                await ingest.subscribed.wait()
            trusting = ssl.create_default_context(cafile=str(ca))
            async with aiomqtt.Client(
                "localhost", port, identifier=f"{prefix}pub", tls_context=trusting
            ) as device:
                for i in range(count):
                    body = f'{{"device_key":"k","n":{i},"pad":"{"x" * 100}"}}'
                    await device.publish(f"{prefix}devices/mon-1/messages/events/", body, qos=1)
            async with asyncio.timeout(20):
                await intake.all_in.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [b["n"] for b in intake.bodies] == list(range(count))
    # the queue's bound holds over TLS too: a batch being stored and a full queue behind it
    assert (await ingest.check()).detail["most_unacknowledged"] <= 2 * 50 + 1
