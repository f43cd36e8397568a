"""Each suite's algorithms pass their standard's test vectors: GB/T 32905 (SM3), GB/T 32907
(SM4), GB/T 32918 (SM2 signature, with the standard's private key and k), RFC 8998 (SM4-GCM),
RFC 8032 (Ed25519); and what the suites build on them (sealing AEADs, signing keys, key files)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from infrastructure import verifier
from infrastructure.suites import (
    GM,
    INTERNATIONAL,
    SM4GCM,
    SigningKey,
    SuiteError,
    load_or_create_signing_key,
    sm2_sign,
    suite,
)


def test_sm3_gb_t_32905_examples() -> None:
    assert verifier.sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert verifier.sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_sm4_gb_t_32907_examples_once_and_a_million_times() -> None:
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    block = enc.update(key)
    assert block.hex() == "681edf34d206965e86b3e94f536e4246"
    for _ in range(999_999):
        block = enc.update(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_sm4_gcm_rfc_8998_example_and_a_changed_byte_refused() -> None:
    aead = SM4GCM(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))
    nonce, aad = bytes.fromhex("00001234567800000000ABCD"), bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plain = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    sealed = aead.encrypt(nonce, plain, aad)
    assert sealed.hex() == (
        "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735"
        "d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d"
        "83de3541e4c2b58177e065a9bf7b62ec"
    )
    assert aead.decrypt(nonce, sealed, aad) == plain
    for changed in (sealed[:5] + bytes([sealed[5] ^ 1]) + sealed[6:], sealed[:-1] + bytes([sealed[-1] ^ 1])):
        with pytest.raises(InvalidTag):
            aead.decrypt(nonce, changed, aad)
    with pytest.raises(InvalidTag):
        aead.decrypt(nonce, sealed, aad + b"x")


def test_sm2_gb_t_32918_signature_example() -> None:
    """GB/T 32918.2 with the recommended curve (part 5's example): ID 1234567812345678, message
    "message digest", the standard's private key and random k."""
    d = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
    key = SigningKey("gm", d.to_bytes(32))
    assert key.public.key.hex() == (
        "09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
        "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
    )
    k = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
    signature = sm2_sign(d, key.public.key, b"message digest", k)
    assert signature.hex() == (
        "f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3"
        "b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa"
    )
    assert verifier.sm2_verify(key.public.key, b"message digest", signature)
    assert not verifier.sm2_verify(key.public.key, b"message digesT", signature)
    # Out-of-range r or s, and a public key off the curve, are refused before any arithmetic.
    n = verifier.SM2_N.to_bytes(32)
    assert not verifier.sm2_verify(key.public.key, b"message digest", n + signature[32:])
    assert not verifier.sm2_verify(key.public.key, b"message digest", signature[:32] + bytes(32))
    assert not verifier.sm2_verify(key.public.key[:-1] + b"\x00", b"message digest", signature)


def test_sm2_signatures_use_a_fresh_k_each_time() -> None:
    key = GM.new_signing_key()
    first, second = key.sign(b"checkpoint"), key.sign(b"checkpoint")
    assert first != second  # a repeated k would reveal the private key
    assert verifier.verify_signature("gm", key.public.key, b"checkpoint", first)
    assert verifier.verify_signature("gm", key.public.key, b"checkpoint", second)


def test_ed25519_rfc_8032_test_1() -> None:
    key = SigningKey("international", bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    assert key.public.key.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert key.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
        "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


@pytest.mark.parametrize("the_suite", [INTERNATIONAL, GM], ids=lambda s: s.name)
def test_a_signing_key_file_is_made_once_and_is_of_its_suite(the_suite, tmp_path: Path) -> None:
    path = tmp_path / "key"
    first = load_or_create_signing_key(path, the_suite)
    assert load_or_create_signing_key(path, the_suite).key_id == first.key_id
    assert path.stat().st_mode & 0o777 == 0o600
    other = GM if the_suite is INTERNATIONAL else INTERNATIONAL
    with pytest.raises(SuiteError, match=f"holds a {the_suite.name} key"):
        load_or_create_signing_key(path, other)
    with pytest.raises(SuiteError, match="unknown crypto suite"):
        suite("rot13")


def test_the_verifier_is_one_file_that_imports_only_the_standard_library_and_the_crypto_libraries() -> None:
    """An outside party copies infrastructure/verifier.py alone: it may not import the project."""
    source = Path(verifier.__file__)
    allowed = set(sys.stdlib_module_names) | {"__future__", "cryptography", "gmssl"}
    for node in ast.walk(ast.parse(source.read_text())):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        for name in names:
            assert name.split(".")[0] in allowed, f"verifier.py imports {name}"
