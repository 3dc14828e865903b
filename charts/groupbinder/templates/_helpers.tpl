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

{{/* The allowlist: one source for the operator's --allowed-roles, its RBAC `bind` rules and
its admission policy. A ClusterRole by name, a Role as namespace/name. */}}
{{- define "groupbinder.allowedRoles" -}}
{{- if .Values.allowedRoles }}
{{- toJson .Values.allowedRoles }}
{{- else }}
{{- $r := .Values.k10.release }}
{{- toJson (list (printf "%s-admin" $r) (printf "%s-basic" $r) (printf "%s-config-view" $r) (printf "%s-mc-admin" $r) (printf "%s/%s-ns-admin" .Values.k10.namespace $r)) }}
{{- end }}
{{- end }}

{{/* Fails unless the allowed roles name one of K10's roles for k10.release, or allowNonK10Roles
says that is meant: a list of none (a typo) would revoke every grant at the next rollout. The
operator refuses the same at start-up (--allow-non-k10-roles). */}}
{{- define "groupbinder.checkAllowedRoles" -}}
{{- $r := .Values.k10.release }}
{{- $k10 := list (printf "%s-admin" $r) (printf "%s-basic" $r) (printf "%s-config-view" $r) (printf "%s-mc-admin" $r) (printf "%s/%s-ns-admin" .Values.k10.namespace $r) }}
{{- $named := false }}
{{- range (include "groupbinder.allowedRoles" . | fromJsonArray) }}
{{- if has . $k10 }}{{ $named = true }}{{ end }}
{{- end }}
{{- if and (not $named) (not .Values.allowNonK10Roles) }}
{{- fail (printf "allowedRoles %v names none of K10's roles for k10.release %q (%s): every AzureGroupBinding would lose its grants at once; fix the list or k10.release, or set allowNonK10Roles=true if that is meant" .Values.allowedRoles $r (join ", " $k10)) }}
{{- end }}
{{- end }}

{{/* The allowed ClusterRoles (entries without '/'), as a JSON list. */}}
{{- define "groupbinder.allowedClusterRoles" -}}
{{- $names := list }}
{{- range (include "groupbinder.allowedRoles" . | fromJsonArray) }}
{{- if not (contains "/" .) }}{{ $names = append $names . }}{{ end }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* The allowed Roles by namespace, as a JSON object: {"kasten-io": ["k10-ns-admin"]}. */}}
{{- define "groupbinder.allowedRolesByNamespace" -}}
{{- $byNamespace := dict }}
{{- range (include "groupbinder.allowedRoles" . | fromJsonArray) }}
{{- if contains "/" . }}
{{- $parts := splitList "/" . }}
{{- $namespace := index $parts 0 }}
{{- $_ := set $byNamespace $namespace (append (default (list) (get $byNamespace $namespace)) (index $parts 1)) }}
{{- end }}
{{- end }}
{{- toJson $byNamespace }}
{{- end }}

{{/* The operator's user name, as the API server sees its ServiceAccount token. */}}
{{- define "groupbinder.userName" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "groupbinder.serviceAccountName" . }}
{{- end }}

{{- define "groupbinder.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ else }}false{{ end }}
{{- end }}

{{/* Whether the operator asks Entra ID with AKS workload identity ("true" or ""). Fails on
settings that cannot work: a tenant without a credential, or both credentials. */}}
{{- define "groupbinder.entraWorkloadIdentity" -}}
{{- $e := .Values.entra -}}
{{- if $e.tenantId -}}
{{- if and $e.workloadIdentity $e.clientSecret.secretName -}}
{{- fail "entra: set workloadIdentity: false to use entra.clientSecret, or leave clientSecret.secretName empty" -}}
{{- end -}}
{{- if not (or $e.workloadIdentity $e.clientSecret.secretName) -}}
{{- fail "entra.tenantId needs a credential: entra.workloadIdentity, or entra.clientSecret.secretName" -}}
{{- end -}}
{{- if and $e.workloadIdentity (not $e.clientId) -}}
{{- fail "entra.workloadIdentity needs entra.clientId (the ServiceAccount's azure.workload.identity/client-id)" -}}
{{- end -}}
{{- if $e.workloadIdentity }}true{{ end -}}
{{- end -}}
{{- end }}
