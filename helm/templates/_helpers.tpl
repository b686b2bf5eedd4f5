{{/*
Chart name, for the app.kubernetes.io/name label.
*/}}
{{- define "order-system.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: fullnameOverride or the release name, at most 40
characters so that "<prefix>-notification-service" stays a valid 63-character name.
`helm install arch` gives arch-user-service, arch-billing-service, arch-postgresql, ...
*/}}
{{- define "order-system.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/*
Chart label value.
*/}}
{{- define "order-system.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object. Call with (dict "root" $ "component" "user-service").
*/}}
{{- define "order-system.labels" -}}
helm.sh/chart: {{ include "order-system.chart" .root }}
{{ include "order-system.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: {{ include "order-system.name" .root }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: stable across upgrades (never the version or the chart).
Call with (dict "root" $ "component" "user-service").
*/}}
{{- define "order-system.selectorLabels" -}}
app.kubernetes.io/name: {{ include "order-system.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/*
The four services: values key -> what the templates need. `peers` maps each
peer-URL variable the binary reads to the values key of that peer.
*/}}
{{- define "order-system.services" -}}
userService:
  component: user-service
  binary: user-service
  prefix: /users
  docs: /docs/users
  peers:
    BILLING_SERVICE_URL: billingService
billingService:
  component: billing-service
  binary: billing-service
  prefix: /billing
  docs: /docs/billing
  peers:
    USER_SERVICE_URL: userService
orderService:
  component: order-service
  binary: order-service
  prefix: /orders
  docs: /docs/orders
  peers:
    USER_SERVICE_URL: userService
    BILLING_SERVICE_URL: billingService
    NOTIFICATION_SERVICE_URL: notificationService
notificationService:
  component: notification-service
  binary: notification-service
  prefix: /notifications
  docs: /docs/notifications
  peers:
    USER_SERVICE_URL: userService
{{- end }}

{{/*
What the Ingress and the HTTPRoute route on the public host, and nothing else:
each service's public prefix and Swagger UI, and user-service's JWK Set (the key
the other services and clients verify tokens with). Never /internal/...,
/health/... or /metrics. Prefix matches whole path segments in both APIs.
*/}}
{{- define "order-system.publicRoutes" -}}
{{- $services := include "order-system.services" . | fromYaml }}
{{- range $key := list "userService" "billingService" "orderService" "notificationService" }}
{{- $svc := index $services $key }}
{{- range $path := list $svc.prefix $svc.docs }}
- path: {{ $path }}
  exact: false
  component: {{ $svc.component }}
{{- end }}
{{- if eq $key "userService" }}
- path: /.well-known/jwks.json
  exact: true
  component: {{ $svc.component }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of a service's objects (Deployment, Service, NetworkPolicy).
Call with (dict "root" $ "component" "user-service").
*/}}
{{- define "order-system.componentName" -}}
{{- printf "%s-%s" (include "order-system.fullname" .root) .component }}
{{- end }}

{{/*
Base URL of a service inside the namespace: its Service's DNS name and port.
*/}}
{{- define "order-system.serviceUrl" -}}
{{- printf "http://%s:%v" (include "order-system.componentName" .) .root.Values.service.port }}
{{- end }}

{{/*
The Secret and its key that hold a service's DATABASE_URL.
Call with (dict "root" $ "key" "userService" "component" "user-service").
*/}}
{{- define "order-system.databaseSecretName" -}}
{{- if .root.Values.postgresql.enabled }}
{{- include "order-system.postgresqlSecretName" .root }}
{{- else }}
{{- required "externalDatabase.existingSecret is required when postgresql.enabled is false" .root.Values.externalDatabase.existingSecret }}
{{- end }}
{{- end }}

{{- define "order-system.databaseSecretKey" -}}
{{- if .root.Values.postgresql.enabled }}
{{- printf "%s-database-url" .component }}
{{- else }}
{{- required (printf "externalDatabase.secretKeys.%s is required" .key) (index .root.Values.externalDatabase.secretKeys .key) }}
{{- end }}
{{- end }}

{{/*
The Secret with the PostgreSQL passwords and the services' DATABASE_URLs: the chart's
own (generated) or postgresql.existingSecret.
*/}}
{{- define "order-system.postgresqlSecretName" -}}
{{- default (printf "%s-postgresql" (include "order-system.fullname" .)) .Values.postgresql.existingSecret }}
{{- end }}

{{/*
The Secrets of the identity feature: the token signing key (user-service only) and
the service credential INTERNAL_API_TOKEN (all four), generated or existing.
*/}}
{{- define "order-system.signingKeySecretName" -}}
{{- default (printf "%s-signing-key" (include "order-system.fullname" .)) .Values.auth.signingKey.existingSecret }}
{{- end }}

{{- define "order-system.internalApiTokenSecretName" -}}
{{- default (printf "%s-internal-api-token" (include "order-system.fullname" .)) .Values.auth.internalApiToken.existingSecret }}
{{- end }}

{{/*
SHUTDOWN_DRAIN_MS: how long a pod keeps serving after SIGTERM with readiness 503.
Default: the time the readiness probe needs to see the 503 (periodSeconds x
failureThreshold) plus shutdown.endpointPropagationSeconds for the endpoint change
to reach kube-proxy and the ingress controller. A value set in shutdown.drainMs
must be longer than the probe's part, or pods would close while still in rotation.
*/}}
{{- define "order-system.drainMs" -}}
{{- $r := .Values.probes.readiness }}
{{- $noticeMs := mul (default 10 $r.periodSeconds) (default 3 $r.failureThreshold) 1000 }}
{{- if kindIs "invalid" .Values.shutdown.drainMs }}
{{- add $noticeMs (mul .Values.shutdown.endpointPropagationSeconds 1000) }}
{{- else if le (int64 .Values.shutdown.drainMs) (int64 $noticeMs) }}
{{- fail (printf "shutdown.drainMs=%v must be longer than the readiness probe takes to notice a draining pod (probes.readiness.periodSeconds x failureThreshold = %v ms)" .Values.shutdown.drainMs $noticeMs) }}
{{- else }}
{{- int64 .Values.shutdown.drainMs }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: longer than the drain plus the in-flight bound
(SHUTDOWN_TIMEOUT_MS), so the kubelet's SIGKILL never cuts a drain short. Computed
(rounded up, plus 5 s) when null; a value that is not longer fails the render.
*/}}
{{- define "order-system.terminationGracePeriodSeconds" -}}
{{- $neededMs := add (include "order-system.drainMs" . | int64) (int64 .Values.shutdown.timeoutMs) }}
{{- $needed := div (add $neededMs 999) 1000 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $needed 5 }}
{{- else if le (int64 .Values.terminationGracePeriodSeconds) (int64 $needed) }}
{{- fail (printf "terminationGracePeriodSeconds=%v must be longer than the drain plus the in-flight bound (%v ms = SHUTDOWN_DRAIN_MS %v + shutdown.timeoutMs %v)" .Values.terminationGracePeriodSeconds $neededMs (include "order-system.drainMs" .) .Values.shutdown.timeoutMs) }}
{{- else }}
{{- int64 .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Environment variable holding a service role's password in the PostgreSQL pod.
*/}}
{{- define "order-system.passwordEnv" -}}
{{- printf "%s_DB_PASSWORD" (.component | upper | replace "-" "_") }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "order-system.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "order-system.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The services' image.
*/}}
{{- define "order-system.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Address the helm test pod uses for the ingress host: tests.ingressIP, else the
ClusterIP of the ingress controller's Service (looked up at install/upgrade;
empty when rendered offline).
*/}}
{{- define "order-system.testIngressIP" -}}
{{- if .Values.tests.ingressIP }}
{{- .Values.tests.ingressIP }}
{{- else }}
{{- $svc := lookup "v1" "Service" .Values.tests.ingressControllerService.namespace .Values.tests.ingressControllerService.name }}
{{- $ip := dig "spec" "clusterIP" "" ($svc | default dict) }}
{{- if and $ip (ne $ip "None") }}{{ $ip }}{{ end }}
{{- end }}
{{- end }}
