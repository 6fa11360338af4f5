"""The contract's JSON Schemas (draft 2020-12), loaded into a registry by their $id: no network, ever."""
import json
import os
import pathlib

import jsonschema
import referencing

_PACKAGED = pathlib.Path(__file__).resolve().parent / "schemas"
_REPOSITORY = pathlib.Path(__file__).resolve().parents[4] / "schemas"  # an editable install inside the repository
ENVELOPE_ID = "https://schemas.progress-bridge.dev/v1/envelope.schema.json"
COMMAND_ID = "https://schemas.progress-bridge.dev/v1/commands/command.schema.json"


class InvalidEvent(ValueError):
    """A document the contract refuses; `errors` lists (JSON Pointer, message) pairs."""

    def __init__(self, errors):
        self.errors = errors
        super().__init__("; ".join(f"{path or '/'}: {message}" for path, message in errors[:5]))


class Contract:
    """Validators of the contract's event envelope and command records.

    `schemas_dir`: the contract's schemas/ directory; default: $PROGRESS_BRIDGE_SCHEMAS, else the copy inside the
    package, else the repository's (an editable install)."""

    def __init__(self, schemas_dir=None):
        directory = pathlib.Path(schemas_dir or os.environ.get("PROGRESS_BRIDGE_SCHEMAS") or (_PACKAGED if _PACKAGED.is_dir() else _REPOSITORY))
        documents = [json.loads(path.read_text()) for path in sorted(directory.rglob("*.schema.json"))]
        if not documents:
            raise FileNotFoundError(f"no *.schema.json in {directory}")
        self.directory = directory
        self.registry = referencing.Registry().with_resources(
            (document["$id"], referencing.Resource.from_contents(document)) for document in documents if "$id" in document)
        self._envelope = self._validator(ENVELOPE_ID)
        self._command = self._validator(COMMAND_ID)

    def _validator(self, schema_id):
        return jsonschema.Draft202012Validator(self.registry.contents(schema_id), registry=self.registry)

    @staticmethod
    def _errors(validator, document):
        return [("/" + "/".join(map(str, error.absolute_path)) if error.absolute_path else "", error.message)
                for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))]

    def check_event(self, event):
        """Raises InvalidEvent unless `event` is a valid progress event (envelope and its type's data)."""
        errors = self._errors(self._envelope, event)
        if errors:
            raise InvalidEvent(errors)

    def check_command(self, command):
        """Raises InvalidEvent unless `command` is a valid command record."""
        errors = self._errors(self._command, command)
        if errors:
            raise InvalidEvent(errors)
