"""Why a document cannot become fax pages: one documented error tree.

    DocumentError               (code, reason)
    ├── UnsupportedType         unsupported_type   not a PDF, PNG, JPEG, TIFF or UTF-8 text
    ├── EncryptedDocument       encrypted          needs a password to open
    ├── BrokenDocument          broken             truncated, malformed or unrenderable
    ├── TooManyPages            too_many_pages     more pages than ``max_pages``
    ├── TooLarge                too_large          over the byte, pixel or memory budget
    └── RenderTimeout           timeout            over the time budget (wall clock or CPU)

The API and the mail front door translate these into their own answers (a 422 problem, an
SMTP 554 or a status mail); ``code`` is stable, ``reason`` is a sentence for a person.
"""

from __future__ import annotations


class DocumentError(Exception):
    """A document that cannot be faxed; ``code`` is machine-readable, ``reason`` human."""

    code = "document_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class UnsupportedType(DocumentError):
    """The bytes are not a document type the renderer reads."""

    code = "unsupported_type"


class EncryptedDocument(DocumentError):
    """The PDF is encrypted with a password needed to open it."""

    code = "encrypted"


class BrokenDocument(DocumentError):
    """The document is truncated or malformed, or the renderer failed on it."""

    code = "broken"


class TooManyPages(DocumentError):
    """The document has more pages than the caller allows."""

    code = "too_many_pages"


class TooLarge(DocumentError):
    """The document exceeds the byte, pixel or memory budget."""

    code = "too_large"


class RenderTimeout(DocumentError):
    """Converting the document took longer than the time budget."""

    code = "timeout"


ERRORS: dict[str, type[DocumentError]] = {
    cls.code: cls
    for cls in (
        UnsupportedType,
        EncryptedDocument,
        BrokenDocument,
        TooManyPages,
        TooLarge,
        RenderTimeout,
    )
}


def from_code(code: str, reason: str) -> DocumentError:
    """The error for a code reported by the conversion process (unknown codes: broken)."""
    return ERRORS.get(code, BrokenDocument)(reason)
