"""The S3, SQS, Glue, Kinesis and Athena API the tests talk to: moto's server, in a process of its own.

Not in the test process: the pipeline forks its flatten workers, and a fork copies the locks that the
server's threads hold at that moment (botocore's, moto's) without the threads that would release them.

Three additions to moto: Glue's UpdateTable refuses a VersionId that is not the table's current version,
as the real Glue does (that is what makes an Iceberg commit in Glue atomic); `POST /ctr-seed/<bucket>`
stores empty objects in bulk (one per line of the body), because a listing test needs 100,000 of them and
each PUT over HTTP costs about 10 ms; and `POST /ctr-athena-outcomes` (a JSON list) scripts how the next
Athena queries end, since moto runs no SQL and every query would succeed having scanned nothing: each
query started takes the next outcome (`state`, `reason`, `data_scanned`) in the place of moto's SUCCEEDED.
Every request line is logged to the file named on the command line.

    python -m ctr_assets_tests.moto_server PORT LOG_FILE
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import threading

from moto.core import DEFAULT_ACCOUNT_ID
from moto.athena.models import AthenaBackend
from moto.athena.responses import AthenaResponse
from moto.core.exceptions import JsonRESTError
from moto.glue.responses import GlueResponse
from moto.s3.models import s3_backends
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple
from werkzeug.wrappers import Request, Response


def enforce_glue_table_versions() -> None:
    plain = GlueResponse.update_table
    guard = threading.Lock()

    def update_table(self):
        expected = self.parameters.get("VersionId")
        with guard:
            table = self.glue_backend.get_table(self.parameters.get("DatabaseName"), self.parameters["TableInput"]["Name"])
            if expected is not None and str(expected) != str(table._current_version):
                raise JsonRESTError("ConcurrentModificationException",
                                    f"Update table failed: version {expected} is not the current version")
            return plain(self)

    GlueResponse.update_table = update_table


ATHENA_OUTCOMES: list[dict] = []  # how the next queries end, in the order they start
ATHENA_ASSIGNED: dict[str, dict] = {}  # query id -> its outcome
ATHENA_LOCK = threading.Lock()


def script_athena_outcomes() -> None:
    start, describe = AthenaBackend.start_query_execution, AthenaResponse.get_query_execution

    def start_query_execution(self, *args, **kwargs) -> str:
        query_id = start(self, *args, **kwargs)
        with ATHENA_LOCK:
            if ATHENA_OUTCOMES:
                ATHENA_ASSIGNED[query_id] = ATHENA_OUTCOMES.pop(0)
        return query_id

    def get_query_execution(self) -> str:
        answer = json.loads(describe(self))
        execution = answer["QueryExecution"]
        outcome = ATHENA_ASSIGNED.get(execution["QueryExecutionId"])
        if outcome and execution["Status"]["State"] == "SUCCEEDED":
            execution["Status"]["State"] = outcome.get("state", "SUCCEEDED")
            if "reason" in outcome:
                execution["Status"]["StateChangeReason"] = outcome["reason"]
                execution["Status"]["AthenaError"] = {"ErrorCategory": 2, "ErrorMessage": outcome["reason"]}
            execution["Statistics"]["DataScannedInBytes"] = outcome.get("data_scanned", 0)
        return json.dumps(answer)

    AthenaBackend.start_query_execution = start_query_execution
    AthenaResponse.get_query_execution = get_query_execution


def with_test_endpoints(app):
    def application(environ, start_response):
        if environ["PATH_INFO"].startswith("/ctr-seed/"):
            bucket = environ["PATH_INFO"].removeprefix("/ctr-seed/")
            backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
            keys = Request(environ).get_data().decode().splitlines()
            gc.disable()  # a 100,000-object loop otherwise spends half its time in the collector
            try:
                for key in keys:
                    backend.put_object(bucket, key, b"")
            finally:
                gc.enable()
            return Response(str(len(keys)))(environ, start_response)
        if environ["PATH_INFO"] == "/ctr-athena-outcomes":
            with ATHENA_LOCK:
                ATHENA_OUTCOMES[:] = json.loads(Request(environ).get_data())
            return Response(str(len(ATHENA_OUTCOMES)))(environ, start_response)
        return app(environ, start_response)

    return application


def main(port: int, log_file: str) -> None:
    enforce_glue_table_versions()
    script_athena_outcomes()
    handler = logging.FileHandler(log_file)
    logging.getLogger("werkzeug").addHandler(handler)
    logging.getLogger("werkzeug").setLevel(logging.INFO)
    app = with_test_endpoints(DomainDispatcherApplication(create_backend_app))
    run_simple("127.0.0.1", port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
