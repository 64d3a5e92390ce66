"""Class codes, login names and passwords."""

from __future__ import annotations

import re

from tasks.credentials import (CLASS_CODE_ALPHABET, class_code, hash_password, hash_passwords, login_name,
                               memorable_password, verify_password)


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
    assert re.fullmatch(r"[A-Z]{6,10}\d{2}", password)
    first, second = hash_password(password), hash_password(password)
    assert first != second and password not in first
    assert verify_password(password, first) and not verify_password(password + "X", first)
    assert all(verify_password("OWLPEN42", h) for h in hash_passwords(["OWLPEN42"] * 3))
