package ecsfake

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// The task-facing endpoints: task metadata v4 and the agent's task
// protection endpoint, addressed by task id as the real ones are by
// container.

// --- Task metadata endpoint v4

type metadataLimits struct {
	CPU    float64 `json:"CPU"`
	Memory int     `json:"Memory"`
}

type metadataNetwork struct {
	NetworkMode   string   `json:"NetworkMode"`
	IPv4Addresses []string `json:"IPv4Addresses"`
}

type metadataContainer struct {
	DockerID      string            `json:"DockerId"`
	Name          string            `json:"Name"`
	DockerName    string            `json:"DockerName"`
	Image         string            `json:"Image"`
	ImageID       string            `json:"ImageID"`
	Labels        map[string]string `json:"Labels"`
	DesiredStatus string            `json:"DesiredStatus"`
	KnownStatus   string            `json:"KnownStatus"`
	ExitCode      *int              `json:"ExitCode,omitempty"`
	Limits        metadataLimits    `json:"Limits"`
	CreatedAt     *time.Time        `json:"CreatedAt,omitempty"`
	StartedAt     *time.Time        `json:"StartedAt,omitempty"`
	FinishedAt    *time.Time        `json:"FinishedAt,omitempty"`
	Type          string            `json:"Type"`
	ContainerARN  string            `json:"ContainerARN"`
	Networks      []metadataNetwork `json:"Networks"`
}

type metadataTask struct {
	Cluster            string              `json:"Cluster"`
	TaskARN            string              `json:"TaskARN"`
	Family             string              `json:"Family"`
	Revision           string              `json:"Revision"`
	ServiceName        string              `json:"ServiceName"`
	DesiredStatus      string              `json:"DesiredStatus"`
	KnownStatus        string              `json:"KnownStatus"`
	Limits             metadataLimits      `json:"Limits"`
	PullStartedAt      *time.Time          `json:"PullStartedAt,omitempty"`
	PullStoppedAt      *time.Time          `json:"PullStoppedAt,omitempty"`
	ExecutionStoppedAt *time.Time          `json:"ExecutionStoppedAt,omitempty"`
	AvailabilityZone   string              `json:"AvailabilityZone"`
	LaunchType         string              `json:"LaunchType"`
	Containers         []metadataContainer `json:"Containers"`
}

func rfc3339(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// knownStatus is the agent's word for a task's or container's state.
func knownStatus(t *task) string {
	switch t.lastStatus {
	case StatusProvisioning, StatusPending:
		return "NONE"
	case StatusStopped:
		return StatusStopped
	}
	return StatusRunning
}

// lookupTask counts the call and finds the task named in the path; when
// there is none it answers with notFound itself.
func (f *Fake) lookupTask(w http.ResponseWriter, r *http.Request, op string, notFound func(http.ResponseWriter, string)) *task {
	id := r.PathValue("id")
	f.mu.Lock()
	f.calls[op]++
	t := f.tasks[id]
	f.mu.Unlock()
	if t == nil {
		notFound(w, id)
	}
	return t
}

// metadataTaskLookup is lookupTask answering 404 as the metadata endpoint does.
func (f *Fake) metadataTaskLookup(w http.ResponseWriter, r *http.Request, op string) *task {
	return f.lookupTask(w, r, op, func(w http.ResponseWriter, id string) {
		writeJSON(w, http.StatusNotFound, "application/json",
			"V4 task metadata handler: unable to get task arn from request: no task for endpoint id "+id)
	})
}

func (f *Fake) serveTaskMetadata(w http.ResponseWriter, r *http.Request) {
	t := f.metadataTaskLookup(w, r, OpMetadataTask)
	if t == nil {
		return
	}
	f.mu.Lock()
	s := t.svc
	out := metadataTask{
		Cluster: s.clusterArn, TaskARN: t.arn, Family: s.cfg.Family, Revision: "1",
		ServiceName: s.cfg.Name, DesiredStatus: t.desiredStatus, KnownStatus: knownStatus(t),
		Limits:        metadataLimits{CPU: 0.25, Memory: 512},
		PullStartedAt: rfc3339(t.createdAt), PullStoppedAt: rfc3339(t.startedAt),
		AvailabilityZone: f.cfg.Region + "a", LaunchType: "FARGATE",
		Containers: []metadataContainer{f.metadataContainer(t)},
	}
	if t.exit != nil {
		out.ExecutionStoppedAt = rfc3339(t.exit.at)
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, "application/json", out)
}

func (f *Fake) serveContainerMetadata(w http.ResponseWriter, r *http.Request) {
	t := f.metadataTaskLookup(w, r, OpMetadataContainer)
	if t == nil {
		return
	}
	f.mu.Lock()
	out := f.metadataContainer(t)
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, "application/json", out)
}

// metadataContainer describes t's one container. f.mu held.
func (f *Fake) metadataContainer(t *task) metadataContainer {
	s := t.svc
	c := metadataContainer{
		DockerID: runtimeID(t), Name: s.cfg.Family, DockerName: s.cfg.Family,
		Image: containerImage(t), ImageID: "sha256:" + t.id + t.id,
		Labels: map[string]string{
			"com.amazonaws.ecs.cluster":                 s.clusterArn,
			"com.amazonaws.ecs.container-name":          s.cfg.Family,
			"com.amazonaws.ecs.task-arn":                t.arn,
			"com.amazonaws.ecs.task-definition-family":  s.cfg.Family,
			"com.amazonaws.ecs.task-definition-version": "1",
		},
		DesiredStatus: t.desiredStatus, KnownStatus: knownStatus(t),
		Limits:    metadataLimits{CPU: 2},
		CreatedAt: rfc3339(t.createdAt), StartedAt: rfc3339(t.startedAt),
		Type: "NORMAL", ContainerARN: f.containerARN(t),
		Networks: []metadataNetwork{{NetworkMode: "awsvpc", IPv4Addresses: []string{"127.0.0.1"}}},
	}
	if t.exit != nil {
		code := t.exit.code
		c.ExitCode = &code
		c.FinishedAt = rfc3339(t.exit.at)
	}
	return c
}

// --- Agent task protection endpoint

type agentProtection struct {
	ExpirationDate    *time.Time
	ProtectionEnabled bool
	TaskArn           string
}

type agentFailure struct {
	Arn    string
	Detail string
	Reason string
}

type agentError struct {
	Arn     string `json:"Arn,omitempty"`
	Code    string
	Message string
}

type agentResponse struct {
	RequestID  string           `json:"requestID,omitempty"`
	Protection *agentProtection `json:"protection,omitempty"`
	Failure    *agentFailure    `json:"failure,omitempty"`
	Error      *agentError      `json:"error,omitempty"`
}

// agentRequest is what the agent decodes; like the agent, the fake refuses
// unknown fields (encoding/json matches names case-insensitively).
type agentRequest struct {
	ProtectionEnabled *bool
	ExpiresInMinutes  *int64
}

func writeAgent(w http.ResponseWriter, status int, resp agentResponse) {
	writeJSON(w, status, "application/json", resp)
}

// agentLookup is lookupTask answering 404 as the agent does.
func (f *Fake) agentLookup(w http.ResponseWriter, r *http.Request, op string) *task {
	return f.lookupTask(w, r, op, func(w http.ResponseWriter, _ string) {
		writeAgent(w, http.StatusNotFound, agentResponse{Error: &agentError{
			Code: "ResourceNotFoundException", Message: "Failed to find a task for the request"}})
	})
}

// agentAnswer is the agent's answer for t's protection state: a failure
// for a stopped task, else the protection. f.mu held.
func agentAnswer(t *task, enabled bool, until time.Time) agentResponse {
	if t.lastStatus == StatusStopped {
		return agentResponse{Failure: &agentFailure{Arn: t.arn, Reason: "TASK_NOT_VALID", Detail: "The task is stopped."}}
	}
	p := &agentProtection{ProtectionEnabled: enabled, TaskArn: t.arn}
	if enabled {
		p.ExpirationDate = rfc3339(until)
	}
	return agentResponse{Protection: p}
}

func (f *Fake) serveAgentGet(w http.ResponseWriter, r *http.Request) {
	t := f.agentLookup(w, r, OpAgentGetProtection)
	if t == nil {
		return
	}
	f.mu.Lock()
	protected := t.isProtected(time.Now())
	resp := agentAnswer(t, protected, t.protectedUntil)
	f.mu.Unlock()
	writeAgent(w, http.StatusOK, resp)
}

func (f *Fake) serveAgentPut(w http.ResponseWriter, r *http.Request) {
	var req agentRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	decodeErr := dec.Decode(&req)
	t := f.agentLookup(w, r, OpAgentPutProtection)
	if t == nil {
		return
	}
	if decodeErr != nil {
		writeAgent(w, http.StatusBadRequest, agentResponse{Error: &agentError{
			Code: "InvalidParameterException", Message: "UpdateTaskProtection: failed to decode request"}})
		return
	}
	if req.ProtectionEnabled == nil {
		writeAgent(w, http.StatusBadRequest, agentResponse{Error: &agentError{Arn: t.arn,
			Code: "InvalidParameterException", Message: "Invalid request: does not contain 'ProtectionEnabled' field"}})
		return
	}

	f.mu.Lock()
	af := &f.agentFault
	failing := af.Mode != 0 && (af.Always || af.Next > 0)
	if failing && !af.Always {
		af.Next--
	}
	mode := af.Mode
	f.mu.Unlock()
	if failing {
		if mode == AgentThrottled {
			writeAgent(w, http.StatusBadRequest, agentResponse{RequestID: newRequestID(), Error: &agentError{
				Arn: t.arn, Code: "ThrottlingException", Message: "Rate exceeded"}})
		} else {
			writeAgent(w, http.StatusInternalServerError, agentResponse{Error: &agentError{
				Arn: t.arn, Code: "ServerException", Message: "ecsfake: injected agent failure"}})
		}
		return
	}

	// The agent passes the request on to UpdateTaskProtection and relays
	// ECS's answer.
	var minutes *int
	if req.ExpiresInMinutes != nil {
		m := int(*req.ExpiresInMinutes)
		minutes = &m
	}
	n, aerr := protectionMinutes(minutes)
	if aerr != nil {
		writeAgent(w, aerr.status, agentResponse{RequestID: newRequestID(), Error: &agentError{
			Arn: t.arn, Code: aerr.code, Message: aerr.message}})
		return
	}
	f.mu.Lock()
	var until time.Time
	if t.lastStatus != StatusStopped {
		until = f.setProtection(t, *req.ProtectionEnabled, n, time.Now())
	}
	resp := agentAnswer(t, *req.ProtectionEnabled, until)
	f.mu.Unlock()
	writeAgent(w, http.StatusOK, resp)
}
