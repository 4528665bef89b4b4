"""Offline checks of deploy/compose/compose.yaml (no Docker engine here): it parses,
every service has an image or a build, every dependency and mounted file exists,
and each suite service has its own database, port and the shared Redis / collector.
"""

import pathlib
import sys

import yaml

COMPOSE = pathlib.Path("deploy/compose/compose.yaml")
SUITE = {"profile": 50051, "interactions": 50052, "segmentation": 50053, "winback": 50054}


def main() -> int:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    problems = []
    for name, svc in services.items():
        if "image" not in svc and "build" not in svc:
            problems.append(f"{name}: neither image nor build")
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith(".") and not (COMPOSE.parent / src).exists():
                problems.append(f"{name}: mounts missing file {src}")
    databases = set()
    for name, port in SUITE.items():
        svc = services.get(name)
        if svc is None:
            problems.append(f"{name}: missing")
            continue
        env = svc.get("environment", {})
        if env.get("RETENTION_SERVICE__PORT") != str(port):
            problems.append(f"{name}: must listen on {port}")
        url = env.get("RETENTION_DATABASE__URL", "")
        if not url.endswith(f"/{name}"):
            problems.append(f"{name}: needs its own database, got {url!r}")
        databases.add(url)
        for key in ("RETENTION_REDIS__URL", "RETENTION_TELEMETRY__OTLP_ENDPOINT"):
            if not env.get(key):
                problems.append(f"{name}: {key} is not set")
        if svc.get("read_only") is not True or "ALL" not in svc.get("cap_drop", []):
            problems.append(f"{name}: must run read-only with every capability dropped")
    for p in problems:
        print(f"compose: {p}", file=sys.stderr)
    if not problems:
        print(f"compose: {len(services)} services, {len(databases)} databases: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
