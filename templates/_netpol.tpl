{{/* Peers allowed to scrape metrics: the configured ones plus this chart's Prometheus. */}}
{{- define "argus.metricsPeers" -}}
{{- with .Values.networkPolicy.metricsFrom }}
{{ toYaml . }}
{{- end }}
{{- if .Values.prometheus.enabled }}
- podSelector:
    matchLabels:
      {{- include "argus.selectorLabels" (dict "ctx" . "component" "prometheus") | nindent 6 }}
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .Release.Namespace }}
{{- end }}
{{- end }}
