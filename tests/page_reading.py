"""Reading pages as a user does: the text of table cells, the words on the page."""

from html.parser import HTMLParser

__all__ = ["page_text", "table_rows"]


class _TableRows(HTMLParser):
    """Collects the text of each table row's cells, to assert on what is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(response) -> list[list[str]]:
    parser = _TableRows()
    parser.feed(response.content.decode())
    return parser.rows


def page_text(response) -> str:
    """The HTML with runs of whitespace collapsed, as a reader sees the words."""
    return " ".join(response.content.decode().split())
