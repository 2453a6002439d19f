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

{{/* A container's environment: .root, and .extra (a list of {name, value}) for the stage. How
     progress is logged (logs). The first store access is retried (store.firstContactAttempts) and
     gcsfs's credential mode is pinned (store.gcsToken): unset, hundreds of pods starting together
     can fall back to anonymous access before the metadata server answers. Then the store's own
     variables and an optional secret. */}}
{{- define "inverse-tracr.env" -}}
{{- $env := list (dict "name" "INVERSE_TRACR_LOG_EVERY_SECONDS" "value" (toString .root.Values.logs.everySeconds)) }}
{{- $env = append $env (dict "name" "INVERSE_TRACR_LOG_FORMAT" "value" .root.Values.logs.format) }}
{{- $env = append $env (dict "name" "INVERSE_TRACR_STORE_ATTEMPTS" "value" (toString .root.Values.store.firstContactAttempts)) }}
{{- with .root.Values.store.gcsToken }}
{{- $env = append $env (dict "name" "FSSPEC_GS_TOKEN" "value" .) }}
{{- end }}
{{- $env = concat $env (.extra | default list) .root.Values.store.env }}
{{- with $env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.store.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ . }}
{{- end }}
{{- end -}}

{{/* A stage's requests and limits (.name, .resources), refused unless memory requests equal limits:
     a pod using more memory than it requested is the first evicted when its node runs short. */}}
{{- define "inverse-tracr.resources" -}}
{{- if ne (toString .resources.requests.memory) (toString .resources.limits.memory) }}
{{- fail (printf "resources.%s: requests.memory (%v) must equal limits.memory (%v)" .name .resources.requests.memory .resources.limits.memory) }}
{{- end }}
{{- toYaml .resources }}
{{- end -}}

{{/* A Kubernetes memory quantity in MiB (rounded down). */}}
{{- define "inverse-tracr.mebibytes" -}}
{{- $q := toString . }}
{{- $units := list (list "Ki" 0.0009765625) (list "Mi" 1.0) (list "Gi" 1024.0) (list "Ti" 1048576.0)
      (list "k" 0.00095367431640625) (list "M" 0.95367431640625) (list "G" 953.67431640625) (list "T" 953674.31640625) }}
{{- $mib := divf (float64 $q) 1048576.0 }}
{{- range $units }}
{{- if hasSuffix (index . 0) $q }}{{ $mib = mulf (float64 (trimSuffix (index . 0) $q)) (index . 1) }}{{ end }}
{{- end }}
{{- floor $mib | int }}
{{- end -}}

{{/* --memory-limit-mb of each worker process: (.resources' memory limit - memoryReserveMi) / .workers. */}}
{{- define "inverse-tracr.workerMemoryMb" -}}
{{- $limit := include "inverse-tracr.mebibytes" .resources.limits.memory | int }}
{{- $each := div (sub $limit (int .root.Values.memoryReserveMi)) (int .workers) }}
{{- if lt $each 512 }}
{{- fail (printf "resources.%s.limits.memory (%v) leaves %d MiB per worker after memoryReserveMi: give the pod more memory or fewer workers" .name .resources.limits.memory $each) }}
{{- end }}
{{- $each }}
{{- end -}}

{{- define "inverse-tracr.image" -}}
{{ printf "%s:%s" .repository .tag }}
{{- end -}}

{{/* Argo retry on failure or preemption, with exponential backoff: .root, .limit. The wait between
     attempts is capped (backoff.cap); no maxDuration, which Argo counts from the first attempt's start. */}}
{{- define "inverse-tracr.retryStrategy" -}}
{{- $retries := .root.Values.retries -}}
retryStrategy:
  limit: {{ .limit | quote }}
  retryPolicy: Always
  backoff:
    duration: {{ $retries.backoff.duration | quote }}
    factor: {{ $retries.backoff.factor | quote }}
    cap: {{ $retries.backoff.cap | quote }}
  {{- if $retries.otherNode }}
  affinity:
    nodeAntiAffinity: {}
  {{- end }}
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
    - name: random-tables
      value: {{ .Values.zoo.randomTables | quote }}
    - name: kinds
      value: {{ .Values.zoo.kinds | toJson | quote }}
    - name: run
      value: {{ .Values.training.run | quote }}
    - name: steps
      value: {{ .Values.training.steps | quote }}
    - name: transfer-steps
      value: {{ .Values.training.transferSteps | quote }}
    - name: split
      value: {{ .Values.evaluation.split | quote }}
{{- end -}}

{{/* Scheduling of a pod: .root and .pool: "cpu", "gpu", or "control" (the steps that create and
     watch the training Job: CPU nodes, and a priority class that outlasts preemptible pods). */}}
{{- define "inverse-tracr.scheduling" -}}
{{- $nodes := ternary "cpu" .pool (eq .pool "control") -}}
{{- with index .root.Values.nodeSelector $nodes }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with index .root.Values.tolerations $nodes }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if and (eq .pool "cpu") .root.Values.priorityClassName }}
priorityClassName: {{ .root.Values.priorityClassName }}
{{- else if and (eq .pool "control") .root.Values.controlPriorityClassName }}
priorityClassName: {{ .root.Values.controlPriorityClassName }}
{{- end }}
{{- end -}}

{{/* One CLI step: .root, .component, .pool, .image, .resources (the name of its block in the
     values' resources), .deadline, .args (a list), optional .extraLabels and .env (a list of {name, value}). */}}
{{- define "inverse-tracr.cliTemplate" -}}
{{- $resources := index .root.Values.resources .resources -}}
metadata:
  labels:
    {{- include "inverse-tracr.podLabels" . | nindent 4 }}
    {{- with .extraLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{ include "inverse-tracr.retryStrategy" (dict "root" .root "limit" .root.Values.retries.limit) }}
activeDeadlineSeconds: {{ .deadline }}
{{- include "inverse-tracr.scheduling" . }}
container:
  image: {{ include "inverse-tracr.image" .image }}
  imagePullPolicy: {{ .root.Values.images.pullPolicy }}
  command: [inverse-tracr]
  args:
    {{- toYaml .args | nindent 4 }}
  {{- include "inverse-tracr.env" (dict "root" .root "extra" .env) | trim | nindent 2 }}
  resources:
    {{- include "inverse-tracr.resources" (dict "name" .resources "resources" $resources) | nindent 4 }}
  securityContext:
    {{- include "inverse-tracr.containerSecurityContext" .root | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* A Kubernetes CPU quantity in cores ("500m" -> 0.5). */}}
{{- define "inverse-tracr.cores" -}}
{{- $q := toString . }}
{{- if hasSuffix "m" $q }}{{ divf (float64 (trimSuffix "m" $q)) 1000.0 }}{{ else }}{{ float64 $q }}{{ end }}
{{- end -}}
