"""Class codes, login names and passwords."""

from __future__ import annotations

import base64
import hashlib
import math
import re
from pathlib import Path

from tasks.credentials import (CLASS_CODE_ALPHABET, PASSWORD_DIGITS, PASSWORD_WORDS, SCRYPT_N, SCRYPT_P, SCRYPT_R,
                               class_code, hash_password, hash_passwords, login_name, memorable_password,
                               password_bits, verify_password)


def test_login_names_follow_the_style_and_never_collide():
    taken = {"JDIAS"}
    assert login_name("José", "Dias", taken) == "JDIAS2"
    assert login_name("Jane", "Dias", taken) == "JDIAS3"
    assert login_name("Zoë", "O'Brien-Lee", taken) == "ZOBRIENLEE"
    assert login_name("", "", taken) == "STUDENT"


def test_class_codes_avoid_look_alike_characters_and_repeats():
    taken: set[str] = set()
    codes = [class_code(taken) for _ in range(500)]
    assert len(set(codes)) == 500
    assert all(len(c) == 11 and c[5] == "-" and set(c.replace("-", "")) <= set(CLASS_CODE_ALPHABET) for c in codes)
    assert not set("01OIL25SZ8B") & set(CLASS_CODE_ALPHABET)


def test_passwords_are_memorable_and_stored_only_as_salted_hashes():
    password = memorable_password()
    assert re.fullmatch(r"[A-Z]{3,7}[34679][A-Z]{3,7}[34679][A-Z]{3,7}", password)
    first, second = hash_password(password), hash_password(password)
    assert first != second and password not in first
    assert verify_password(password, first) and not verify_password(password + "X", first)
    assert all(verify_password("OWL3PEN7FROG", h) for h in hash_passwords(["OWL3PEN7FROG"] * 3))


def test_a_password_carries_the_strength_the_readme_states():
    # Three words drawn from the list and two digits from five, each uniformly: 3 x log2(1024) +
    # 2 x log2(5) = 34.6 bits, the figure the README's "Passwords" section reasons with.
    words = set(PASSWORD_WORDS)
    assert len(words) == len(PASSWORD_WORDS) == 1024
    assert all(re.fullmatch(r"[A-Z]{3,7}", word) for word in words)
    assert PASSWORD_DIGITS == "34679" and not set(PASSWORD_DIGITS) & set("0125 8")
    bits = 3 * math.log2(len(words)) + 2 * math.log2(len(PASSWORD_DIGITS))
    assert round(bits, 1) == round(password_bits(), 1) == 34.6
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "34.6 bits" in readme
    # Digits between words: every password reads back as exactly one choice of words and digits.
    word, digit = "|".join(sorted(words)), "[34679]"
    assert all(re.fullmatch(f"({word}){digit}({word}){digit}({word})", memorable_password()) for _ in range(200))


def test_hashes_made_with_earlier_parameters_still_verify():
    # Before the cheaper hash, passwords were hashed with scrypt N=2^13; each hash names its own parameters.
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(b"OWLPEN42", salt=salt, n=2**13, r=8, p=1, dklen=32)
    earlier = f"scrypt$8192$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("OWLPEN42", earlier) and not verify_password("OWLPEN43", earlier)
    assert hash_password("OWL3PEN7FROG").split("$")[1:4] == [str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P)]
