"""Crypto suites: which algorithms seal personal data, wrap keys, hash the Merkle tree and sign
checkpoints. A store is created under one suite and records it (``guanai_crypto_suite``); every
process then uses the store's suite.

- ``international`` (the default): AES-256-GCM, SHA-256 (HKDF, HMAC, tree), Ed25519.
- ``gm`` (商用密码): SM4-GCM (GB/T 32907 block cipher in GCM, as RFC 8998 uses it), SM3 (GB/T 32905),
  SM2 signatures (GB/T 32918, default user id). ``cryptography`` (OpenSSL 3) has SM3 and SM4 with
  GCM; SM2 signing comes from ``gmssl``, whose point arithmetic we use while drawing the nonce k
  from ``secrets`` ourselves (gmssl's own draws from ``random``, which is not fit for keys).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hmac import HMAC
from gmssl import sm2  # type: ignore[import-untyped]

from infrastructure import verifier
from infrastructure.verifier import SM2_N, PublicKey

GCM_TAG_BYTES = 16


class SuiteError(ValueError):
    """An unknown suite, or a process configured with another suite than its store's."""


class Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


class SM4GCM:
    """SM4 in GCM (RFC 8998), with AESGCM's interface: ciphertext || 16-byte tag."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ValueError("SM4 keys are 128 bits")
        self._key = key

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        enc = Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        if associated_data:
            enc.authenticate_additional_data(associated_data)
        out = enc.update(data) + enc.finalize()
        return out + enc.tag

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        if len(data) < GCM_TAG_BYTES:
            raise InvalidTag()
        dec = Cipher(algorithms.SM4(self._key), modes.GCM(nonce, data[-GCM_TAG_BYTES:])).decryptor()
        if associated_data:
            dec.authenticate_additional_data(associated_data)
        return dec.update(data[:-GCM_TAG_BYTES]) + dec.finalize()


class SigningKey:
    """A checkpoint signing key (Ed25519 or SM2) with its public half."""

    def __init__(self, suite: str, private: bytes, name: str = "") -> None:
        self.suite, self._private = suite, private
        if suite == "international":
            self._ed = Ed25519PrivateKey.from_private_bytes(private)
            public = self._ed.public_key().public_bytes_raw()
        elif suite == "gm":
            d = int.from_bytes(private)
            if not 1 <= d < SM2_N - 1:
                raise SuiteError("an SM2 private key is an integer in [1, n-2]")
            public = sm2_public_key(d)
        else:
            raise SuiteError(f"unknown suite {suite!r}")
        self.public = PublicKey(suite, public, name)

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        if self.suite == "international":
            return self._ed.sign(message)
        return sm2_sign(int.from_bytes(self._private), self.public.key, message)

    def secret_hex(self) -> str:
        return self._private.hex()


def sm2_public_key(d: int) -> bytes:
    crypt = sm2.CryptSM2(private_key=f"{d:064x}", public_key="")
    return bytes.fromhex(crypt._kg(d, crypt.ecc_table["g"]))


def sm2_sign(d: int, public_key: bytes, message: bytes, k: int | None = None) -> bytes:
    """SM2 signature r || s over ``message`` (default user id); ``k`` only for test vectors."""
    crypt = sm2.CryptSM2(private_key=f"{d:064x}", public_key=public_key.hex())
    digest = verifier.sm2_digest(public_key, message)
    while True:
        nonce = k if k is not None else secrets.randbelow(SM2_N - 1) + 1
        signed = crypt.sign(digest, f"{nonce:064x}")
        if signed is not None:  # r = 0, r + k = n or s = 0: draw another k
            return bytes.fromhex(signed)
        if k is not None:
            raise SuiteError("this k gives no signature")


@dataclass(frozen=True)
class Suite:
    """What one suite uses for each job."""

    name: str
    aead: Callable[[bytes], Aead]  # data key -> AEAD
    data_key_bytes: int
    blob_format: int  # first byte of a sealed blob: says which AEAD sealed it
    kdf_hash: Callable[[], hashes.HashAlgorithm]
    tree_hash: Callable[[bytes], bytes]

    def new_data_key(self) -> bytes:
        return secrets.token_bytes(self.data_key_bytes)

    def mac(self, key: bytes, data: bytes) -> bytes:
        if self.name == "international":
            return hmac.new(key, data, hashlib.sha256).digest()
        m = HMAC(key, hashes.SM3())
        m.update(data)
        return m.finalize()

    def new_signing_key(self, name: str = "") -> SigningKey:
        if self.name == "international":
            return SigningKey(self.name, Ed25519PrivateKey.generate().private_bytes_raw(), name)
        return SigningKey(self.name, (secrets.randbelow(SM2_N - 2) + 1).to_bytes(32), name)


INTERNATIONAL = Suite("international", AESGCM, 32, 1, hashes.SHA256, verifier.sha256)
GM = Suite("gm", SM4GCM, 16, 2, hashes.SM3, verifier.sm3)
SUITES = {s.name: s for s in (INTERNATIONAL, GM)}


def suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise SuiteError(f"unknown crypto suite {name!r}: expected one of {', '.join(SUITES)}") from None


# ---- key files -------------------------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    """Write a secret file once, mode 0600, atomically (processes starting together agree)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    tmp.write_text(text)
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def load_or_create_signing_key(path: Path, the_suite: Suite, name: str = "") -> SigningKey:
    """The signing key in ``path`` (``<suite>:<hex>``), generated first if there is none."""
    if not path.exists():
        fresh = the_suite.new_signing_key(name)
        write_private(path, f"{the_suite.name}:{fresh.secret_hex()}\n")
    suite_name, _, secret = path.read_text().strip().partition(":")
    if suite_name != the_suite.name:
        raise SuiteError(f"{path} holds a {suite_name} key; this log uses the {the_suite.name} suite")
    try:
        return SigningKey(suite_name, bytes.fromhex(secret), name)
    except ValueError as e:
        raise SuiteError(f"{path} does not hold a signing key: {e}") from None


def public_key_document(key: SigningKey | PublicKey) -> dict[str, Any]:
    return (key.public if isinstance(key, SigningKey) else key).document()


SIGNING_KEY_FILE = "checkpoint-signing-key"


def signing_key(configured: str | None, data_dir: Path, the_suite: Suite) -> SigningKey:
    """GUANAI_SIGNING_KEY (``<suite>:<hex>``), or the data directory's ``checkpoint-signing-key``
    (generated once). Never in the database."""
    if not configured:
        return load_or_create_signing_key(data_dir / SIGNING_KEY_FILE, the_suite, "log")
    suite_name, _, secret = configured.strip().partition(":")
    if suite_name != the_suite.name:
        raise SuiteError(
            f"GUANAI_SIGNING_KEY is a {suite_name or 'malformed'} key; the store uses the {the_suite.name} suite"
        )
    try:
        return SigningKey(suite_name, bytes.fromhex(secret), "log")
    except ValueError as e:
        raise SuiteError(f"GUANAI_SIGNING_KEY is not a signing key: {e}") from None
