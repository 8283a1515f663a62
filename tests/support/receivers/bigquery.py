"""A BigQuery receiver: `tables.get` (404 until created), `tables.insert` (schema kept) and
`tabledata.insertAll` validated as Google documents it: `{"kind":
"bigquery#tableDataInsertAllRequest", "rows": [{"insertId", "json": {...}}]}`, every
column known to the table's schema and REQUIRED ones present (else `insertErrors` for that
row, as BigQuery answers with `ignoreUnknownValues: false`); rows de-duplicated on
`insertId`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath

from support.receivers import _Receiver

PATH = "/bigquery/v2/projects/{project:str}/datasets/{dataset:str}/tables"


@dataclass
class BigqueryReceiver(_Receiver):
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)

    def of(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.rows.get(table, {}).values())

    def app(self) -> Litestar:
        rec = self

        @get(f"{PATH}/{{table:str}}")
        async def table_get(
            project: FromPath[str], dataset: FromPath[str], table: FromPath[str]
        ) -> Response[Any]:
            found = rec.tables.get(f"{project}.{dataset}.{table}")
            if found is None:
                return Response({"error": {"code": 404, "message": "Not found"}}, status_code=404)
            return Response(found)

        @post(PATH, status_code=200)
        async def table_insert(
            project: FromPath[str], dataset: FromPath[str], request: Request[Any, Any, Any]
        ) -> Response[Any]:
            doc = json.loads(await request.body())
            ref = doc["tableReference"]
            if (ref["projectId"], ref["datasetId"]) != (project, dataset):
                return Response({"error": {"code": 400}}, status_code=400)
            fields = doc["schema"]["fields"]
            if not fields or not all({"name", "type"} <= set(f) for f in fields):
                return Response({"error": {"code": 400, "message": "bad schema"}}, status_code=400)
            rec.tables[f"{project}.{dataset}.{ref['tableId']}"] = doc
            return Response(doc)

        @post(f"{PATH}/{{table:str}}/insertAll", status_code=200)
        async def insert_all(
            project: FromPath[str],
            dataset: FromPath[str],
            table: FromPath[str],
            request: Request[Any, Any, Any],
        ) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            name = f"{project}.{dataset}.{table}"
            resource = rec.tables.get(name)
            if resource is None:
                return Response({"error": {"code": 404}}, status_code=404)
            doc = json.loads(body)
            if doc.get("kind") != "bigquery#tableDataInsertAllRequest" or not doc.get("rows"):
                rec.invalid.append("not a tableDataInsertAllRequest")
                return Response({"error": {"code": 400}}, status_code=400)
            schema = {f["name"]: f for f in resource["schema"]["fields"]}
            required = {n for n, f in schema.items() if f.get("mode") == "REQUIRED"}
            errors = []
            for index, row in enumerate(doc["rows"]):
                values = row["json"]
                unknown = set(values) - set(schema)
                missing = {n for n in required if values.get(n) in (None, "")}
                if unknown or missing or not row.get("insertId"):
                    why = f"unknown {sorted(unknown)} missing {sorted(missing)}"
                    errors.append(
                        {"index": index, "errors": [{"reason": "invalid", "message": why}]}
                    )
                    continue
                with rec._lock:
                    rec.rows.setdefault(name, {}).setdefault(row["insertId"], values)
            answer: dict[str, Any] = {"kind": "bigquery#tableDataInsertAllResponse"}
            if errors:
                answer["insertErrors"] = errors
            return Response(answer)

        return Litestar([table_get, table_insert, insert_all])
