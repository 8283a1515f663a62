"""Literal AI's GraphQL API (`POST /api/graphql`, `x-api-key`): the mutation is parsed with
graphql-core and each `ingestStep` field's arguments are read from the variables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from graphql import FieldNode, OperationDefinitionNode, VariableNode, parse

from support.receivers.http_api import Invalid, VendorReceiver, loads


@dataclass
class LiteralaiReceiver(VendorReceiver):
    key_header = "x-api-key"
    route = "/api/graphql"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        doc = loads(body)
        variables = doc.get("variables") or {}
        (op,) = parse(doc["query"]).definitions
        if not isinstance(op, OperationDefinitionNode) or op.operation.value != "mutation":
            raise Invalid("not a mutation")
        declared = {v.variable.name.value for v in op.variable_definitions}
        steps = []
        for sel in op.selection_set.selections:
            if not isinstance(sel, FieldNode) or sel.name.value != "ingestStep":
                raise Invalid("only ingestStep is accepted")
            step: dict[str, Any] = {}
            for arg in sel.arguments:
                if not isinstance(arg.value, VariableNode):
                    raise Invalid("arguments must be variables")
                name = arg.value.name.value
                if name not in declared:
                    raise Invalid(f"${name} is not declared")
                if name in variables:
                    step[arg.name.value] = variables[name]
            if "id" not in step or step.get("type") not in ("llm", "run", "tool", None):
                raise Invalid(f"step {json.dumps(step)[:100]}")
            steps.append({**step, "_alias": sel.alias.value if sel.alias else None})
        return steps

    def answer(self, records: list[dict[str, Any]]) -> Any:
        return {"data": {r["_alias"]: {"ok": True, "message": None} for r in records}}
