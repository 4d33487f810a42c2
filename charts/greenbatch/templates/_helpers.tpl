{{/* Names and labels shared by the templates. */}}

{{- define "greenbatch.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's prefix: the release name when it already says "greenbatch", else release-chart.
At most 46 characters: the longest name that must be a DNS label (63), the metrics Service, adds 17.
*/}}
{{- define "greenbatch.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 46 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 46 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The operator's Deployment, ClusterRole, bindings and (default) service account. */}}
{{- define "greenbatch.operatorName" -}}
{{- printf "%s-operator" (include "greenbatch.fullname" .) -}}
{{- end -}}

{{/* The runtime's ClusterRole and its per-namespace RoleBindings. */}}
{{- define "greenbatch.runtimeName" -}}
{{- printf "%s-runtime" (include "greenbatch.fullname" .) -}}
{{- end -}}

{{- define "greenbatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "greenbatch.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name an existing service account when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "greenbatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "greenbatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: greenbatch
{{- end -}}

{{/*
Labels of an object: the common ones, then `extra` (a dict of the caller's, e.g. podLabels), then
`fixed` (a dict that must win, e.g. a selector's labels) — each key once.
Call: include "greenbatch.mergedLabels" (dict "ctx" . "extra" .Values.podLabels "fixed" $fixed)
*/}}
{{- define "greenbatch.mergedLabels" -}}
{{- $common := include "greenbatch.labels" .ctx | fromYaml -}}
{{- toYaml (merge (dict) (default (dict) .fixed) (default (dict) .extra) $common) -}}
{{- end -}}

{{- define "greenbatch.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "greenbatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The listen address's host part; an IPv6 address goes in brackets. 0.0.0.0 when the value is
absent (`--reuse-values` from a release before it). */}}
{{- define "greenbatch.bindHost" -}}
{{- $address := ternary .Values.metrics.bindAddress "0.0.0.0" (hasKey .Values.metrics "bindAddress") -}}
{{- if contains ":" $address -}}
{{- printf "[%s]" $address -}}
{{- else -}}
{{- $address -}}
{{- end -}}
{{- end -}}

{{/* An image reference: repository@digest when a digest pins it, else repository:tag. */}}
{{- define "greenbatch.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "greenbatch.operatorImage" -}}
{{- include "greenbatch.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) -}}
{{- end -}}

{{- define "greenbatch.runtimeImage" -}}
{{- include "greenbatch.imageRef" (dict "image" .Values.runtime.image "appVersion" .Chart.AppVersion) -}}
{{- end -}}

{{- define "greenbatch.runtimeVersion" -}}
{{- $v := default (default .Chart.AppVersion .Values.runtime.image.tag) .Values.runtime.version -}}
{{- if gt (len $v) 63 -}}
{{- fail (printf "runtime.version %q is longer than 63 characters (an EnergyProfile's spec.runtimeVersion): set runtime.version to a shorter name of this runtime" $v) -}}
{{- end -}}
{{- $v -}}
{{- end -}}

{{/*
Settings that the schema cannot check on its own (they relate two values); each failure names the
values to change.
*/}}
{{- define "greenbatch.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) -}}
{{- fail (printf "replicaCount is %d with leaderElection.enabled=false: the replicas would reconcile the same services at once; enable leader election or run one replica" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.leaderElection.enabled (ge (int .Values.leaderElection.renewDeadlineSeconds) (int .Values.leaderElection.leaseDurationSeconds)) -}}
{{- fail (printf "leaderElection.renewDeadlineSeconds (%d) must be less than leaderElection.leaseDurationSeconds (%d): a leader must give up before its lease can pass to another" (int .Values.leaderElection.renewDeadlineSeconds) (int .Values.leaderElection.leaseDurationSeconds)) -}}
{{- end -}}
{{- if and .Values.leaderElection.enabled (ge (int .Values.leaderElection.renewIntervalSeconds) (int .Values.leaderElection.renewDeadlineSeconds)) -}}
{{- fail (printf "leaderElection.renewIntervalSeconds (%d) must be less than leaderElection.renewDeadlineSeconds (%d): a leader must get to renew before it gives up" (int .Values.leaderElection.renewIntervalSeconds) (int .Values.leaderElection.renewDeadlineSeconds)) -}}
{{- end -}}
{{- end -}}

{{/*
crds.install and crds.keep, "true" or "false". Read through hasKey: `helm upgrade --reuse-values`
from a release made before these values existed gives no `crds` map at all (and sprig's merge
would turn an explicit false into the default true). Both default to true.
*/}}
{{- define "greenbatch.crdsInstall" -}}
{{- $crds := default (dict) .Values.crds -}}
{{- ternary $crds.install true (hasKey $crds "install") | toString -}}
{{- end -}}

{{- define "greenbatch.crdsKeep" -}}
{{- $crds := default (dict) .Values.crds -}}
{{- ternary $crds.keep true (hasKey $crds "keep") | toString -}}
{{- end -}}

{{/* `"--<flag>=<value>"` for a value that is a number or a word ("never", "unlimited"); nothing
when the value is absent (`helm upgrade --reuse-values` from a release before it): the binary's
default, the same as this chart's, holds. */}}
{{- define "greenbatch.optionalFlag" -}}
{{- if kindIs "string" .value -}}
{{- printf "--%s=%s" .flag .value | quote -}}
{{- else if not (kindIs "invalid" .value) -}}
{{- printf "--%s=%d" .flag (.value | int64) | quote -}}
{{- end -}}
{{- end -}}

{{/* "true" when unused EnergyProfiles are pruned (the operator then may delete them). */}}
{{- define "greenbatch.prunesProfiles" -}}
{{- ne (toString (.Values.controller.unusedProfileTtlSeconds | default "never")) "never" | toString -}}
{{- end -}}
