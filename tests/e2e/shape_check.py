"""Checks decoded JSON against a botocore shape, and the protocol-level error codes: what
the e2e tests' `ModelValidator` and the fuzzer's `ModelCheck` (which runs without pytest,
from tools/fuzz_api.py too) share."""

from __future__ import annotations

# Error codes that come from the protocol layer, not from an operation's model: any
# operation may answer them.
PROTOCOL_ERRORS = {
    "SerializationException",
    "UnknownOperationException",
    "InvalidParameterException",
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "UnsupportedFeatureException",
    "RequestEntityTooLargeException",
}


def shape_errors(shape, value, path: str, errors: list) -> None:
    """Appends to `errors` how `value` (decoded JSON) breaks botocore's `shape` at `path`."""
    t = shape.type_name
    if value is None:
        errors.append(f"{path}: null (members without a value must be left out)")
    elif t == "structure":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object ({shape.name}), got {type(value).__name__}")
            return
        for k, v in value.items():
            if k not in shape.members:
                errors.append(f"{path}.{k}: not a member of {shape.name}")
            else:
                shape_errors(shape.members[k], v, f"{path}.{k}", errors)
    elif t == "list":
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list ({shape.name}), got {type(value).__name__}")
            return
        for i, v in enumerate(value):
            shape_errors(shape.member, v, f"{path}[{i}]", errors)
    elif t == "map":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a map ({shape.name}), got {type(value).__name__}")
            return
        for k, v in value.items():
            shape_errors(shape.key, k, f"{path}<key>", errors)
            shape_errors(shape.value, v, f"{path}[{k!r}]", errors)
    elif t == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
        elif shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of {shape.name}'s values {shape.enum}")
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected an integer, got {value!r}")
    elif t in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected a number, got {value!r}")
    elif t == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean, got {value!r}")
    elif t == "timestamp":
        # awsJson1_1 timestamps are epoch seconds (numbers), as AWS sends them.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected epoch seconds (a number), got {value!r}")
    elif t == "blob":
        if not isinstance(value, str):
            errors.append(f"{path}: expected base64 text, got {value!r}")
    else:
        errors.append(f"{path}: shape type {t} is not handled by the validator")
