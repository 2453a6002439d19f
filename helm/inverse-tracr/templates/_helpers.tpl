{{/* Names: "inverse-tracr" for a release called inverse-tracr (what argo/ manifests reference). */}}
{{- define "inverse-tracr.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{ else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}{{ end }}
{{- end -}}

{{- define "inverse-tracr.serviceAccount" -}}
{{ .Values.serviceAccount.name | default (include "inverse-tracr.fullname" .) }}
{{- end -}}

{{/* Labels of every object; pods add component (stage), zoo and part. */}}
{{- define "inverse-tracr.labels" -}}
app.kubernetes.io/name: inverse-tracr
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Pod labels: $ is the root context, .component the stage. */}}
{{- define "inverse-tracr.podLabels" -}}
app.kubernetes.io/name: inverse-tracr
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
inverse-tracr/zoo: {{ `"{{workflow.parameters.zoo}}"` }}
{{- end -}}

{{/* Non-root, no privilege escalation, read-only root filesystem (a writable /tmp is mounted). */}}
{{- define "inverse-tracr.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "inverse-tracr.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Store access: extra environment and an optional credentials secret. */}}
{{- define "inverse-tracr.storeEnv" -}}
{{- with .Values.store.env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.store.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ . }}
{{- end }}
{{- end -}}

{{- define "inverse-tracr.image" -}}
{{ printf "%s:%s" .repository .tag }}
{{- end -}}

{{/* Argo retry on failure or preemption, with exponential backoff. */}}
{{- define "inverse-tracr.retryStrategy" -}}
retryStrategy:
  limit: {{ .Values.retries.limit | quote }}
  retryPolicy: Always
  backoff:
    duration: {{ .Values.retries.backoff.duration | quote }}
    factor: {{ .Values.retries.backoff.factor | quote }}
    maxDuration: {{ .Values.retries.backoff.maxDuration | quote }}
{{- end -}}

{{/* Workflow-level settings shared by every WorkflowTemplate. */}}
{{- define "inverse-tracr.workflowSpec" -}}
serviceAccountName: {{ include "inverse-tracr.serviceAccount" . }}
parallelism: {{ .Values.parallelism }}
podGC:
  strategy: {{ .Values.podGC }}
ttlStrategy:
  secondsAfterCompletion: {{ .Values.ttlSecondsAfterFinished }}
securityContext:
  {{- include "inverse-tracr.podSecurityContext" . | nindent 2 }}
volumes:
  - name: tmp
    emptyDir: {}
{{- end -}}

{{/* The workflow parameters, defaults from values; every template declares all of them so any
     template can be submitted alone or referenced from the pipeline. */}}
{{- define "inverse-tracr.arguments" -}}
arguments:
  parameters:
    - name: store
      value: {{ .Values.store.url | quote }}
    - name: zoo
      value: {{ .Values.zoo.name | quote }}
    - name: programs
      value: {{ .Values.zoo.programs | quote }}
    - name: shard-size
      value: {{ .Values.zoo.shardSize | quote }}
    - name: pods
      value: {{ .Values.zoo.pods | quote }}
    - name: min-ops
      value: {{ .Values.zoo.minOps | quote }}
    - name: max-ops
      value: {{ .Values.zoo.maxOps | quote }}
    - name: vocab-size
      value: {{ .Values.zoo.vocabSize | quote }}
    - name: max-seq-len
      value: {{ .Values.zoo.maxSeqLen | quote }}
    - name: seed
      value: {{ .Values.zoo.seed | quote }}
    - name: kinds
      value: {{ .Values.zoo.kinds | toJson | quote }}
    - name: run
      value: {{ .Values.training.run | quote }}
    - name: steps
      value: {{ .Values.training.steps | quote }}
    - name: split
      value: {{ .Values.evaluation.split | quote }}
{{- end -}}

{{/* Scheduling of a CPU or GPU pod: .root and .pool ("cpu" or "gpu"). */}}
{{- define "inverse-tracr.scheduling" -}}
{{- with index .root.Values.nodeSelector .pool }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with index .root.Values.tolerations .pool }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if and (eq .pool "cpu") .root.Values.priorityClassName }}
priorityClassName: {{ .root.Values.priorityClassName }}
{{- end }}
{{- end -}}

{{/* One CLI step: .root, .component, .pool, .image, .resources, .deadline, .args (a list). */}}
{{- define "inverse-tracr.cliTemplate" -}}
metadata:
  labels:
    {{- include "inverse-tracr.podLabels" . | nindent 4 }}
    {{- with .extraLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{ include "inverse-tracr.retryStrategy" .root }}
activeDeadlineSeconds: {{ .deadline }}
{{- include "inverse-tracr.scheduling" . }}
container:
  image: {{ include "inverse-tracr.image" .image }}
  imagePullPolicy: {{ .root.Values.images.pullPolicy }}
  command: [inverse-tracr]
  args:
    {{- toYaml .args | nindent 4 }}
  {{- include "inverse-tracr.storeEnv" .root | nindent 2 }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    {{- include "inverse-tracr.containerSecurityContext" .root | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end -}}
