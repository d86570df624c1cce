"""Configuration kept as code (organization, mappings, price books, activity counts):
YAML read with the line of every entry, and the one collector of a file's errors, so
that a refusal names the file, the line, the entry and the field to fix.
"""

from collections.abc import Mapping
from typing import Any

import yaml

from .errors import ValidationFailed

__all__ = ["ConfigErrors", "yaml_parse"]


class _TextDatesLoader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text, so a bad date is reported, not a crash."""


_TextDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _node_lines(root: yaml.Node | None) -> dict[tuple, int]:
    """(section, index, field) -> 1-based line of each entry and field in the file."""
    lines: dict[tuple, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key_node, value_node in root.value:
        section = key_node.value
        lines[(section, None, None)] = key_node.start_mark.line + 1
        if not isinstance(value_node, yaml.SequenceNode):
            continue
        for index, item in enumerate(value_node.value):
            lines[(section, index, None)] = item.start_mark.line + 1
            if isinstance(item, yaml.MappingNode):
                for field_key, _ in item.value:
                    lines[(section, index, str(field_key.value))] = field_key.start_mark.line + 1
    return lines


def yaml_parse(*, text: str, source: str, error_code: str) -> tuple[Any, dict[tuple, int]]:
    """The document in a YAML text and the line of each entry; a syntax error names its line."""
    loader = _TextDatesLoader(text)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        message = f"{where}: YAML syntax error: {exc.problem or exc.context}"
        if exc.problem and exc.context and exc.context_mark:
            # Where the unclosed construct began is often the line to fix.
            message += f" ({exc.context} on line {exc.context_mark.line + 1})"
        raise ValidationFailed(message, code=error_code, extra={"errors": [message]}) from None
    except yaml.YAMLError as exc:
        message = f"{source}: YAML error: {exc}"
        raise ValidationFailed(message, code=error_code, extra={"errors": [message]}) from None
    finally:
        loader.dispose()
    return document, _node_lines(node)


class ConfigErrors:
    """Every problem of one configuration file, in file order; a file with any is refused
    whole (`refuse_if_any`), all of them listed in the error's `extra["errors"]`.

    A message is placed at a line given outright (a CSV row) or looked up by its
    (section, index, field) key in the lines `yaml_parse` found. An unlocated message
    names the file, unless `name_unlocated` is off (a document built in code has no
    file to name).
    """

    def __init__(
        self, source: str, lines: Mapping[tuple, int] | None = None, *, code: str, name_unlocated: bool = True
    ) -> None:
        self.source = source
        self.lines = lines or {}
        self.code = code
        self.name_unlocated = name_unlocated
        self._found: list[tuple[float, int, str]] = []

    def add(self, message: str, *, at: tuple | None = None, line: int | None = None) -> None:
        """Record `message`; `at` is the (section, index, field) it is about."""
        if line is None and at is not None:
            section, index, field_name = at
            line = self.lines.get((section, index, field_name)) or self.lines.get((section, index, None))
        unlocated = f"{self.source}: " if self.name_unlocated else ""
        prefix = f"{self.source}:{line}: " if line else unlocated
        self._found.append((line or float("inf"), len(self._found), f"{prefix}{message}"))

    @property
    def messages(self) -> list[str]:
        """In file order where lines are known, so a reader can walk down the file."""
        return [message for *_, message in sorted(self._found)]

    def __bool__(self) -> bool:
        return bool(self._found)

    def refuse_if_any(self) -> None:
        """Raise the file's refusal, naming every problem, if there is any."""
        if not self._found:
            return
        messages = self.messages
        count = len(messages)
        raise ValidationFailed(
            f"{self.source}: refused, {count} error{'s' if count != 1 else ''}; nothing was written:\n"
            + "\n".join(messages),
            code=self.code,
            extra={"errors": messages},
        )
