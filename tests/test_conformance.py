"""Every embedded store passes the shipped conformance suite, sync and async."""

from __future__ import annotations

from pathlib import Path

import pytest

from satchel.stores import FileStore, MemoryStore, SQLiteStore, Store
from satchel.testing.conformance import StoreConformance


class TestMemoryStore(StoreConformance):
    def make_store(self) -> Store:
        return MemoryStore()


class TestSQLiteStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def make_store(self) -> Store:
        return SQLiteStore(self.tmp_path / "sessions.db")


class TestFileStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def make_store(self) -> Store:
        return FileStore(self.tmp_path / "sessions")


class TestSQLiteStoreEncryptedAtRest(TestSQLiteStore):
    """The whole suite again with every value encrypted before it reaches the store."""

    engine_options = {"encrypt_at_rest": True}  # noqa: RUF012
