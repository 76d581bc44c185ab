// Package ecsfake is a protocol-level fake of Amazon ECS for tests: an
// httptest server on 127.0.0.1 that speaks the ECS control-plane API as the
// real aws-sdk-go-v2 ECS client sends and reads it, and an ECS service
// scheduler that runs each "task" as a local process. It is not test-only
// code (the e2e tests and the ECS target's tests import it), but nothing
// outside tests uses it: it models ECS closely enough to exercise ebb's ECS
// target and its workers, and no further.
//
// # What it models
//
// The control plane, at POST / with X-Amz-Target
// AmazonEC2ContainerServiceV20141113.<Op> and Content-Type
// application/x-amz-json-1.1, JSON bodies with the SDK's member names and
// timestamps as epoch seconds (JSON numbers), errors as HTTP 400
// {"__type":"<Code>","message":"…"}:
//
//   - DescribeServices (1–10 services by name or ARN; unknown ones are
//     failures with reason MISSING, as in ECS),
//   - UpdateService (desiredCount only; anything else in the request is
//     refused with InvalidParameterException naming the unmodelled field),
//   - ListTasks (cluster, serviceName, desiredStatus with RUNNING as the
//     default, family, startedBy, launchType; maxResults 1–100, default 100;
//     paginated with an opaque nextToken),
//   - DescribeTasks (1–100 tasks by id or ARN; unknown ones are failures
//     with reason MISSING),
//   - GetTaskProtection (up to 100 tasks), UpdateTaskProtection (up to 10
//     tasks; expiresInMinutes 1–2880, 120 when absent).
//
// The clusters are those the configured services name. Unknown clusters
// answer ClusterNotFoundException, unknown services (where
// ECS does so) ServiceNotFoundException, bad parameters
// InvalidParameterException, other operations UnknownOperationException. A
// request must carry a SigV4 Authorization header scoped to the fake's
// region and the service "ecs" (MissingAuthenticationTokenException,
// InvalidSignatureException otherwise); the signature itself is not checked.
//
// Each task's process sees what a Fargate task sees of the platform:
// ECS_CONTAINER_METADATA_URI_V4=<URL>/v4/<task id>, whose /task and / answer
// like the task metadata endpoint v4 (task and container metadata; Cluster
// is the cluster ARN, as on Fargate), ECS_AGENT_URI=<URL>/api/<task id>,
// whose /task-protection/v1/state answers GET and PUT
// {"ProtectionEnabled":…,"ExpiresInMinutes":…} as the ECS agent does
// ({"protection":{…}}, {"failure":{…}}, {"error":{…}}), and
// AWS_EXECUTION_ENV=AWS_ECS_FARGATE. It gets no region, credentials or
// other AWS_* variables, so nothing in it can reach out to real AWS by
// accident.
//
// The scheduler (one loop, every Config.Interval and at once after an
// UpdateService or a task's exit) keeps each service at its desired count,
// as a REPLICA service does:
//
//   - While fewer tasks are wanted RUNNING than desiredCount, it starts new
//     ones: a 32-hex-digit id, ARN
//     arn:aws:ecs:<region>:<account>:task/<cluster>/<id>, lastStatus
//     PROVISIONING, then (after ServiceConfig.StartDelay, by default at once)
//     the process is started and the task is RUNNING. A task whose process
//     exits by itself is STOPPED (stopCode EssentialContainerExited) and, the
//     desired count being unchanged, replaced, at once and without ECS's
//     launch back-off. A Command that cannot start gives a STOPPED task with
//     stopCode TaskFailedToStart, and is retried on the next pass.
//   - While more are wanted RUNNING than desiredCount, it picks victims at
//     random among the tasks whose scale-in protection is not in force
//     (protection enabled and not expired), sets their desiredStatus to
//     STOPPED and lastStatus to STOPPING, sends SIGTERM to the process group
//     and SIGKILL after ServiceConfig.StopTimeout, and records STOPPED when
//     the process has exited. While every candidate is protected it stops
//     none and retries on the next pass, as ECS does. Protection that expires
//     is reset to disabled, as ECS does.
//   - Every stop is recorded as an Event (why, when, whether the task was
//     protected, and — through Config.BusyAtStop — whether its worker held a
//     task at that moment, plus how the process ended).
//
// Faults can be injected at run time: throttling of control-plane calls per
// operation (the next N, every Nth, or a random fraction, answered with HTTP
// 400 ThrottlingException "Rate exceeded", which the SDK classifies as a
// throttle and retries); failing agent protection PUTs (HTTP 500
// ServerException, or HTTP 400 ThrottlingException as the agent relays an
// ECS throttle) for the next N calls or while set; and an agent and
// UpdateTaskProtection that accept requests enabling protection and then
// ignore them, to show what scale-in does to busy tasks without protection.
//
// # What it does not model
//
//   - Task definitions and revisions: each service runs one fixed task
//     definition (<family>:1) whose "container" is ServiceConfig.Command with
//     ServiceConfig.Env; a task has exactly one (essential) container;
//     overrides, task roles and secrets do not exist.
//   - Deployments: one PRIMARY deployment per service, rolloutState
//     COMPLETED from the start; no rolling updates, minimumHealthyPercent /
//     maximumPercent, circuit breaker, rollback, forceNewDeployment or task
//     sets. The UpdateTaskProtection failure DEPLOYMENT_BLOCKED is never
//     returned.
//   - Capacity providers and placement: every task is FARGATE and placed at
//     once; no capacity shortage, no Availability Zone balancing (victims are
//     picked at random, not AZ-balanced), no launch throttling of crash-
//     looping services.
//   - Networking: no awsvpc, ENIs, load balancers, service discovery,
//     Service Connect or health checks; the process shares the host's
//     network.
//   - IAM: no authorization, no task role credentials endpoint; SigV4
//     signatures are not verified.
//   - Every other operation (CreateService, RunTask, StopTask, …), service
//     events, tags (include TAGS answers an empty list), container health,
//     ECS Exec, the v3 and stats metadata endpoints, and the eventual
//     consistency of the real API: the fake is strongly consistent, a
//     started task is listed at once.
//   - Stopped tasks stay visible until Config.StoppedTasksKept newer stopped
//     tasks of the same service push them out, not for a period of time.
//   - Protection enabled on a task that was already picked for scale-in is
//     accepted (ECS does not refuse it either) but does not cancel the stop.
//
// Everything the fake runs ends with Close: the loop stops, every task's
// process group gets SIGTERM and, after its StopTimeout, SIGKILL, Close
// waits for them and for its goroutines, then closes the server.
//
// The package runs on Unix systems (process groups and signals); on Linux a
// task also gets SIGKILL if the test process dies (Pdeathsig).
package ecsfake
