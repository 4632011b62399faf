"""RFC 3161 trusted timestamps over checkpoints: the request (a SHA-256 message imprint of the
checkpoint note's body), the TSA's answer checked before it is kept, and the offline check a
verifier makes. The protocol is rfc3161-client's (no ASN.1 here); the transport is the
outbound guard, through anchor_transport.py.

What is kept is the TSA's whole TimeStampResp in DER, as the TSA sent it: `openssl ts -verify
-in token.tsr -data body.txt -CAfile tsa-ca.pem` checks it as it is."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from infrastructure.evidence import anchor_transport
from infrastructure.outbound import OutboundGuard

CONTENT_TYPE_QUERY = "application/timestamp-query"


class TimestampError(Exception):
    """The TSA could not be reached, or its answer is not a valid token for this note."""


@dataclass(frozen=True)
class Token:
    tsa_url: str
    der: bytes  # the TimeStampResp, DER, as received
    gen_time: datetime


def load_cas(pem: bytes) -> list[x509.Certificate]:
    """The CA certificates of a PEM bundle (ValueError if there are none)."""
    certs = x509.load_pem_x509_certificates(pem)
    if not certs:
        raise ValueError("no certificate in the CA file")
    return certs


UNSORTED_CERTIFICATES = (
    "the TSA's token lists its certificates out of DER order (SignedData.certificates is a "
    "SET OF that DER sorts; OpenSSL's TSA does not sort it when `certs =` adds a chain), and "
    "rfc3161-client cannot read it: configure the TSA to send no chain or a DER-sorted one"
)


def _unreadable(e: ValueError) -> str:
    """Why the library could not read a TimeStampResp, plainly when it is the known case."""
    text = str(e)
    if "InvalidSetOrdering" in text and "SignedData::certificates" in text:
        return UNSORTED_CERTIFICATES
    return text


def imprint(body: str) -> bytes:
    """What a token is over: SHA-256 of the checkpoint note's body (its text, no signatures)."""
    return hashlib.sha256(body.encode()).digest()


def request_token(
    guard: OutboundGuard, url: str, body: str, cas: list[x509.Certificate], timeout: float
) -> Token:
    """Ask the TSA at `url` for a token over `body`, checked (nonce, imprint, chain to `cas`)
    before it is returned."""
    request = (
        TimestampRequestBuilder(nonce=True, cert_req=True)
        .data(body.encode())
        .hash_algorithm(HashAlgorithm.SHA256)
        .build()
    )
    try:
        response = anchor_transport.post(
            guard, url, request.as_bytes(), CONTENT_TYPE_QUERY, timeout
        )
    except anchor_transport.TransportError as e:
        raise TimestampError(f"{url}: {e}") from None
    if response.status != 200:
        raise TimestampError(f"{url}: HTTP {response.status}")
    der = response.body
    try:
        parsed = decode_timestamp_response(der)
    except ValueError as e:
        raise TimestampError(f"{url}: {_unreadable(e)}") from None
    try:
        builder = VerifierBuilder.from_request(request)
        for ca in cas:
            builder = builder.add_root_certificate(ca)
        builder.build().verify_message(parsed, body.encode())
    except (VerificationError, ValueError) as e:
        raise TimestampError(f"{url}: the answer is not a valid token for this note: {e}") from None
    return Token(url, der, parsed.tst_info.gen_time)


def verify_token(der: bytes, body: str, cas: list[x509.Certificate]) -> datetime:
    """The token's genTime if it is a granted token over SHA-256(`body`) whose TSA certificate
    chains to one of `cas`; else TimestampError saying why."""
    try:
        parsed = decode_timestamp_response(der)
    except ValueError as e:
        if _unreadable(e) == UNSORTED_CERTIFICATES:
            raise TimestampError(UNSORTED_CERTIFICATES) from None
        raise TimestampError(f"not a TimeStampResp: {e}") from None
    builder = VerifierBuilder()
    for ca in cas:
        builder = builder.add_root_certificate(ca)
    try:
        builder.build().verify_message(parsed, body.encode())
    except VerificationError as e:
        raise TimestampError(str(e)) from None
    return parsed.tst_info.gen_time
