#!/usr/bin/env python3
"""A custom resource's JSON Schema from its CustomResourceDefinition, for offline validation.

    python scripts/vendor_crd_schema.py keda.sh_scaledobjects.yaml deploy/schemas/ --source "kedacore/keda@<commit>"

kubernetes-validate bundles the core API's schemas only. A CRD carries each version's
``openAPIV3Schema``; this writes it as ``<group>_<version>_<kind>.json`` with apiVersion and kind
pinned, and, as the API server prunes unknown fields of a structural schema, unknown fields
refused (``additionalProperties: false``) wherever the CRD does not preserve them, so a misspelt
field fails validation here instead of vanishing in the cluster.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml


def strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crd", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--source", required=True, help="where the CRD came from (kept in $comment)"
    )
    args = parser.parse_args()
    crd = yaml.safe_load(args.crd.read_text())
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for version in crd["spec"]["versions"]:
        schema = strict(version["schema"]["openAPIV3Schema"])
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
        properties["kind"] = {"type": "string", "enum": [kind]}
        properties["metadata"] = {"type": "object"}
        schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
        document = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$comment": f"{crd['metadata']['name']} {version['name']} from {args.source}, "
            "by scripts/vendor_crd_schema.py",
            **schema,
        }
        path = args.out / f"{group}_{version['name']}_{kind.lower()}.json"
        path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        print(path)


if __name__ == "__main__":
    main()
