#!/usr/bin/env bash
# Validate the deployment files offline:
#   1. helm lint --strict with every helm/getlood/ci/*.yaml values file
#   2. helm template with each, piped into kubernetes-validate --strict (Kubernetes 1.32.0), plus a
#      check that the expected kinds (and counts) were rendered, and that nothing unexpected was
#   3. negative checks: every ci/invalid/*.yaml must be REJECTED by lint (values.schema.json), and
#      every ci/invalid-render/*.yaml must make helm template fail
#   4. check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
# Prints one line per check and exits non-zero if any check failed.
# Tools: scripts/install-deploy-tools.sh installs them into .tools (override with TOOLS_DIR).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$ROOT/.tools}
export PATH="$TOOLS_DIR/bin:$PATH"
CHART="$ROOT/helm/getlood"
K8S_VERSION=${K8S_VERSION:-1.32.0}
RELEASE=getlood
NAMESPACE=getlood

for tool in helm kubernetes-validate check-jsonschema; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool not found; run scripts/install-deploy-tools.sh first" >&2
    exit 2
  fi
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
pass=0
fail=0
ok()  { pass=$((pass + 1)); printf 'PASS  %s\n' "$1"; }
bad() { fail=$((fail + 1)); printf 'FAIL  %s\n' "$1"; [[ -n "${2:-}" && -s "$2" ]] && sed 's/^/      | /' "$2" | head -n 25; }

# Number of GETLOOD service Deployments expected (all six enabled in every ci file).
SERVICES=6
# Postgres-owning services (the gateway too, for its A2A tasks), one migration Job each.
MIGRATIONS=5

# expected kinds per values file: "Kind" (at least one), "Kind=N" (exactly N), "!Kind" (none).
expectations() {
  local common="Deployment=$SERVICES Service ServiceAccount ConfigMap PodDisruptionBudget NetworkPolicy Job=$MIGRATIONS"
  case "$1" in
    default-values.yaml)          echo "$common Secret StatefulSet=1 !HorizontalPodAutoscaler !Ingress !ServiceMonitor !PrometheusRule" ;;
    scaled-values.yaml)           echo "$common Secret StatefulSet=1 HorizontalPodAutoscaler=4 !Ingress" ;;
    external-mindsdb-values.yaml) echo "$common Secret !StatefulSet" ;;
    production-values.yaml)       echo "$common !Secret StatefulSet=1 Ingress=1 HorizontalPodAutoscaler=2" ;;
    monitoring-values.yaml)       echo "$common ServiceMonitor=1 PrometheusRule=1" ;;
    *)                            echo "$common" ;;
  esac
}

check_kinds() { # check_kinds <rendered.yaml> <expectations...>
  local file=$1; shift
  local problems=() exp kind want got
  for exp in "$@"; do
    case "$exp" in
      !*) kind=${exp#!}; got=$(grep -c "^kind: ${kind}\$" "$file" || true)
          [[ "$got" -eq 0 ]] || problems+=("$kind: expected none, got $got") ;;
      *=*) kind=${exp%%=*}; want=${exp#*=}; got=$(grep -c "^kind: ${kind}\$" "$file" || true)
          [[ "$got" -eq "$want" ]] || problems+=("$kind: expected $want, got $got") ;;
      *) kind=$exp; got=$(grep -c "^kind: ${kind}\$" "$file" || true)
          [[ "$got" -ge 1 ]] || problems+=("$kind: expected at least one, got 0") ;;
    esac
  done
  if [[ ${#problems[@]} -eq 0 ]]; then return 0; fi
  printf '%s\n' "${problems[@]}"
  return 1
}

shopt -s nullglob
values_files=("$CHART"/ci/*.yaml)
if [[ ${#values_files[@]} -eq 0 ]]; then
  bad "no values files in $CHART/ci"
fi

for vf in "${values_files[@]}"; do
  name=$(basename "$vf")
  out="$WORK/$name"

  # 1. lint (values.schema.json + templates), strict
  if helm lint --strict "$CHART" -f "$vf" >"$out.lint" 2>&1; then
    ok "helm lint --strict -f ci/$name"
  else
    bad "helm lint --strict -f ci/$name" "$out.lint"
  fi

  # 2. render + Kubernetes schema validation (strict: unknown fields are errors)
  if ! helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$vf" >"$out.rendered" 2>"$out.err"; then
    bad "helm template -f ci/$name" "$out.err"
    continue
  fi
  if kubernetes-validate --strict --quiet -k "$K8S_VERSION" /dev/stdin <"$out.rendered" >"$out.kv" 2>&1; then
    # kubernetes-validate only WARNs (exit 0) on kinds it has no schema for: allow that for the
    # Prometheus Operator CRDs only; anything else (a typo'd or removed apiVersion) is a failure.
    if grep -v -E "^WARN .*kind (ServiceMonitor|PrometheusRule) with api version monitoring\.coreos\.com/v1 " "$out.kv" | grep -q .; then
      bad "kubernetes-validate --strict -k $K8S_VERSION (ci/$name): unexpected warnings" "$out.kv"
    else
      ok "kubernetes-validate --strict -k $K8S_VERSION (ci/$name, $(grep -c '^kind:' "$out.rendered") objects)"
    fi
  else
    bad "kubernetes-validate --strict -k $K8S_VERSION (ci/$name)" "$out.kv"
  fi

  # 2b. the expected kinds were rendered (a template that renders nothing must fail)
  read -r -a exps <<<"$(expectations "$name")"
  if check_kinds "$out.rendered" "${exps[@]}" >"$out.kinds"; then
    ok "rendered kinds (ci/$name): ${exps[*]}"
  else
    bad "rendered kinds (ci/$name)" "$out.kinds"
  fi
done

# 3. negative checks
invalid_files=("$CHART"/ci/invalid/*.yaml)
if [[ ${#invalid_files[@]} -eq 0 ]]; then bad "no negative values files in $CHART/ci/invalid"; fi
for vf in "${invalid_files[@]}"; do
  name=$(basename "$vf")
  if helm lint --strict "$CHART" -f "$vf" >"$WORK/neg-$name.lint" 2>&1; then
    bad "ci/invalid/$name was ACCEPTED by helm lint (must be rejected by values.schema.json)" "$WORK/neg-$name.lint"
  elif grep -q "values don't meet the specifications of the schema" "$WORK/neg-$name.lint"; then
    ok "ci/invalid/$name rejected by values.schema.json ($(grep -m1 '^\[ERROR\] values.yaml: ' "$WORK/neg-$name.lint" | sed 's/^\[ERROR\] values.yaml: - //' | cut -c1-90))"
  else
    bad "ci/invalid/$name failed lint, but not because of the schema" "$WORK/neg-$name.lint"
  fi
done
for vf in "$CHART"/ci/invalid-render/*.yaml; do
  name=$(basename "$vf")
  if helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$vf" >/dev/null 2>"$WORK/negr-$name.err"; then
    bad "ci/invalid-render/$name rendered (must fail)"
  else
    ok "ci/invalid-render/$name rejected by helm template ($(grep -m1 -oE '(services|mindsdb|secrets)\.[a-zA-Z-]+[.=][^"]*' "$WORK/negr-$name.err" | cut -c1-90))"
  fi
done

# 4. docker-compose.yml against the compose specification
if check-jsonschema --builtin-schema vendor.compose-spec "$ROOT/docker-compose.yml" >"$WORK/compose.out" 2>&1; then
  ok "check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml"
else
  bad "check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml" "$WORK/compose.out"
fi

echo "validate-deploy: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
