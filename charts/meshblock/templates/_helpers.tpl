{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "meshblock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshblock.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "meshblock.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "meshblock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: meshblock
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "controller") */}}
{{- define "meshblock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshblock.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "meshblock.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "meshblock.controllerName" -}}
{{- printf "%s-controller" (include "meshblock.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshblock.agentName" -}}
{{- printf "%s-agent" (include "meshblock.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshblock.csiControllerName" -}}
{{- printf "%s-csi-controller" (include "meshblock.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshblock.csiNodeName" -}}
{{- printf "%s-csi-node" (include "meshblock.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The admin API address every client uses: the controller Service's DNS name. */}}
{{- define "meshblock.controllerAddress" -}}
{{- printf "%s.%s.svc:%d" (include "meshblock.controllerName" .) .Release.Namespace (int .Values.controller.port) }}
{{- end }}

{{- define "meshblock.serverSecretName" -}}
{{- default (printf "%s-controller-tls" (include "meshblock.fullname" .)) .Values.tls.serverSecretName }}
{{- end }}

{{- define "meshblock.clientSecretName" -}}
{{- default (printf "%s-client-tls" (include "meshblock.fullname" .)) .Values.tls.clientSecretName }}
{{- end }}

{{/* The state store URL of `meshblock controller --store`. */}}
{{- define "meshblock.storeURL" -}}
{{- if eq .Values.store.engine "etcd" }}
{{- printf "etcd://%s?prefix=%s" (join "," .Values.store.etcd.endpoints) .Values.store.etcd.prefix }}
{{- else }}
{{- print "sqlite:///var/lib/meshblock/state.db" }}
{{- end }}
{{- end }}

{{/* Mount paths of the TLS material inside the pods. */}}
{{- define "meshblock.serverTLSDir" -}}/etc/meshblock/server-tls{{- end }}
{{- define "meshblock.clientTLSDir" -}}/etc/meshblock/client-tls{{- end }}

{{/* Checks of combinations the schema cannot express; rendering stops with the reason. */}}
{{- define "meshblock.validate" -}}
{{- $engine := .Values.store.engine }}
{{- if not (has $engine (list "sqlite" "etcd")) }}
{{- fail (printf "store.engine must be sqlite or etcd, not %q" $engine) }}
{{- end }}
{{- if and (eq $engine "sqlite") (gt (int .Values.controller.replicas) 1) }}
{{- fail (printf "controller.replicas=%d needs store.engine=etcd: the SQLite store serves exactly one controller (its leader lease is a lock on a file of one pod's volume). Set controller.replicas=1, or store.engine=etcd with store.etcd.endpoints." (int .Values.controller.replicas)) }}
{{- end }}
{{- if and (eq $engine "etcd") (empty .Values.store.etcd.endpoints) }}
{{- fail "store.engine=etcd needs store.etcd.endpoints (host:port of each etcd member)" }}
{{- end }}
{{- if lt (int .Values.controller.replicas) 1 }}
{{- fail "controller.replicas must be at least 1" }}
{{- end }}
{{- if and .Values.tls.serverSecretName (not .Values.tls.clientSecretName) }}
{{- fail "tls.serverSecretName is set but tls.clientSecretName is not: name both Secrets, or neither to have the chart generate them" }}
{{- end }}
{{- if and .Values.tls.clientSecretName (not .Values.tls.serverSecretName) }}
{{- fail "tls.clientSecretName is set but tls.serverSecretName is not: name both Secrets, or neither to have the chart generate them" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled=true" }}
{{- end }}
{{- if and .Values.metrics.dashboards.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.dashboards.enabled needs metrics.enabled=true" }}
{{- end }}
{{- if and .Values.metrics.prometheusRule.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.prometheusRule.enabled needs metrics.enabled=true" }}
{{- end }}
{{- end }}

{{/* Environment of a meshblock client: the admin endpoint and its mutual TLS files. */}}
{{- define "meshblock.clientEnv" -}}
- name: MESHBLOCK_CA
  value: {{ include "meshblock.clientTLSDir" . }}/ca.crt
- name: MESHBLOCK_CERT
  value: {{ include "meshblock.clientTLSDir" . }}/tls.crt
- name: MESHBLOCK_KEY
  value: {{ include "meshblock.clientTLSDir" . }}/tls.key
{{- end }}
