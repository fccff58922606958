{{/* vim: set filetype=mustache: */}}

{{/* Chart name, overridable. */}}
{{- define "getlood.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified release name. With release "getlood" and chart "getlood" this is "getlood",
so the pipeline Service is "getlood-pipeline".
*/}}
{{- define "getlood.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "getlood.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of a component's objects: (dict "root" $ "name" "pipeline") -> getlood-pipeline */}}
{{- define "getlood.componentName" -}}
{{- printf "%s-%s" (include "getlood.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The headless Service of a component: its DNS name resolves to every ready pod. */}}
{{- define "getlood.headlessName" -}}
{{- printf "%s-headless" (include "getlood.componentName" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{/* Labels shared by every object of the release. */}}
{{- define "getlood.commonLabels" -}}
helm.sh/chart: {{ include "getlood.chart" . }}
app.kubernetes.io/name: {{ include "getlood.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: getlood
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of the whole release (all components). */}}
{{- define "getlood.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "getlood.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "name" "pipeline") */}}
{{- define "getlood.selectorLabels" -}}
{{ include "getlood.releaseSelectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* All labels of one component. */}}
{{- define "getlood.labels" -}}
{{ include "getlood.commonLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Env prefix of a service: desktop-state -> GETLOOD_DESKTOP_STATE_ */}}
{{- define "getlood.envPrefix" -}}
{{- printf "GETLOOD_%s_" (. | replace "-" "_" | upper) -}}
{{- end -}}

{{/* The getlood image reference; a digest wins over a tag. */}}
{{- define "getlood.image" -}}
{{- $img := .Values.global.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret that holds credentials (existing or generated). */}}
{{- define "getlood.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "getlood.fullname" . -}}
{{- end -}}
{{- end -}}

{{/*
Name of the Secret the migration hook Jobs read. A pre-install hook runs before the chart's own
Secret exists, so when the chart generates credentials it also creates a hook-scoped copy of the
Postgres URLs (deleted again once the hooks succeed). With existingSecret, that Secret is used.
*/}}
{{- define "getlood.migrationSecretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-migrations" (include "getlood.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount name of a service: (dict "root" $ "name" "pipeline" "svc" $svc) */}}
{{- define "getlood.serviceAccountName" -}}
{{- $sa := .root.Values.serviceAccount -}}
{{- if $sa.create -}}
{{- include "getlood.componentName" (dict "root" .root "name" .name) -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{/* MindsDB URL as seen by the services: in-chart Service, or the external URL. */}}
{{- define "getlood.mindsdbUrl" -}}
{{- if .Values.mindsdb.enabled -}}
{{- printf "http://%s:%d" (include "getlood.componentName" (dict "root" . "name" "mindsdb")) (int .Values.mindsdb.service.port) -}}
{{- else -}}
{{- required "mindsdb.external.url is required when mindsdb.enabled=false" .Values.mindsdb.external.url -}}
{{- end -}}
{{- end -}}

{{/* Does any enabled service use a dependency? (dict "root" $ "dep" "mindsdb") -> "true" or "" */}}
{{- define "getlood.anyUses" -}}
{{- $found := false -}}
{{- range $name, $svc := .root.Values.services -}}
{{- if and $svc.enabled (has $.dep $svc.uses) -}}{{- $found = true -}}{{- end -}}
{{- end -}}
{{- if $found -}}true{{- end -}}
{{- end -}}

{{/*
Non-secret configuration of one service as a flat map of env vars (rendered into its ConfigMap,
and inline into its migration Job). Later sources win: chart-derived keys, global.env,
services.<name>.config (auto-prefixed), services.<name>.env (verbatim).
Call with (dict "root" $ "name" "pipeline" "svc" $svc).
*/}}
{{- define "getlood.serviceConfig" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := .svc -}}
{{- $g := $root.Values.global -}}
{{- $p := include "getlood.envPrefix" $name -}}
{{- $cfg := dict -}}
{{- $_ := set $cfg (printf "%sHTTP_ADDR" $p) (printf "0.0.0.0:%d" (int $svc.ports.http)) -}}
{{- $_ := set $cfg (printf "%sGRPC_ADDR" $p) (printf "0.0.0.0:%d" (int $svc.ports.grpc)) -}}
{{- $_ := set $cfg (printf "%sADMIN_ADDR" $p) (printf "0.0.0.0:%d" (int $svc.ports.admin)) -}}
{{- $_ := set $cfg (printf "%sLOG_FORMAT" $p) $g.logFormat -}}
{{- $_ := set $cfg (printf "%sSHUTDOWN_TIMEOUT" $p) $g.shutdownTimeout -}}
{{- $_ := set $cfg "RUST_LOG" $g.rustLog -}}
{{- $_ := set $cfg "OTEL_SERVICE_NAME" (printf "getlood-%s" $name) -}}
{{- if $g.otel.enabled -}}
{{- $_ := set $cfg "OTEL_EXPORTER_OTLP_ENDPOINT" $g.otel.endpoint -}}
{{- if $g.otel.protocol -}}
{{- $_ := set $cfg "OTEL_EXPORTER_OTLP_PROTOCOL" $g.otel.protocol -}}
{{- end -}}
{{- if $g.otel.sampler -}}
{{- $_ := set $cfg "OTEL_TRACES_SAMPLER" $g.otel.sampler -}}
{{- $_ := set $cfg "OTEL_TRACES_SAMPLER_ARG" ($g.otel.samplerArg | toString) -}}
{{- end -}}
{{- end -}}
{{- if has "postgres" $svc.uses -}}
{{- $_ := set $cfg (printf "%sPOSTGRES__RUN_MIGRATIONS" $p) (ternary "false" "true" $root.Values.migrations.enabled) -}}
{{- end -}}
{{- if has "mindsdb" $svc.uses -}}
{{- $_ := set $cfg (printf "%sMINDSDB__URL" $p) (include "getlood.mindsdbUrl" $root) -}}
{{- end -}}
{{- /* Model providers: MindsDB calls them with what the service passes (see values `models`). */ -}}
{{- range $use, $spec := dict "llm" (list "APP__INTENT_MODEL__" $root.Values.models.chat) "embeddings" (list "APP__MEMORY__EMBEDDING__" $root.Values.models.embeddings) -}}
{{- if has $use $svc.uses -}}
{{- $key := index $spec 0 -}}
{{- $model := index $spec 1 -}}
{{- with $model.provider }}{{- $_ := set $cfg (printf "%s%sPROVIDER" $p $key) . -}}{{- end -}}
{{- with $model.baseUrl }}{{- $_ := set $cfg (printf "%s%sBASE_URL" $p $key) . -}}{{- end -}}
{{- with $model.modelName }}{{- $_ := set $cfg (printf "%s%sMODEL_NAME" $p $key) . -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if has "auth" $svc.uses -}}
{{- with $root.Values.auth.jwksUrl }}{{- $_ := set $cfg (printf "%sAUTH__JWKS_URL" $p) . -}}{{- end -}}
{{- /* Built-in accounts: the gateway's JWKS, in the cluster (every service verifies its tokens). */ -}}
{{- $gw := $root.Values.services.gateway -}}
{{- if and (not $root.Values.auth.jwksUrl) $gw $gw.enabled -}}
{{- $gwCtx := dict "root" $root "name" "gateway" -}}
{{- $_ := set $cfg (printf "%sAUTH__JWKS_URL" $p) (printf "http://%s:%d/.well-known/jwks.json" (include "getlood.componentName" $gwCtx) (int $gw.ports.http)) -}}
{{- end -}}
{{- with $root.Values.auth.issuer }}{{- $_ := set $cfg (printf "%sAUTH__ISSUER" $p) . -}}{{- end -}}
{{- with $root.Values.auth.audience }}{{- $_ := set $cfg (printf "%sAUTH__AUDIENCE" $p) . -}}{{- end -}}
{{- end -}}
{{- /* The web app's OpenID Connect client (the gateway's `accounts` use); required with OIDC. */ -}}
{{- if and (has "accounts" $svc.uses) $root.Values.auth.jwksUrl -}}
{{- $oidc := $root.Values.auth.oidc -}}
{{- $_ := set $cfg (printf "%sAPP__OIDC__CLIENT_ID" $p) (required "auth.oidc.clientId is required with auth.jwksUrl (the web app signs in with the provider)" $oidc.clientId) -}}
{{- $_ := set $cfg (printf "%sAPP__OIDC__AUTHORIZATION_ENDPOINT" $p) (required "auth.oidc.authorizationEndpoint is required with auth.jwksUrl" $oidc.authorizationEndpoint) -}}
{{- $_ := set $cfg (printf "%sAPP__OIDC__TOKEN_ENDPOINT" $p) (required "auth.oidc.tokenEndpoint is required with auth.jwksUrl" $oidc.tokenEndpoint) -}}
{{- with $oidc.scopes }}{{- $_ := set $cfg (printf "%sAPP__OIDC__SCOPES" $p) (toJson .) -}}{{- end -}}
{{- end -}}
{{- /* TLS: CA files from the bundle mounted at /etc/getlood/ca (values `tls`). */ -}}
{{- $tls := $root.Values.tls -}}
{{- if and (has "mindsdb" $svc.uses) $tls.files.mindsdb -}}
{{- $_ := set $cfg (printf "%sMINDSDB__CA_FILE" $p) (printf "/etc/getlood/ca/%s" $tls.files.mindsdb) -}}
{{- end -}}
{{- if and (has "redis" $svc.uses) $tls.files.redis -}}
{{- $_ := set $cfg (printf "%sREDIS__CA_FILE" $p) (printf "/etc/getlood/ca/%s" $tls.files.redis) -}}
{{- end -}}
{{- if has "nats" $svc.uses -}}
{{- with $tls.files.nats }}{{- $_ := set $cfg (printf "%sNATS__CA_FILE" $p) (printf "/etc/getlood/ca/%s" .) -}}{{- end -}}
{{- if or $tls.natsRequireTls $tls.files.nats }}{{- $_ := set $cfg (printf "%sNATS__REQUIRE_TLS" $p) "true" -}}{{- end -}}
{{- end -}}
{{- if and (has "auth" $svc.uses) $root.Values.auth.jwksUrl $tls.files.jwks -}}
{{- $_ := set $cfg (printf "%sAUTH__JWKS_CA_FILE" $p) (printf "/etc/getlood/ca/%s" $tls.files.jwks) -}}
{{- end -}}
{{- range $up := $svc.upstreams -}}
{{- $upSvc := index $root.Values.services $up -}}
{{- if $upSvc.enabled -}}
{{- $key := printf "%sSERVICES__%s" $p ($up | replace "-" "_" | upper) -}}
{{- $upCtx := dict "root" $root "name" $up -}}
{{- if eq $g.upstreamBalancing "service" -}}
{{- $_ := set $cfg $key (printf "http://%s:%d" (include "getlood.componentName" $upCtx) (int $upSvc.ports.grpc)) -}}
{{- else -}}
{{- $_ := set $cfg $key (printf "dns://%s:%d?refresh=%s" (include "getlood.headlessName" $upCtx) (int $upSvc.ports.grpc) $g.upstreamDnsRefresh) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := $g.env -}}
{{- $_ := set $cfg $k ($v | toString) -}}
{{- end -}}
{{- range $k, $v := $svc.config -}}
{{- $_ := set $cfg (printf "%s%s" $p $k) ($v | toString) -}}
{{- end -}}
{{- range $k, $v := $svc.env -}}
{{- $_ := set $cfg $k ($v | toString) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Env vars read from the Secret by one service (only the keys it needs).
Call with (dict "root" $ "name" "pipeline" "svc" $svc "secretName" "...").
*/}}
{{- define "getlood.secretEnv" -}}
{{- $p := include "getlood.envPrefix" .name -}}
{{- $secret := .secretName -}}
{{- if has "postgres" .svc.uses }}
- name: {{ $p }}POSTGRES__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: postgres-url-{{ .name }}
{{- end }}
{{- if has "redis" .svc.uses }}
- name: {{ $p }}REDIS__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: redis-url
{{- end }}
{{- if has "nats" .svc.uses }}
- name: {{ $p }}NATS__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: nats-url
{{- end }}
{{- if has "mindsdb" .svc.uses }}
- name: {{ $p }}MINDSDB__USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: mindsdb-username
      optional: true
- name: {{ $p }}MINDSDB__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: mindsdb-password
      optional: true
{{- end }}
{{- if has "llm" .svc.uses }}
- name: {{ $p }}APP__INTENT_MODEL__API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: chat-api-key
      optional: true
{{- end }}
{{- if has "embeddings" .svc.uses }}
- name: {{ $p }}APP__MEMORY__EMBEDDING__API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: embeddings-api-key
      optional: true
{{- end }}
{{- if has "auth" .svc.uses }}
- name: {{ $p }}AUTH__HS256_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: jwt-hs256-secret
      optional: true
{{- end }}
{{- if has "accounts" .svc.uses }}
- name: {{ $p }}APP__ACCOUNTS__KEY_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: accounts-key-encryption-key
      optional: true
{{- end }}
{{- if has "sealing" .svc.uses }}
- name: {{ $p }}APP__KEY_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: accounts-key-encryption-key
      optional: true
{{- end }}
{{- end -}}

{{/* Downward-API env plus OTel resource attributes (k8s.pod.name etc.). */}}
{{- define "getlood.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.namespace=getlood,service.version=%s,k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE_NAME)%s" .Chart.AppVersion (ternary (printf ",%s" .Values.global.otel.resourceAttributes) "" (ne .Values.global.otel.resourceAttributes "")) | quote }}
{{- end -}}

{{/*
One probe: (dict "probe" $probe "svc" $svc). A probe with `grpc` set uses the gRPC health
service (grpc.health.v1) on the given port (default: the service's gRPC port); otherwise it is
an HTTP GET on the named port `port` (default `admin`, where /readyz has the details).
*/}}
{{- define "getlood.probe" -}}
{{- $pr := .probe -}}
{{- if and (hasKey $pr "grpc") (kindIs "map" $pr.grpc) }}
grpc:
  port: {{ default .svc.ports.grpc $pr.grpc.port | int }}
  {{- with $pr.grpc.service }}
  service: {{ . | quote }}
  {{- end }}
{{- else }}
httpGet:
  path: {{ $pr.path }}
  port: {{ default "admin" $pr.port }}
{{- end }}
{{- range $k := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if hasKey $pr $k }}
{{ $k }}: {{ index $pr $k | int }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Effective probes of a service: global.probes deep-merged with services.<name>.probes. */}}
{{- define "getlood.effectiveProbes" -}}
{{- $merged := mergeOverwrite (deepCopy .root.Values.global.probes) (deepCopy (default dict .svc.probes)) -}}
{{- toYaml $merged -}}
{{- end -}}

{{/*
The CA bundle volume (values `tls.caBundle`), or nothing. Call with the root context.
A CA file named without a bundle to mount is a render error, not a pod that cannot start.
*/}}
{{- define "getlood.caVolume" -}}
{{- $b := .Values.tls.caBundle -}}
{{- $files := .Values.tls.files -}}
{{- if and $b.secretName $b.configMapName -}}
{{- fail "tls.caBundle: set secretName or configMapName, not both" -}}
{{- end -}}
{{- if and (not (or $b.secretName $b.configMapName)) (or $files.mindsdb $files.redis $files.nats $files.jwks) -}}
{{- fail "tls.files names CA files but tls.caBundle names no Secret or ConfigMap to mount them from" -}}
{{- end -}}
{{- if $b.secretName }}
- name: ca-bundle
  secret:
    secretName: {{ $b.secretName }}
{{- else if $b.configMapName }}
- name: ca-bundle
  configMap:
    name: {{ $b.configMapName }}
{{- end -}}
{{- end -}}

{{- define "getlood.caVolumeMount" -}}
{{- if or .Values.tls.caBundle.secretName .Values.tls.caBundle.configMapName }}
- name: ca-bundle
  mountPath: /etc/getlood/ca
  readOnly: true
{{- end -}}
{{- end -}}
