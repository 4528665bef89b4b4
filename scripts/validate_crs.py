#!/usr/bin/env python3
"""Validates the custom resources of built kustomize overlays against vendored CRDs.

    validate_crs.py CRD_DIR BUILT.yaml...

kubernetes-validate knows the built-in kinds only: for any other kind it prints a
warning and passes. So each BUILT.yaml is split: objects of a group that a CRD in
CRD_DIR defines (the prometheus-operator's PodMonitor and PrometheusRule,
deploy/monitoring/crds) are validated here against that CRD's openAPIV3Schema, as
strictly as kubernetes-validate --strict (a field the schema does not declare is an
error); every other object goes to BUILT.core.yaml, for kubernetes-validate. An
object of an unknown group that looks like a CRD's (a dotted group not built into
Kubernetes) fails rather than passing unchecked.

Run with the deploy venv's python (PyYAML and jsonschema come with
kubernetes-validate).
"""

import copy
import glob
import os
import sys

import jsonschema
import yaml

# API groups built into Kubernetes that contain a dot; kubernetes-validate has them.
BUILTIN_DOTTED = (".k8s.io",)


def strict(schema):
    """A copy of an OpenAPI v3 structural schema that rejects undeclared fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def load_crds(crd_dir):
    """(group, version, kind) -> strict schema, from every CRD in crd_dir."""
    schemas = {}
    for path in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if not version.get("served", True):
                        continue
                    schema = version["schema"]["openAPIV3Schema"]
                    key = (spec["group"], version["name"], spec["names"]["kind"])
                    schemas[key] = strict(schema)
    return schemas


def is_custom(api_version):
    group = api_version.split("/")[0] if "/" in api_version else ""
    return "." in group and not group.endswith(BUILTIN_DOTTED)


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    schemas = load_crds(argv[1])
    groups = {group for group, _, _ in schemas}
    failures = 0
    for built in argv[2:]:
        with open(built) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        core = []
        checked = 0
        before = failures
        for doc in docs:
            api_version = doc.get("apiVersion", "")
            kind = doc.get("kind", "")
            name = f"{kind}/{doc.get('metadata', {}).get('name', '?')}"
            if not is_custom(api_version):
                core.append(doc)
                continue
            group, _, version = api_version.partition("/")
            schema = schemas.get((group, version, kind))
            if schema is None:
                known = "known group" if group in groups else "no CRD vendored for this group"
                print(f"{built}: {name} ({api_version}): no schema ({known})")
                failures += 1
                continue
            meta = doc.get("metadata") or {}
            if not isinstance(meta.get("name"), str) or not meta["name"]:
                print(f"{built}: {name}: metadata.name missing")
                failures += 1
            validator = jsonschema.Draft4Validator(schema)
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            for error in errors:
                path = ".".join(str(p) for p in error.absolute_path) or "(root)"
                print(f"{built}: {name}: {path}: {error.message}")
            failures += len(errors)
            checked += 1
        root, _ = os.path.splitext(built)
        with open(root + ".core.yaml", "w") as out:
            yaml.safe_dump_all(core, out, sort_keys=False)
        verdict = "valid against" if failures == before else "checked, errors above, against"
        print(f"{built}: {checked} custom resources {verdict} their CRDs; "
              f"{len(core)} objects left for kubernetes-validate ({root}.core.yaml)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
