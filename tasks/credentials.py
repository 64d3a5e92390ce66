"""Class codes, login names and memorable passwords in the style users know, stored safely."""

from __future__ import annotations

import base64
import os
import hashlib
import secrets
import unicodedata
from concurrent.futures import ThreadPoolExecutor

# No 0/O, 1/I/L, 2/Z, 5/S, 8/B: codes are read aloud and typed by children.
CLASS_CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
PASSWORD_WORDS = (
    "ANT BAG BAT BED BEE BELL BIRD BOAT BOOK BOX BUS CAKE CAMP CAR CAT COW CUP DESK DOG DOOR DOT DRUM DUCK "
    "EGG ELK FAN FARM FISH FLAG FOX FROG GATE GOAT HAT HEN HILL HORN JAM JAR JET KEY KITE LAMP LEAF LION LOG "
    "MAP MILK MOON MOP NEST NET NUT OAK OAR OWL PAN PEN PIG PIN POND POT RAIN RAKE RING ROAD ROCK ROOF ROSE "
    "RUG SAIL SAND SEAL SHIP SOCK SOUP STAR SUN TAP TENT TOP TOY TREE TUB VAN VASE WAVE WEB WIND WOLF YAK ZOO "
    "APPLE BEAR BERRY CLOUD CORN DEER EAGLE FERN GRAPE HONEY LEMON MANGO MAPLE OCEAN OLIVE OTTER PANDA PEAR "
    "PLUM RIVER ROBIN SEED SNOW SPOON TIGER TRAIN TULIP WHALE"
).split()
# scrypt at 2^13 costs ~30 ms a password here: a 10,000-student batch hashes in about 2.5 minutes on
# two cores. The memorable passwords carry ~21 bits, so a dearer hash would buy little.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**13, 8, 1


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
    """Two short words and two digits, e.g. OVENONE47: easy to read out to a child."""
    return secrets.choice(PASSWORD_WORDS) + secrets.choice(PASSWORD_WORDS) + f"{secrets.randbelow(100):02d}"


def hash_password(password: str) -> str:
    """A salted scrypt hash; the password itself is never stored on the student."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "scrypt${}${}${}${}${}".format(
        SCRYPT_N, SCRYPT_R, SCRYPT_P, base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    )


def hash_passwords(passwords: list[str]) -> list[str]:
    """Hash many passwords on every core (scrypt releases the interpreter lock while it works)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(hash_password, passwords))


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash made by ``hash_password``."""
    _, n, r, p, salt, digest = stored.split("$")
    computed = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return secrets.compare_digest(computed, base64.b64decode(digest))
