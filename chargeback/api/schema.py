"""The schema's one error shape: every operation answers its errors as `Error`.

`chargeback/api/exceptions.py` renders every API error as {code, message, extra}; this
hook says so in the schema, as each operation's `default` response, so a client (and
schemathesis's response check) holds any status the operation does not list to it.
"""

__all__ = ["ERROR_SCHEMA", "error_responses"]

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every API error: a stable code, a message naming what to fix, and details.",
    "properties": {
        "code": {"type": "string", "description": "Stable, e.g. invalid_period, validation_failed, not_found"},
        "message": {"type": "string"},
        "extra": {
            "type": "object",
            "additionalProperties": True,
            "description": "Details; a refused request body lists its fields' errors under `fields`",
        },
    },
    "required": ["code", "message", "extra"],
}


def error_responses(result: dict, generator, request, public: bool) -> dict:
    """A drf-spectacular postprocessing hook: the `Error` component, and each operation's
    `default` response pointing at it."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "default",
                {"description": "An error, in the one shape", "content": {"application/json": {"schema": reference}}},
            )
    return result
