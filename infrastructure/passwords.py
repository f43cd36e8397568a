"""Password hashes (Argon2id, argon2-cffi) and the list of common passwords refused at activation.

Parameters: Argon2id, memory 19 MiB, 2 passes, 1 lane: the first of OWASP's recommended
configurations (Password Storage Cheat Sheet). One lane, so one sign-in costs one core, and
that cost stays under ~100 ms of it: RFC 9106's 64 MiB and 3 passes measured 226 ms of CPU per
sign-in on this project's (loaded, 2-core) machine, these about a fifth of that (see
docs/benchmarks.md, ``bench/sign_in.py``). A stored hash names its parameters, so they can be
raised on faster machines: a hash made with older ones is re-made at the next successful
sign-in (``needs_rehash``).

``verify_dummy`` spends the same work on a fixed hash: sign-in calls it when no account has the
phone number, so an unknown number and a wrong password take the same time.

The common passwords are ``common_passwords.txt`` beside this module: the 30,000 most common
passwords of zxcvbn 4.5.0's frequency list (MIT licence, Dropbox; drawn from public password
leaks), lower-cased, plus about sixty common in China (keyboard and number patterns such as
``woaini1314``, ``1qaz2wsx``, ``5201314520``). Passwords are compared lower-cased.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

COMMON_PASSWORDS = Path(__file__).with_name("common_passwords.txt")
TIME_COST = 2
MEMORY_KIB = 19 * 1024
LANES = 1


class PasswordHasher:
    """Argon2id with this service's parameters."""

    def __init__(self, *, time_cost: int = TIME_COST, memory_kib: int = MEMORY_KIB, lanes: int = LANES) -> None:
        self._argon = Argon2Hasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=lanes, hash_len=32, salt_len=16, type=Type.ID
        )
        self._dummy = self._argon.hash("guanai: no account has this phone number")

    @property
    def parameters(self) -> str:
        return f"argon2id m={self._argon.memory_cost} KiB t={self._argon.time_cost} p={self._argon.parallelism}"

    def hash(self, password: str) -> str:
        return self._argon.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; without a stored hash, the same work for nothing."""
        if stored is None:
            self.verify_dummy(password)
            return False
        try:
            return self._argon.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def verify_dummy(self, password: str) -> None:
        try:
            self._argon.verify(self._dummy, password)
        except VerificationError:
            pass

    def needs_rehash(self, stored: str) -> bool:
        return self._argon.check_needs_rehash(stored)


@cache
def common_passwords() -> frozenset[str]:
    return frozenset(line.strip() for line in COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines() if line.strip())
