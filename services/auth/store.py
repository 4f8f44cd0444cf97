"""The auth service's database: one row per customer login."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from obslab.platform.db import Database

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(32), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password_hash: str


class UsernameTaken(Exception):
    pass


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, user_id: str, username: str, password_hash: str) -> User:
        try:
            self.db.run(lambda conn: conn.execute(insert(users).values(
                id=user_id, username=username, password_hash=password_hash,
                created_ms=int(time.time() * 1000),
            )))
        except IntegrityError:
            raise UsernameTaken(username) from None
        return User(user_id, username, password_hash)

    def by_username(self, username: str) -> User | None:
        with self.db.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).mappings().first()
        return User(row["id"], row["username"], row["password_hash"]) if row else None

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        self.db.run(lambda conn: conn.execute(
            update(users).where(users.c.id == user_id).values(password_hash=password_hash)
        ))
