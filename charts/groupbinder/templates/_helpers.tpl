{{/* Chart name, cut to 63 characters. */}}
{{- define "groupbinder.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name unless the release already contains it. */}}
{{- define "groupbinder.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "groupbinder.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "groupbinder.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "groupbinder.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: fixed by the chart, never user-settable (a Deployment's selector is immutable). */}}
{{- define "groupbinder.selectorLabels" -}}
app.kubernetes.io/name: {{ include "groupbinder.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "groupbinder.labels" -}}
helm.sh/chart: {{ include "groupbinder.chart" . }}
{{ include "groupbinder.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: groupbinder
{{- end }}

{{- define "groupbinder.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "groupbinder.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The allowlist: one source for the operator's --allowed-roles and its RBAC `bind` rule. */}}
{{- define "groupbinder.allowedRoles" -}}
{{- if .Values.allowedRoles }}
{{- toJson .Values.allowedRoles }}
{{- else }}
{{- $r := .Values.k10.release }}
{{- toJson (list (printf "%s-admin" $r) (printf "%s-ns-admin" $r) (printf "%s-basic" $r) (printf "%s-config-view" $r)) }}
{{- end }}
{{- end }}

{{- define "groupbinder.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ else }}false{{ end }}
{{- end }}
