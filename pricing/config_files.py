"""Configuration kept as code (organization, mappings, price books): YAML read
with the line of every entry, so a refusal names the line to fix."""

from typing import Any

import yaml

from .errors import ValidationFailed

__all__ = ["yaml_parse"]


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
