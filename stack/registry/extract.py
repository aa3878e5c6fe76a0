"""Writes create-only.json: for each resource type the stack uses, the properties whose change
makes CloudFormation replace the resource (the registry schemas' createOnlyProperties, as
bundled offline by cfn-lint from the project's venv).

Run: target/venv/bin/python stack/registry/extract.py > stack/registry/create-only.json
(tests/tests/registry checks the committed file matches the venv's cfn-lint.)
"""
import json
import re
import sys
from pathlib import Path

from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

source = Path(__file__).resolve().parents[1] / "src" / "template.rs"
types = sorted(set(re.findall(r'=> "(AWS::[A-Za-z0-9:]+)"', source.read_text())))
out = {}
for kind in types:
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", kind).schema
    paths = schema.get("createOnlyProperties", [])
    # "/properties/BucketName" -> "BucketName"; nested paths keep their top-level property.
    out[kind] = sorted({p.split("/")[2] for p in paths if p.startswith("/properties/")})
json.dump(out, sys.stdout, indent=2, sort_keys=True)
sys.stdout.write("\n")
