"""Text from a model, a seed file, a store or a user, put into Markdown so that it shows as the text it is.

Streamlit renders Markdown in st.markdown, st.caption, st.info and the other alerts, and in the labels of
buttons, expanders, checkboxes, radio options, tabs and metrics (GitHub-flavoured, plus its own `:color[...]`
directives, `:material_x:` icons and `$...$` maths). An evolved instruction `![x](https://example.org/p.png)`
there makes the browser fetch from outside, and `[click](https://evil.example)` is a link that misleads. The
dataset card is Markdown a user opens elsewhere (a Hub page, GitHub). `plain` makes any text literal in all of
them; `code` puts a text in an inline code span that it cannot end early.
"""
from __future__ import annotations

import re
import string

# CommonMark: any ASCII punctuation character may be backslash-escaped, and an escaped one is a literal
# character that starts no construct (emphasis, link, image, HTML, entity, heading, list, table, autolink,
# GFM's www. and https:// literals, Streamlit's directives and $ maths all begin with one). "-", "+" and "=" start
# something (a list, a rule, a heading's underline) only at the start of a line: elsewhere they stay as they are, so
# "gpt-4o-mini" reads as itself in the Markdown source too.
_PUNCTUATION = frozenset(string.punctuation)
_LINE_START_ONLY = frozenset("-+=")
# Streamlit turns these in text nodes (after escapes are resolved) into an icon and a logo, and GFM's literal
# autolinks (https://..., www...., name@host) into links the same way; a word joiner (invisible, not a space) after
# the colon, between "www" and ".", and after "@" keeps them as text.
_TEXT_NODE_SHORTCODES = re.compile(r":(?=material_\w+:|streamlit:|//)|(?<=www)(?=\.)|(?<=@)", re.I)
# Four spaces or a tab at the start of a line make a code block, which would show the escapes; Markdown shows
# no leading whitespace of a line anyway.
_LINE_INDENT = re.compile(r"^[ \t]+", re.M)
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """`text` as Markdown that renders as exactly its characters (None: "")."""
    if text is None:
        return ""
    s = str(text).replace("\r\n", "\n").replace("\r", "\n")  # Markdown's line endings, as one
    s = _LINE_INDENT.sub("", _TEXT_NODE_SHORTCODES.sub(lambda m: m.group() + WORD_JOINER, s))
    return "".join("\\" + c if c in _PUNCTUATION and (c not in _LINE_START_ONLY or i == 0 or s[i - 1] == "\n")
                   else c for i, c in enumerate(s))


def code(text: object) -> str:
    """`text` as an inline code span (Markdown renders nothing inside one), fenced with more backticks than
    the longest run in it; line breaks become spaces, as a code span shows them anyway."""
    s = " ".join(str("" if text is None else text).splitlines())
    if not s:
        return ""
    runs = [len(m) for m in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or (s.startswith(" ") and s.endswith(" ") and s.strip()) \
        else ""
    return f"{fence}{pad}{s}{pad}{fence}"
