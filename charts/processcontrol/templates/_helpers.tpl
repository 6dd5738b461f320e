{{/* The chart's name. */}}
{{- define "processcontrol.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release name, prefixed with the chart name unless it already contains it. */}}
{{- define "processcontrol.fullname" -}}
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

{{/* The operator's ServiceAccount. */}}
{{- define "processcontrol.serviceAccountName" -}}
{{- default (include "processcontrol.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The labels deploy/ sets, then Helm's (the comparison with deploy/ ignores exactly these four). */}}
{{- define "processcontrol.labels" -}}
app.kubernetes.io/name: {{ include "processcontrol.name" . }}
app.kubernetes.io/part-of: processcontrol
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* What selects the operator's pod. */}}
{{- define "processcontrol.selectorLabels" -}}
app.kubernetes.io/name: {{ include "processcontrol.name" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The rules the operator needs wherever it acts on pods, as in deploy/rbac/role.yaml (cluster scope) and
deploy/namespaced/role-kubecf.yaml (per namespace). A test compares both renderings with deploy/.
*/}}
{{- define "processcontrol.namespacedRules" -}}
# Find the target pods and follow them (kopf's pod index and pod event handlers: list, watch, get),
# and label the suspended ones processcontrol.dev/suspended=true (a merge patch of metadata.labels).
# No create, update or delete: the operator never changes a pod's spec.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, patch]
# Send STOP/START to the containerrun sockets and verify the result, by exec into the pods.
# The Python client opens exec as a websocket upgrade, a GET, which servers before 1.35 authorize as
# `get`; from 1.35 on every exec needs `create`, the verb of the POST form.
- apiGroups: [""]
  resources: [pods/exec]
  verbs: [create, get]
# The custom resource: kopf lists and watches it, and patches its finalizer and its progress
# annotations (update: for clients that replace the object instead of patching it).
- apiGroups: [processcontrol.dev]
  resources: [processsuspensions]
  verbs: [get, list, watch, patch, update]
# The status subresource: conditions, per-pod and per-process state, the summary.
- apiGroups: [processcontrol.dev]
  resources: [processsuspensions/status]
  verbs: [get, patch, update]
# The finalizers subresource: clusters with the OwnerReferencesPermissionEnforcement admission plugin
# check it before a finalizer or an owner reference with blockOwnerDeletion is set.
- apiGroups: [processcontrol.dev]
  resources: [processsuspensions/finalizers]
  verbs: [update]
# Events on the ProcessSuspension (suspended, resumed, failed, with the reason): kopf posts core/v1
# events; events.k8s.io is the same resource in its newer API group, for clients that use it.
# list: the kubelet's own reason for a restart loop of a suspended container ("Liveness probe failed: ...").
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch, list]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* kopf: watch the CRDs, to notice when the ProcessSuspension CRD is installed, upgraded or removed. */}}
{{- define "processcontrol.crdRule" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}
