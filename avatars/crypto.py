"""Envelope encryption for personal data at rest.

Each avatar has its own random 256-bit data key. Photos, the avatar's LoRA and its reference
face embedding are sealed with AES-GCM under that key, with the avatar id and the object's
purpose as associated data (a blob cannot be swapped between avatars or purposes). The data
key is stored only wrapped by a master key from the environment (`DATA_MASTER_KEYS`). Erasing
an avatar destroys its wrapped key: any copy of its objects left in a backup or a copied
storage folder can no longer be decrypted ("crypto-shredding").

Keys and plaintext never appear in logs or task payloads (tasks carry ids only).
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

BLOB_MAGIC = b"PTW1"
_NONCE = 12


class DecryptionError(Exception):
    """The data cannot be decrypted: wrong or destroyed key, or tampered bytes."""


@dataclass(frozen=True)
class MasterKeys:
    current_id: str
    keys: dict[str, bytes]


def parse_master_keys(value: str) -> MasterKeys:
    """`id1:base64key1,id2:base64key2` — the first is current; the others still unwrap."""
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise ValueError("DATA_MASTER_KEYS entries look like 'id:base64key'.")
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        if len(key) != 32:
            raise ValueError(f"master key {key_id!r} must be 32 bytes (256 bits).")
        keys[key_id] = key
        order.append(key_id)
    if not keys:
        raise ValueError("DATA_MASTER_KEYS is empty.")
    return MasterKeys(current_id=order[0], keys=keys)


def new_master_key_entry(key_id: str) -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip('=')}"


@lru_cache(maxsize=4)
def _master_keys(value: str) -> MasterKeys:
    return parse_master_keys(value)


def master_keys() -> MasterKeys:
    return _master_keys(settings.DATA_MASTER_KEYS)


def new_data_key() -> bytes:
    return secrets.token_bytes(32)


def wrap_data_key(data_key: bytes, *, owner_id: str) -> bytes:
    """`key id` + nonce + AES-GCM(master, data key), bound to the owner id."""
    keys = master_keys()
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(keys.keys[keys.current_id]).encrypt(nonce, data_key, owner_id.encode())
    key_id = keys.current_id.encode()
    return bytes([len(key_id)]) + key_id + nonce + sealed


def wrapped_key_id(wrapped: bytes) -> str:
    return wrapped[1 : 1 + wrapped[0]].decode()


def unwrap_data_key(wrapped: bytes | memoryview | None, *, owner_id: str) -> bytes:
    """`wrapped` as a BinaryField holds it (bytes, or a memoryview from some database drivers)."""
    if not wrapped:
        raise DecryptionError("The data key has been destroyed.")
    wrapped = bytes(wrapped)
    key_id = wrapped_key_id(wrapped)
    master = master_keys().keys.get(key_id)
    if master is None:
        raise DecryptionError(f"Master key {key_id!r} is not configured.")
    offset = 1 + wrapped[0]
    nonce, sealed = wrapped[offset : offset + _NONCE], wrapped[offset + _NONCE :]
    try:
        return AESGCM(master).decrypt(nonce, sealed, owner_id.encode())
    except InvalidTag as exc:
        raise DecryptionError("The data key cannot be unwrapped.") from exc


def encrypt_blob(plaintext: bytes, *, data_key: bytes, owner_id: str, purpose: str) -> bytes:
    nonce = os.urandom(_NONCE)
    aad = f"{owner_id}:{purpose}".encode()
    return BLOB_MAGIC + nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def decrypt_blob(blob: bytes, *, data_key: bytes, owner_id: str, purpose: str) -> bytes:
    if not blob.startswith(BLOB_MAGIC):
        raise DecryptionError("Not an encrypted blob.")
    nonce = blob[len(BLOB_MAGIC) : len(BLOB_MAGIC) + _NONCE]
    aad = f"{owner_id}:{purpose}".encode()
    try:
        return AESGCM(data_key).decrypt(nonce, blob[len(BLOB_MAGIC) + _NONCE :], aad)
    except InvalidTag as exc:
        raise DecryptionError("The blob cannot be decrypted with this key.") from exc
