"""Without the compiled scanner (an install where no C compiler was, or `CTR_ASSETS_PURE_PYTHON=1`), records
are split and normalized record by record and the merge picks its shape lines in Python: the tests of that
code hold as they do with it. They run in a fresh process, since the choice is made at import."""

import os
import subprocess
import sys
from pathlib import Path

PURE = {**os.environ, "CTR_ASSETS_PURE_PYTHON": "1"}
# The tests of what changes without the scanner: bulk.py, the flatten step and the damaged-record class on
# top of it, and the merge (test_adversarial merges flatfiles; test_shapes runs both sides in-process).
FILES = ["test_bulk.py", "test_flatten.py", "test_damage.py", "test_adversarial.py"]


def test_asking_for_pure_python_gets_it():
    result = subprocess.run(
        [sys.executable, "-c", "from ctr_assets.records import _keyscan, bulk; print(*map(str, ("
         "_keyscan.__file__, _keyscan.scan, bulk.scan, _keyscan.first_of_each_shape.__name__)), sep='|')"],
        env=PURE, capture_output=True, text=True, check=True,
    )
    module, scan, bulk_scan, shapes = result.stdout.strip().split("|")
    # An extension built before the scanner became optional was named `_keyscan` and would hide this module.
    assert module.endswith("_keyscan.py"), f"{module}: delete this stale build of the old extension"
    assert (scan, bulk_scan, shapes) == ("None", "None", "first_of_each_shape_python")


def test_the_record_tests_pass_without_the_compiled_scanner():
    tests = Path(__file__).parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(tests / name) for name in FILES)],
        env=PURE, cwd=tests.parent, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
