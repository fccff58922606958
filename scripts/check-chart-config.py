#!/usr/bin/env python3
"""Proves the Helm chart's environment is configuration the services accept.

For every values file given, renders the chart, collects each getlood container's environment
(plain values, ConfigMap/Secret references and envFrom, with type-correct placeholders for
secrets), and runs `getlood check-config --service <name>` with exactly that environment. A key
the chart sets but the service does not know (a typo, a removed setting, MINDSDB__* on the
gateway) fails the check with the service's own error message, naming the key.

The same is done for every getlood service of the compose file.

A getlood container is one whose command line (Kubernetes `command` + `args`, compose
`entrypoint` + `command`) is `/usr/local/bin/getlood <service> [serve|migrate]`: Deployments and
compose services must serve (`serve` or nothing), Jobs must `migrate`. A command naming one of
the former per-service binaries (`getlood-<service>`) is a failure: the image has only `getlood`.

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
    ("ACCOUNTS__KEY_ENCRYPTION_KEY", "a-placeholder-key-encryption-key-long-enough-0123456789"),
    ("APP__KEY_ENCRYPTION_KEY", "a-placeholder-key-encryption-key-long-enough-0123456789"),
]


def placeholder(name):
    for suffix, value in SECRET_PLACEHOLDERS:
        if name.endswith(suffix):
            return value
    return "placeholder"


def getlood_argv(argv):
    """(service, subcommand) of a `getlood <service> [subcommand] ...` command line, or None when
    the command is not getlood's. Raises ValueError for a command the image cannot run."""
    if not argv:
        return None
    program = str(argv[0]).rsplit("/", 1)[-1]
    if program.startswith("getlood-"):
        raise ValueError(f"runs {argv[0]!r}: the per-service binaries are gone, use `getlood <service>`")
    if program != "getlood":
        return None
    # The service must be the first argument: that is where `getlood` looks for it.
    if len(argv) < 2 or str(argv[1]).startswith("-"):
        raise ValueError(f"runs {' '.join(map(str, argv))!r}: the first argument must be the service")
    service, rest = str(argv[1]), [str(a) for a in argv[2:]]
    sub = None
    skip = False
    for arg in rest:
        if skip:
            skip = False
        elif arg == "--config":
            skip = True
        elif not arg.startswith("-"):
            sub = arg
            break
    return service, sub


def main():
    binary, helm, chart, compose, *values_files = sys.argv[1:]
    failures = 0
    checked = 0

    def fail(where, message):
        nonlocal failures, checked
        checked += 1
        failures += 1
        print(f"FAIL  {where}: {message}")

    def parse(argv, where, want):
        """The service of a getlood container, or None (not getlood, or already failed)."""
        try:
            parsed = getlood_argv(argv)
        except ValueError as err:
            fail(where, str(err))
            return None
        if parsed is None:
            return None
        service, sub = parsed
        if sub not in want:
            expected = " or ".join(f"`getlood {service} {w}`" if w else f"`getlood {service}`" for w in sorted(want, key=str))
            fail(where, f"runs `getlood {service} {sub}`, expected {expected}")
            return None
        return service

    def check(service, env, where, migrate=False):
        nonlocal failures, checked
        env = {k: v for k, v in env.items() if k.startswith("GETLOOD_")}
        env["PATH"] = "/usr/bin:/bin"
        # A migration Job is checked as `getlood <service> migrate` loads it: database settings only.
        argv = [binary, "check-config", "--service", service] + (["--migrate"] if migrate else [])
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        checked += 1
        if result.returncode != 0:
            failures += 1
            print(f"FAIL  {where}: {result.stderr.strip()}")

    with open(compose) as f:
        spec = yaml.safe_load(f)
    compose_services = 0
    for name, svc in spec.get("services", {}).items():
        argv = []
        for key in ("entrypoint", "command"):
            part = svc.get(key) or []
            argv += part.split() if isinstance(part, str) else list(part)
        service = parse(argv, f"{compose}: service {name}", {None, "serve"})
        if service is None:
            continue
        compose_services += 1
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
        check(service, resolved, f"{compose}: service {name}")
    if compose_services == 0:
        fail(compose, "no service runs `getlood <service>`")
    for values in values_files:
        rendered = subprocess.run(
            [helm, "template", "rel", chart, "-f", values], check=True, capture_output=True, text=True
        ).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
        deployments = 0
        for doc in docs:
            if doc.get("kind") not in ("Deployment", "Job"):
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                # Kubernetes: `args` replaces the image's CMD; with `command` they are appended.
                argv = list(container.get("command") or []) + list(container.get("args") or [])
                where = f"{values}: {doc['kind']} {doc['metadata']['name']}"
                want = {"migrate"} if doc["kind"] == "Job" else {None, "serve"}
                service = parse(argv, where, want)
                if service is None:
                    continue
                deployments += doc["kind"] == "Deployment"
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
                check(service, env, where, migrate=doc["kind"] == "Job")
        if deployments == 0:
            fail(values, "no Deployment runs `getlood <service>`")
    print(f"check-chart-config: {checked} containers (chart and compose) checked, {failures} refused")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
