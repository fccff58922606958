#!/usr/bin/env python3
"""Proves the Helm chart's environment is configuration the services accept.

For every values file given, renders the chart, collects each getlood container's environment
(plain values, ConfigMap/Secret references and envFrom, with type-correct placeholders for
secrets), and runs `getlood check-config --service <name>` with exactly that environment. A key
the chart sets but the service does not know (a typo, a removed setting) fails the check with
the service's own error message, naming the key.

The same is done for every getlood service of the compose file.

Usage: check-chart-config.py <getlood-binary> <helm> <chart> <compose.yml> <values.yaml>...
"""
import subprocess
import sys

import yaml

# Placeholders of the right shape for values that come from Secrets, by key suffix.
SECRET_PLACEHOLDERS = [
    ("POSTGRES__URL", "postgres://app:secret@postgres:5432/getlood"),
    ("REDIS__URL", "redis://redis:6379"),
    ("NATS__URL", "nats://nats:4222"),
    ("MINDSDB__URL", "http://mindsdb:47334"),
    ("MINDSDB__USERNAME", "admin"),
    ("MINDSDB__PASSWORD", "mindsdb-password"),
    ("AUTH__HS256_SECRET", "a-placeholder-secret-that-is-long-enough-0123456789"),
]


def placeholder(name):
    for suffix, value in SECRET_PLACEHOLDERS:
        if name.endswith(suffix):
            return value
    return "placeholder"


def main():
    binary, helm, chart, compose, *values_files = sys.argv[1:]
    failures = 0
    checked = 0

    def check(service, env, where):
        nonlocal failures, checked
        env = {k: v for k, v in env.items() if k.startswith("GETLOOD_")}
        env["PATH"] = "/usr/bin:/bin"
        result = subprocess.run([binary, "check-config", "--service", service], env=env, capture_output=True, text=True)
        checked += 1
        if result.returncode != 0:
            failures += 1
            print(f"FAIL  {where}: {result.stderr.strip()}")

    with open(compose) as f:
        spec = yaml.safe_load(f)
    for name, svc in spec.get("services", {}).items():
        command = svc.get("command") or svc.get("entrypoint") or []
        if isinstance(command, str):
            command = command.split()
        binary_name = command[0].rsplit("/", 1)[-1] if command else ""
        if not binary_name.startswith("getlood-"):
            continue
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        # Compose interpolation (${VAR:-default}) is resolved to its default here.
        resolved = {}
        for k, v in env.items():
            v = "" if v is None else str(v)
            if v.startswith("${") and ":-" in v:
                v = v[v.index(":-") + 2 : -1]
            resolved[k] = v
        check(binary_name[len("getlood-"):], resolved, f"{compose}: service {name}")
    for values in values_files:
        rendered = subprocess.run(
            [helm, "template", "rel", chart, "-f", values], check=True, capture_output=True, text=True
        ).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
        for doc in docs:
            if doc.get("kind") not in ("Deployment", "Job"):
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                command = container.get("command") or []
                binary_name = command[0].rsplit("/", 1)[-1] if command else ""
                if not binary_name.startswith("getlood-"):
                    continue
                service = binary_name[len("getlood-"):]
                env = {}
                for source in container.get("envFrom", []):
                    ref = source.get("configMapRef")
                    if ref:
                        env.update({k: str(v) for k, v in configmaps.get(ref["name"], {}).items()})
                for item in container.get("env", []):
                    if "value" in item:
                        env[item["name"]] = str(item["value"])
                    elif "configMapKeyRef" in item.get("valueFrom", {}):
                        ref = item["valueFrom"]["configMapKeyRef"]
                        env[item["name"]] = str(configmaps.get(ref["name"], {}).get(ref["key"], ""))
                    elif "secretKeyRef" in item.get("valueFrom", {}):
                        env[item["name"]] = placeholder(item["name"])
                # Only the service's own settings matter; downward-API values are irrelevant.
                check(service, env, f"{values}: {doc['kind']} {doc['metadata']['name']}")
    print(f"check-chart-config: {checked} containers (chart and compose) checked, {failures} refused")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
