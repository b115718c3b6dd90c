"""Write docs/index.md, the site's home page, from README.md with its links rewritten for the site.

README.md is the source (it reads on GitHub and on PyPI); the site lives in docs/, so
``docs/X.md`` becomes ``X.md`` and ``CHANGELOG.md`` the page that includes it.
``python scripts/docs_index.py --check`` exits 1 if docs/index.md is not current.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTE = "<!-- Written by scripts/docs_index.py from README.md: edit README.md, then run it. -->\n"


def render(readme: str) -> str:
    """README.md's text as the site's home page."""
    text = re.sub(r"\]\(docs/", "](", readme)
    text = text.replace("](CHANGELOG.md)", "](changelog.md)")
    return NOTE + text


def main(argv: list[str]) -> int:
    index = REPO / "docs" / "index.md"
    want = render((REPO / "README.md").read_text(encoding="utf-8"))
    if "--check" in argv:
        if index.read_text(encoding="utf-8") != want:
            print("docs/index.md is out of date: run python scripts/docs_index.py", file=sys.stderr)
            return 1
        return 0
    index.write_text(want, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
