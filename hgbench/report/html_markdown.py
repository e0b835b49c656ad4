"""The Markdown that hgbench's reports write, rendered to HTML: headings, paragraphs, nested
lists, pipe tables, raw HTML lines (`<details>`), and inline code, bold, links and images.

Only this subset: report.md is written by hgbench.report, never by hand, so a full Markdown
engine (and a dependency) would buy nothing. Rendering the text the Markdown report already holds
is what keeps report.html's numbers those of report.md: one computation, two renderings.
Images go through `image(alt, src)`, which the HTML writer uses to put an interactive figure, or
the PNG itself, where report.md has a picture.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field

ImageHook = Callable[[str, str], str]  # (alt, src) -> HTML

_CODE = re.compile(r"`([^`]*)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?![\s*])([^*]+?)(?<!\s)\*(?![\w*])")
_TABLE_RULE = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_ITEM = re.compile(r"^(\s*)[-*]\s+(.*)$")


def slug(text: str, used: set[str]) -> str:
    """A unique anchor id for a heading: `Run: digits_mlp` -> `run-digits_mlp`."""
    base = re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-") or "section"
    name, k = base, 2
    while name in used:
        name, k = f"{base}-{k}", k + 1
    used.add(name)
    return name


def _plain_image(alt: str, src: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{html.escape(src)}">'


def inline(text: str, image: ImageHook = _plain_image) -> str:
    """Inline Markdown to HTML; code spans are escaped and protected from the other rules."""
    spans: list[str] = []

    def keep(fragment: str) -> str:
        spans.append(fragment)
        return f"\0{len(spans) - 1}\0"

    text = _CODE.sub(lambda m: keep(f"<code>{html.escape(m.group(1))}</code>"), text)
    text = _IMAGE.sub(lambda m: keep(image(m.group(1), m.group(2))), text)
    text = _LINK.sub(
        lambda m: keep(f'<a href="{html.escape(m.group(2))}">{inline(m.group(1))}</a>'), text
    )
    text = html.escape(text, quote=False)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _ITALIC.sub(r"<em>\1</em>", text)
    return re.sub(r"\0(\d+)\0", lambda m: spans[int(m.group(1))], text)


def _cells(line: str) -> list[str]:
    """A pipe-table row's cells; `\\|` is a literal bar inside a cell."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def table_html(lines: list[str], image: ImageHook = _plain_image, cls: str = "") -> str:
    header, rule, body = _cells(lines[0]), _cells(lines[1]), [_cells(ln) for ln in lines[2:]]
    right = [r.endswith(":") for r in rule]

    def cell(tag: str, text: str, i: int) -> str:
        align = ' class="num"' if i < len(right) and right[i] else ""
        return f"<{tag}{align}>{inline(text, image)}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(header))
    rows = "\n".join(
        "<tr>" + "".join(cell("td", c, i) for i, c in enumerate(r)) + "</tr>" for r in body
    )
    attr = f' class="{cls}"' if cls else ""
    return (
        f'<div class="table-wrap"><table{attr}><thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{rows}\n</tbody></table></div>"
    )


@dataclass
class _Item:
    text: str
    children: list[_Item] = field(default_factory=list)


def _list_html(lines: list[str], image: ImageHook) -> str:
    """Nested `- ` items (indentation nests; continuation lines join the item above)."""
    root: list[_Item] = []
    stack: list[tuple[int, list[_Item]]] = []  # (indent, the list items of that indent go in)
    last: _Item | None = None
    for line in lines:
        m = _ITEM.match(line)
        if m is None:  # a wrapped line of the item above
            if last is not None:
                last.text += " " + line.strip()
            continue
        depth = len(m.group(1).expandtabs(4))
        if not stack:
            stack.append((depth, root))
        elif depth > stack[-1][0] and last is not None:
            stack.append((depth, last.children))
        else:
            while len(stack) > 1 and depth < stack[-1][0]:
                stack.pop()
        last = _Item(m.group(2))
        stack[-1][1].append(last)

    def render(items: list[_Item]) -> str:
        inner = "".join(
            f"<li>{inline(i.text, image)}{render(i.children) if i.children else ''}</li>"
            for i in items
        )
        return f"<ul>{inner}</ul>"

    return render(root)


def _blocks(text: str) -> list[tuple[str, list[str]]]:
    """(kind, lines) blocks: heading, table, list, html, para; blank lines separate them."""
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        stripped = line.strip()
        kind = (
            "blank"
            if not stripped
            else "heading"
            if _HEADING.match(stripped) and not line.startswith(" ")
            else "table"
            if stripped.startswith("|")
            else "html"
            if stripped.startswith("<")
            else "list"
            if _ITEM.match(line)
            else "text"
        )
        prev = blocks[-1][0] if blocks else "blank"
        if kind == "blank":
            blocks.append(("blank", []))
        elif kind in ("heading", "html"):
            blocks.append((kind, [line]))
        elif kind == "text" and prev == "list":  # a wrapped list item
            blocks[-1][1].append(line)
        elif kind == "text":
            blocks[-1][1].append(line) if prev == "para" else blocks.append(("para", [line]))
        elif kind == prev:
            blocks[-1][1].append(line)
        else:
            blocks.append((kind, [line]))
    return [(k, ls) for k, ls in blocks if k != "blank"]


@dataclass
class Rendered:
    body: str
    headings: list[tuple[int, str, str]]  # (level, id, text) for a table of contents


def render(text: str, image: ImageHook = _plain_image) -> Rendered:
    """The report's Markdown as HTML, and its headings (for the table of contents)."""
    used: set[str] = set()
    out, headings = [], []
    for kind, lines in _blocks(text):
        if kind == "heading":
            m = _HEADING.match(lines[0].strip())
            assert m is not None
            level, title = len(m.group(1)), m.group(2).strip()
            anchor = slug(title, used)
            headings.append((level, anchor, title))
            out.append(f'<h{level} id="{anchor}">{inline(title, image)}</h{level}>')
        elif kind == "table" and len(lines) >= 2 and _TABLE_RULE.match(lines[1].strip()):
            out.append(table_html(lines, image, "sortable"))
        elif kind == "list":
            out.append(_list_html(lines, image))
        elif kind == "html":
            out.append(lines[0])
        elif len(lines) == 1 and _IMAGE.fullmatch(lines[0].strip()):
            out.append(inline(lines[0].strip(), image))  # a figure: a block of its own
        else:
            out.append("<p>" + "<br>\n".join(inline(ln.strip(), image) for ln in lines) + "</p>")
    return Rendered("\n".join(out), headings)
