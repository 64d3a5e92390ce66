"""Class codes, login names and memorable passwords in the style users know, stored safely."""

from __future__ import annotations

import base64
import os
import hashlib
import math
import secrets
import unicodedata
from concurrent.futures import ThreadPoolExecutor

from tasks.password_words import PASSWORD_WORDS
from tasks.progress import Progress, Ticker

# No 0/O, 1/I/L, 2/Z, 5/S, 8/B: codes are read aloud and typed by children.
CLASS_CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
# Digits between the words: the same look-alike-free digits as class codes (no 0/O, 1/I/L, 2/Z, 5/S, 8/B).
PASSWORD_DIGITS = "34679"
PASSWORD_WORD_COUNT = 3
# Hashing and password strength are chosen together (README, "Passwords"): three words of 1,024 and two
# digits of 5 carry 34.6 bits, so an attacker holding the hashes needs on average 2^33.6 guesses;
# scrypt at 2^10 (1 MiB, ~3 ms of CPU a hash here) then costs an attacker about 2,100 times more than
# the former 20.5-bit passwords under scrypt at 2^13, and a 10,000-student batch hashes in 30 core-seconds.
# Every hash keeps its own parameters, so hashes made with the former ones still verify.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**10, 8, 1


def password_bits() -> float:
    """The strength of a memorable password in bits: each word and digit is drawn uniformly and
    independently (``secrets``), and digits between letters keep every password readable one way."""
    return (PASSWORD_WORD_COUNT * math.log2(len(set(PASSWORD_WORDS)))
            + (PASSWORD_WORD_COUNT - 1) * math.log2(len(PASSWORD_DIGITS)))


def class_code(taken: set[str]) -> str:
    """A new class code like J9EYX-XFPD4 that is not in ``taken`` (which it then joins)."""
    while True:
        raw = "".join(secrets.choice(CLASS_CODE_ALPHABET) for _ in range(10))
        code = f"{raw[:5]}-{raw[5:]}"
        if code not in taken:
            taken.add(code)
            return code


def login_name(first_name: str, last_name: str, taken: set[str]) -> str:
    """First initial and last name in capitals (JDIAS); a collision gets the next number (JDIAS2)."""
    def ascii_letters(text: str) -> str:
        folded = unicodedata.normalize("NFKD", text or "")
        return "".join(ch for ch in folded if ch.isascii() and ch.isalpha()).upper()

    base = (ascii_letters(first_name)[:1] + ascii_letters(last_name))[:20] or "STUDENT"
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        candidate = f"{base}{number}"
    taken.add(candidate)
    return candidate


def memorable_password() -> str:
    """Three short words with a digit between each two, e.g. FROG3MOON7CAKE: easy to read out to a
    child and to type, and strong enough for a cheap hash (see ``password_bits``)."""
    words = [secrets.choice(PASSWORD_WORDS) for _ in range(PASSWORD_WORD_COUNT)]
    digits = [secrets.choice(PASSWORD_DIGITS) for _ in range(PASSWORD_WORD_COUNT - 1)]
    return "".join(word + digit for word, digit in zip(words, digits)) + words[-1]


def hash_password(password: str) -> str:
    """A salted scrypt hash; the password itself is never stored on the student."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "scrypt${}${}${}${}${}".format(
        SCRYPT_N, SCRYPT_R, SCRYPT_P, base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    )


def hash_passwords(passwords: list[str], progress: Progress | None = None) -> list[str]:
    """Hash many passwords on every core (scrypt releases the interpreter lock while it works);
    ``progress(hashed, total)`` is told as they are done."""
    ticker = Ticker(progress, len(passwords))
    ticker.tell(0)
    hashes = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for hashed in pool.map(hash_password, passwords):
            hashes.append(hashed)
            ticker.tell(len(hashes))
    return hashes


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash made by ``hash_password``."""
    _, n, r, p, salt, digest = stored.split("$")
    computed = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return secrets.compare_digest(computed, base64.b64decode(digest))
