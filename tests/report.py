"""Generated tables in docs/: each writer replaces only its own section of a shared file."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, section: str, body: str) -> None:
    """Put ``body`` between ``<!-- begin section -->`` and ``<!-- end section -->`` in ``path``
    (appended, with the markers, when the section is not there yet)."""
    begin, end = f"<!-- begin {section} -->", f"<!-- end {section} -->"
    text = path.read_text(encoding="utf-8")
    block = f"{begin}\n{body}{end}"
    if begin in text:
        head, _, rest = text.partition(begin)
        text = head + block + rest.partition(end)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
