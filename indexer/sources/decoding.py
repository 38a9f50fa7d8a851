"""Bytes of a text file to str: byte-order marks, UTF-8, else the encoding charset-normalizer detects."""

from __future__ import annotations

import codecs

#: How much of a file is looked at for NUL bytes to call it binary.
_BINARY_PROBE = 8192
#: Checked longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
#: Among equally clean guesses, the commonest legacy encoding of Western text wins:
#: short Latin-1 text decodes cleanly as cp1250 and cp1257 too, with wrong letters.
_PREFERRED = ("cp1252", "latin_1")


class NotText(ValueError):
    """The bytes are not text in any encoding we can tell; the message says why."""


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode a text file.

    A byte-order mark decides; else UTF-8 if the bytes are valid UTF-8; else the best guess
    of charset-normalizer (UTF-16 without a mark, cp1252, cp1251, Shift-JIS, ...).

    Args:
        data: The file's bytes.

    Returns:
        (text, encoding): the text with \\n newlines, and the Python codec name used.

    Raises:
        NotText: a binary file, a broken byte-order-marked file, or bytes no encoding fits.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return _newlines(data.decode(codec)), codec
            except UnicodeDecodeError as exc:
                name = "UTF-8" if codec == "utf-8-sig" else codec.upper()
                offset = exc.start + (len(bom) if codec == "utf-8-sig" else 0)
                raise NotText(f"not valid {name} (byte offset {offset})") from exc
    if b"\x00" in data[:_BINARY_PROBE]:
        text = _utf16_without_bom(data)
        if text is None:
            raise NotText("binary file")
        return _newlines(text), "utf-16"
    try:
        return _newlines(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    guess = _detect(data)
    if guess is None:
        raise NotText(f"not valid UTF-8 (byte offset {utf8_error.start}) and no other text encoding fits")
    return _newlines(data.decode(guess)), guess


def _detect(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        return None
    cleanest = min(m.chaos for m in matches)
    candidates = [m.encoding for m in matches if m.chaos == cleanest]
    for preferred in _PREFERRED:
        if preferred in candidates:
            return preferred
    return candidates[0]


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text with no byte-order mark, told by its NUL bytes: mostly ASCII, so every
    other byte is zero. None when the bytes are not that (a binary file)."""
    probe = data[:_BINARY_PROBE]
    if len(data) % 2 or len(probe) < 2:
        return None
    even, odd = probe[0::2].count(0), probe[1::2].count(0)
    codec = "utf-16-le" if odd > even else "utf-16-be"
    # Most of the NULs must be on one side, and the ASCII half must be a good share.
    if min(even, odd) * 10 > max(even, odd) or max(even, odd) * 3 < len(probe) // 2:
        return None
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        return None
    if any(ch < " " and ch not in "\t\n\r\f" for ch in text[:_BINARY_PROBE]):
        return None
    return text


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
