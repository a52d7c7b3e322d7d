"""The S3, SQS, Glue and Kinesis API the tests talk to: moto's server, in a process of its own.

Not in the test process: the pipeline forks its flatten workers, and a fork copies the locks that the
server's threads hold at that moment (botocore's, moto's) without the threads that would release them.

Two additions to moto: Glue's UpdateTable refuses a VersionId that is not the table's current version,
as the real Glue does (that is what makes an Iceberg commit in Glue atomic), and `POST /ctr-seed/<bucket>`
stores empty objects in bulk (one per line of the body), because a listing test needs 100,000 of them and
each PUT over HTTP costs about 10 ms. Every request line is logged to the file named on the command line.

    python -m ctr_assets_tests.moto_server PORT LOG_FILE
"""

from __future__ import annotations

import gc
import logging
import sys
import threading

from moto.core import DEFAULT_ACCOUNT_ID
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


def with_seeding(app):
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
        return app(environ, start_response)

    return application


def main(port: int, log_file: str) -> None:
    enforce_glue_table_versions()
    handler = logging.FileHandler(log_file)
    logging.getLogger("werkzeug").addHandler(handler)
    logging.getLogger("werkzeug").setLevel(logging.INFO)
    app = with_seeding(DomainDispatcherApplication(create_backend_app))
    run_simple("127.0.0.1", port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
