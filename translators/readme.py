"""`make readme`: put the coverage table generated from the code into README.md (between its markers)."""

from __future__ import annotations

from pathlib import Path

from translators.coverage import as_markdown

START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def with_coverage(text: str) -> str:
    """`text` with the coverage block replaced by the table the code declares now."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{as_markdown()}{END}{tail}"


if __name__ == "__main__":
    README.write_text(with_coverage(README.read_text()))
