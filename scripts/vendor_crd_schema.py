"""Vendor a custom resource's schema for `deploy/validate.py`, strict as Kubernetes' own kinds.

A CustomResourceDefinition's openAPIV3Schema lets unknown fields through (the API server prunes
them), so a typo would pass. Written here: the same schema with `additionalProperties: false` on
every object that lists its properties (unless it keeps unknown fields on purpose), the
resource's apiVersion and kind pinned, and Kubernetes' ObjectMeta for `metadata`.

    python scripts/vendor_crd_schema.py CRD.yaml VERSION deploy/schemas/OUT.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

# The ObjectMeta fields a manifest sets (the rest are the API server's to write).
OBJECT_META: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 253},
        "namespace": {"type": "string"},
        "generateName": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


def strict(node: Any) -> Any:
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items() if key != "description"}
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
    parser.add_argument("version")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    crd = yaml.safe_load(args.crd.read_text(encoding="utf-8"))
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    (served,) = (v for v in crd["spec"]["versions"] if v["name"] == args.version)
    schema = strict(served["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)  # the controller's to write, never a manifest's
    schema["properties"]["apiVersion"] = {"const": f"{group}/{args.version}"}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = OBJECT_META
    schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["title"] = f"{kind} ({group}/{args.version}), strict"
    text = json.dumps(schema, separators=(",", ":"), sort_keys=True)
    args.output.write_text(text + "\n", encoding="utf-8")
    print(f"{args.output}: {len(text) // 1024} KiB")


if __name__ == "__main__":
    main()
