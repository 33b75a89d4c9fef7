"""A minimal XML tree that remembers each element's line, for error messages that point at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from onnxcam.eval.datasets.errors import AnnotationError


@dataclass
class Element:
    """An XML element: tag, the line its start tag is on (1-based), children, stripped text."""

    tag: str
    line: int
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def find_all(self, tag: str) -> list[Element]:
        """Return the direct children named ``tag``."""
        return [child for child in self.children if child.tag == tag]

    def find(self, tag: str) -> Element | None:
        """Return the first direct child named ``tag``, or ``None``."""
        return next((child for child in self.children if child.tag == tag), None)


def parse_xml(path: str | Path) -> Element:
    """Parse an XML file into :class:`Element` nodes; syntax errors raise AnnotationError with the line."""
    path = Path(path)
    parser = expat.ParserCreate()
    stack: list[Element] = []
    roots: list[Element] = []

    def start(tag: str, _attributes: dict[str, str]) -> None:
        element = Element(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(_tag: str) -> None:
        element = stack.pop()
        element.text = element.text.strip()

    def characters(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    with open(path, "rb") as handle:
        try:
            parser.ParseFile(handle)
        except expat.ExpatError as error:
            raise AnnotationError(path, error.lineno, f"malformed XML: {expat.errors.messages[error.code]}") from None
    return roots[0]


def child(path: Path, element: Element, tag: str) -> Element:
    """Return ``element``'s required child ``tag``; raise AnnotationError at ``element``'s line if absent."""
    found = element.find(tag)
    if found is None:
        raise AnnotationError(path, element.line, f"<{element.tag}> has no <{tag}>")
    return found


def integer(path: Path, element: Element) -> int:
    """Return ``element``'s text as an integer (``"12"`` or ``"12.0"``), or raise AnnotationError."""
    try:
        value = float(element.text)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise AnnotationError(path, element.line, f"<{element.tag}> must hold an integer, got {element.text!r}")
    return int(value)
