"""The original Lambda's flattening, ported to Python 3 and to local files: the benchmark's baseline.

It comes from the AWS blog post "Analyzing Amazon Connect usage with Athena" (the CTR flattening Lambda).
The algorithm is kept exactly as it was; the only changes are what Python 3 requires (`list(obj.keys())`,
because the loop renames keys of the dict it iterates) and reading/writing local files instead of S3.
It splits by text replacement, so it silently alters values containing `}{` and cannot read objects with
a newline between records; the benchmark's sample data has no such newlines. Objects Firehose delivered
gzip-compressed are decompressed first, as the Lambda would have to for a stream with GZIP compression.
"""

import gzip
import json
import re
import urllib.parse
from pathlib import Path


def convertColumntoLowwerCaps(obj):
    for key in list(obj.keys()):
        new_key = re.sub(r'[\W]+', '', key.lower())
        v = obj[key]
        if isinstance(v, dict):
            if len(v) > 0:
                convertColumntoLowwerCaps(v)
        if new_key != key:
            obj[new_key] = obj[key]
            del obj[key]
    return obj


def flatten_file(root: Path, raw_key: str) -> int:
    """What the handler did for one S3 event record; returns the number of records written."""
    key = urllib.parse.unquote_plus(raw_key, encoding='utf-8')
    newKey = 'flatfiles/' + key.replace("/", "")
    data = (root / key).read_bytes()
    data = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode('utf-8')
    records = 0
    target = root / newKey
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") as out:
        for record in json.loads('[' + data.replace('}{', '},{') + ']', object_hook=convertColumntoLowwerCaps):
            out.write(json.dumps(record) + "\n")
            records += 1
    return records
