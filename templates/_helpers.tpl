{{/* Chart name, truncated to the 63 characters a label value may hold. */}}
{{- define "argus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object-name prefix: the release name, plus the chart name unless the release name already holds it. */}}
{{- define "argus.fullname" -}}
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

{{/* A component's object name: <fullname>-<component>, kept within 63 characters. */}}
{{- define "argus.componentName" -}}
{{- printf "%s-%s" (include "argus.fullname" .ctx | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "argus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select a component's pods; never change them on upgrade (selectors are immutable). Call with (dict "ctx" . "component" "router"). */}}
{{- define "argus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "argus.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every object's labels. Call with (dict "ctx" . "component" "router"). */}}
{{- define "argus.labels" -}}
helm.sh/chart: {{ include "argus.chart" .ctx }}
{{ include "argus.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: argus
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The control-plane image reference. */}}
{{- define "argus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Namespaces the operator watches in namespaced mode (the release namespace when none are listed). */}}
{{- define "argus.watchNamespaces" -}}
{{- if .Values.rbac.watchNamespaces }}{{ join "," .Values.rbac.watchNamespaces }}{{ else }}{{ .Release.Namespace }}{{ end }}
{{- end }}

{{/* Name of the kopf peering object. */}}
{{- define "argus.peeringName" -}}
{{- default (include "argus.fullname" .) .Values.operator.peering.name }}
{{- end }}

{{/* Name of the Secret holding the router's API key. */}}
{{- define "argus.apiKeySecret" -}}
{{- default (include "argus.componentName" (dict "ctx" . "component" "api-key")) .Values.apiKey.existingSecret }}
{{- end }}

{{/* The chart's RBAC rules, generated from the code by `argus render-manifests`. */}}
{{- define "argus.rbac" -}}
{{- .Files.Get "files/rbac.json" | fromJson | toJson }}
{{- end }}

{{/* Pod-level scheduling and security shared by every pod of the chart. Call with (dict "ctx" . "pod" .Values.router). */}}
{{- define "argus.podCommon" -}}
{{- with .ctx.Values.imagePullSecrets -}}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{ end -}}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .pod.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Scrape annotations, when pods are not scraped through the Prometheus Operator. Call with (dict "ctx" . "port" 9100 "path" "/metrics"). */}}
{{- define "argus.scrapeAnnotations" -}}
{{- if and .ctx.Values.metrics.scrapeAnnotations (not .ctx.Values.metrics.serviceMonitor.enabled) -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: {{ .path | quote }}
{{- end }}
{{- end }}
