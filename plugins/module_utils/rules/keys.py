"""WireGuard key pairs for dtService interfaces.

This module owns the one cryptographic decision of the project: what a WireGuard key is.
Keys are X25519 (Curve25519) keys in WireGuard's text form, the standard base64 of the 32
raw bytes (44 characters), exactly what ``wg genkey`` / ``wg pubkey`` print and what
``wg setconf`` and the dtService objects (``publicKey``) carry.

Private keys are generated here with ``cryptography`` (no ``wg`` binary needed on the
controller) and clamped like ``wg genkey`` does, so a key made here and one made by
``wg genkey`` are indistinguishable. Nothing here logs, stores or echoes a private key:
errors about a bad key never include the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
except ImportError as error:
    # Modules report it by name before any work (module_args.require); checking a key's form
    # needs no cryptography.
    IMPORT_ERROR: ImportError | None = error
else:
    IMPORT_ERROR = None

__all__ = ["KEY_LENGTH", "generate_private_key", "is_valid_key", "public_key_of"]

KEY_LENGTH = 32
# Digest of a private key -> its public key, for public_key_of (a pass's keys, bounded).
_PUBLIC_KEYS: dict[bytes, str] = {}
_REMEMBERED_KEYS = 4096


def _decode(text: str) -> bytes | None:
    if not isinstance(text, str) or len(text) != 44 or not text.endswith("="):
        return None
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if len(raw) == KEY_LENGTH else None


def is_valid_key(text: str) -> bool:
    """True if ``text`` is a WireGuard key in text form (base64 of 32 bytes).

    Never raises, whatever ``text`` is; both private and public keys have this form.
    """
    return _decode(text) is not None


def generate_private_key() -> str:
    """A new random X25519 private key in WireGuard's base64 form, clamped like ``wg genkey``."""
    private = X25519PrivateKey.generate()
    raw = bytearray(private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption()))
    # Same clamping as wg genkey: the public key is unaffected (X25519 clamps anyway), but
    # the stored form then matches what `wg show IF private-key` prints back.
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return base64.b64encode(bytes(raw)).decode("ascii")


def public_key_of(private_key: str) -> str:
    """The public key (base64) of a WireGuard private key (base64).

    Raises ``ValueError`` (without echoing the input) if ``private_key`` is not a key.
    Remembered by a digest of the private key, never the key itself: a pass derives each
    interface's public key four to six times (the Secret's check, the published key, the key
    put to use, the live interface's), 50 microseconds each.
    """
    raw = _decode(private_key)
    if raw is None:
        raise ValueError("not a WireGuard private key (expected base64 of 32 bytes)")
    digest = hashlib.blake2b(raw, digest_size=32).digest()
    known = _PUBLIC_KEYS.get(digest)
    if known is not None:
        return known
    public = X25519PrivateKey.from_private_bytes(raw).public_key()
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    public_key = base64.b64encode(raw_public).decode("ascii")
    # Threads of a pass share the memory: what one clears, another is not reading back.
    if len(_PUBLIC_KEYS) >= _REMEMBERED_KEYS:
        _PUBLIC_KEYS.clear()
    _PUBLIC_KEYS[digest] = public_key
    return public_key
