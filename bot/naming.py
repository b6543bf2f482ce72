"""What a vendor accepts for a typed value that reaches a storage URL (a bucket or
account name becomes a host label or a path segment) or a signed header (the keys).
The rules are data in the catalog: the form's hints show them, the form and the
storage check enforce them, so typed text never chooses where recbot connects."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_KEY_LENGTH = 512


@dataclass(frozen=True)
class NameRule:
    """One vendor's rule for one field. `pattern` must match the whole value (ASCII
    only); `words` says what is valid, for a person."""

    what: str  # "bucket names", "storage account names", ...
    pattern: str
    words: str
    max_length: int = 63
    max_label: int | None = None  # dotted names: each dot-separated part at most this long
    forbidden: tuple[str, ...] = ()  # substrings
    reserved_prefixes: tuple[str, ...] = ()
    reserved_suffixes: tuple[str, ...] = ()
    not_ip: bool = False  # not formatted as an IPv4 address

    def allows(self, value: str) -> bool:
        if len(value) > self.max_length or not re.fullmatch(self.pattern, value, re.ASCII):
            return False
        if any(part in value for part in self.forbidden):
            return False
        if value.startswith(self.reserved_prefixes) or value.endswith(self.reserved_suffixes):
            return False
        if self.max_label is not None and any(len(label) > self.max_label for label in value.split(".")):
            return False
        return not (self.not_ip and re.fullmatch(r"[0-9]+(\.[0-9]+){3}", value))

    def explain(self, vendor_name: str) -> str:
        """What is valid, naming the vendor: the form's hint and every refusal say this, the
        reserved beginnings and endings included (a name they refuse would look valid otherwise)."""
        words = self.words
        if self.reserved_prefixes:
            words += ", not starting with " + _either(self.reserved_prefixes)
        if self.reserved_suffixes:
            words += ", not ending with " + _either(self.reserved_suffixes)
        return f"{vendor_name} {self.what} are {words}."


def _either(parts: tuple[str, ...]) -> str:
    quoted = [f"'{part}'" for part in parts]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def dashed(what: str = "bucket names", *, reserved_prefixes: tuple[str, ...] = ()) -> NameRule:
    """The rule most vendors without '.' in names share: 3-63 of a-z, 0-9 and '-'."""
    words = "3-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
    return NameRule(what, r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", words, reserved_prefixes=reserved_prefixes)


# Keys go into a signed header: printable ASCII without spaces (an access key ID,
# a secret key), so no character can break the request or the signature.
KEY_RULE = NameRule(
    "keys",
    r"[\x21-\x7e]+",
    f"at most {MAX_KEY_LENGTH} printable ASCII characters (no spaces, no accents)",
    max_length=MAX_KEY_LENGTH,
)
