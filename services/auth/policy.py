"""What a new password may not be: one of the commonest passwords, or the username in disguise.

Length (8-128) is checked by the request schema; this adds what a schema cannot know. The list
(``common_passwords.txt`` beside this module, installed as package data) holds the passwords
that credential-stuffing and spraying try first; the load generator's DDoS flood tries some of
them too. Comparison is case-insensitive and ignores surrounding spaces.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

COMMON_PASSWORDS_FILE = "common_passwords.txt"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath(COMMON_PASSWORDS_FILE).read_text(encoding="utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines()
        if line.strip() and not line.startswith("# ")
    )


def password_problem(username: str, password: str) -> str | None:
    """Why ``password`` may not be used by ``username``, or None.

    >>> password_problem("alice", "Password1")
    'is one of the most common passwords; choose a less guessable one'
    >>> password_problem("alice", "my-ALICE-2024")
    'must not contain the username'
    >>> password_problem("alice", "correct horse battery staple") is None
    True
    """
    candidate = password.strip().lower()
    name = username.strip().lower()
    if name and name in candidate:
        return "must not be the username" if candidate == name else "must not contain the username"
    if candidate in common_passwords():
        return "is one of the most common passwords; choose a less guessable one"
    return None
