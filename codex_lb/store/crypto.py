"""Encryption of tokens at rest with a key file kept beside the database."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "encryption.key"


class TokenCipher:
    """Encrypts and decrypts token strings with one Fernet key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> TokenCipher:
        """Load the key from ``data_dir``, creating it (mode 0600) if absent."""
        path = data_dir / KEY_FILE
        try:
            key = path.read_bytes().strip()
        except FileNotFoundError:
            key = Fernet.generate_key()
            # O_EXCL: two processes starting at once must not write two keys.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                key = path.read_bytes().strip()
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(key + b"\n")
        return cls(key)

    def encrypt(self, text: str) -> bytes:
        return self._fernet.encrypt(text.encode())

    def decrypt(self, blob: bytes) -> str:
        try:
            return self._fernet.decrypt(blob).decode()
        except InvalidToken as exc:
            raise ValueError(
                f"stored token cannot be decrypted: is {KEY_FILE} the one "
                "this database was written with?"
            ) from exc
