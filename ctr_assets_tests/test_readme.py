"""The README's Try it is what CI follows: `.ci/readme` reads its commands and examples from the README, and
`.ci/run` runs the README's test command through it. (CI runs `.ci/readme` itself, in a fresh clone.)"""

import re
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
README = (REPOSITORY / "README.md").read_text()
readme_script = SourceFileLoader("ci_readme", str(REPOSITORY / ".ci" / "readme")).load_module()


def test_ci_runs_exactly_the_test_command_the_readme_gives():
    printed = subprocess.run([sys.executable, str(REPOSITORY / ".ci" / "readme"), "--test-command"],
                             capture_output=True, text=True, check=True).stdout.strip()
    section = README.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    assert printed == re.findall(r"```bash\n(.*?)\n```", section, re.S)[1]
    run = (REPOSITORY / ".ci" / "run").read_text()
    assert 'bash -euo pipefail -c "$test_command"' in run and "\npython3 .ci/readme\n" in run


def test_every_then_look_at_example_is_one_the_script_checks():
    (demo, _), items = readme_script.try_it(README)
    assert demo.endswith(".venv/bin/ctr-assets simulate && .venv/bin/ctr-assets run")
    examples = [readme_script.checks(item) for item in items]
    assert len(examples) >= 4
    assert [address for _, _, address in examples if address] == ["http://127.0.0.1:3000"]
    assert all(paths or commands for paths, commands, _ in examples)
