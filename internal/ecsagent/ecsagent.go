// Package ecsagent is the worker's client of the ECS endpoints inside its own
// task: the task metadata endpoint (v4), for the task's ARN, which names the
// worker, and the container agent's task scale-in protection endpoint, which
// keeps the ECS service from stopping a task that may hold work. Client
// implements ebb.ScaleInGuard.
//
// It speaks plain HTTP to the two endpoints the agent injects into every
// container instead of calling the ECS API through the AWS SDK: the agent
// signs the request with the task role itself, and the task needs neither
// credentials nor the cluster name.
package ecsagent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// The variables the ECS agent sets in every container of a task.
const (
	EnvMetadataURI = "ECS_CONTAINER_METADATA_URI_V4"
	EnvAgentURI    = "ECS_AGENT_URI"
)

// Protection timing defaults. The expiry is short so that a worker that dies
// without releasing its protection (SIGKILL, OOM, a lost node) does not keep
// its task, and with it the service's deployments and scale-in, blocked for
// the two hours ECS would otherwise apply; a living worker renews it long
// before it lapses, with four renewals' worth of slack for a failing agent
// or throttled API. One call every two minutes per task is far under the
// agent's and the ECS API's rate limits, and the worker calls only on this
// timer (and its capped retries), never per task.
const (
	ExpiryDefault     = 10 * time.Minute
	RenewEveryDefault = 2 * time.Minute
	// ExpiryMax is the longest protection ECS grants in one call (48 hours).
	ExpiryMax = 48 * time.Hour
)

// Timeouts of one call. Both endpoints are served by the agent on the
// task's host, so an answer takes milliseconds; anything slower is a fault
// the worker's own retry loop handles better than a long wait here.
const (
	connectTimeout = 2 * time.Second
	callTimeout    = 5 * time.Second
	// maxAnswer bounds what is read of an answer: the ones that matter are
	// a few hundred bytes.
	maxAnswer = 64 << 10
)

// FromEnv returns the two endpoints from the environment; ok is false unless
// both are set, which is how a process knows it runs in an ECS task.
func FromEnv(getenv func(string) string) (metadataURI, agentURI string, ok bool) {
	metadataURI = strings.TrimSpace(getenv(EnvMetadataURI))
	agentURI = strings.TrimSpace(getenv(EnvAgentURI))
	return metadataURI, agentURI, metadataURI != "" && agentURI != ""
}

// Config configures a Client.
type Config struct {
	// MetadataURI is $ECS_CONTAINER_METADATA_URI_V4; AgentURI is
	// $ECS_AGENT_URI. Both are required.
	MetadataURI string
	AgentURI    string
	// Expiry is how long one Protect keeps the task protected, rounded up to
	// whole minutes; zero is ExpiryDefault. At most ExpiryMax.
	Expiry time.Duration
	// RenewEvery is how often the worker renews protection; zero is
	// RenewEveryDefault. It must be shorter than Expiry.
	RenewEvery time.Duration
	// HTTPClient replaces the default client (bounded timeouts, no proxy).
	HTTPClient *http.Client
}

// Client talks to the task's metadata and agent endpoints.
type Client struct {
	metadataURI, agentURI string
	minutes               int
	renew                 time.Duration
	http                  *http.Client
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.MetadataURI == "" || cfg.AgentURI == "" {
		return nil, fmt.Errorf("ecsagent: need both endpoints (%s and %s)", EnvMetadataURI, EnvAgentURI)
	}
	if cfg.Expiry == 0 {
		cfg.Expiry = ExpiryDefault
	}
	if cfg.RenewEvery == 0 {
		cfg.RenewEvery = RenewEveryDefault
	}
	if cfg.Expiry < 0 || cfg.Expiry > ExpiryMax {
		return nil, fmt.Errorf("ecsagent: protection expiry %s: ECS accepts 1 minute to %s", cfg.Expiry, ExpiryMax)
	}
	minutes := int((cfg.Expiry + time.Minute - 1) / time.Minute)
	if cfg.RenewEvery < 0 || cfg.RenewEvery >= time.Duration(minutes)*time.Minute {
		return nil, fmt.Errorf("ecsagent: protection renewal every %s must be positive and shorter than the expiry, %dm (a fifth of it is a good choice)",
			cfg.RenewEvery, minutes)
	}
	c := &Client{metadataURI: strings.TrimRight(cfg.MetadataURI, "/"), agentURI: strings.TrimRight(cfg.AgentURI, "/"),
		minutes: minutes, renew: cfg.RenewEvery, http: cfg.HTTPClient}
	if c.http == nil {
		c.http = &http.Client{
			Timeout: callTimeout,
			Transport: &http.Transport{
				// The endpoints are link-local to the task: a proxy from
				// HTTP_PROXY could not reach them.
				Proxy:                 nil,
				DialContext:           (&net.Dialer{Timeout: connectTimeout}).DialContext,
				ResponseHeaderTimeout: callTimeout,
				// One call every couple of minutes gains nothing from a kept
				// connection, and an idle one would outlive the worker.
				DisableKeepAlives: true,
			},
		}
	}
	return c, nil
}

// RenewEvery implements ebb.ScaleInGuard.
func (c *Client) RenewEvery() time.Duration { return c.renew }

// ExpiresInMinutes is the protection each Protect asks for.
func (c *Client) ExpiresInMinutes() int { return c.minutes }

// TaskARN asks the metadata endpoint for the task's ARN.
func (c *Client) TaskARN(ctx context.Context) (string, error) {
	var task struct {
		TaskARN string `json:"TaskARN"`
	}
	status, body, err := c.do(ctx, http.MethodGet, c.metadataURI+"/task", nil)
	if err != nil {
		return "", fmt.Errorf("ecsagent: task metadata: %w", err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("ecsagent: task metadata: HTTP %d: %s", status, snippet(body))
	}
	if err := json.Unmarshal(body, &task); err != nil || task.TaskARN == "" {
		return "", fmt.Errorf("ecsagent: task metadata has no TaskARN: %s", snippet(body))
	}
	return task.TaskARN, nil
}

// TaskID is the last path segment of a task ARN: the id in
// arn:aws:ecs:region:account:task/cluster/id (and in the older
// arn:aws:ecs:region:account:task/id).
func TaskID(arn string) (string, error) {
	_, resource, ok := strings.Cut(arn, ":task/")
	if !strings.HasPrefix(arn, "arn:") || !ok {
		return "", fmt.Errorf("ecsagent: %q is not a task ARN", arn)
	}
	id := resource[strings.LastIndexByte(resource, '/')+1:]
	if id == "" {
		return "", fmt.Errorf("ecsagent: task ARN %q ends without an id", arn)
	}
	return id, nil
}

// Protect turns the task's scale-in protection on for ExpiresInMinutes, or
// extends it by as much from now. It implements ebb.ScaleInGuard.
func (c *Client) Protect(ctx context.Context) error {
	return c.setProtection(ctx, true)
}

// Release turns the task's scale-in protection off. It implements
// ebb.ScaleInGuard.
func (c *Client) Release(ctx context.Context) error {
	return c.setProtection(ctx, false)
}

// Error is an answer of the agent that refuses the change: an error (Code
// set: ThrottlingException, AccessDeniedException, ServerException, …) or a
// failure of the ECS API (Reason set: TASK_NOT_VALID for a task outside a
// service, …).
type Error struct {
	Enable  bool // what was asked
	Status  int  // the HTTP status
	Code    string
	Reason  string
	Message string
	Arn     string
}

func (e *Error) Error() string {
	var what string
	switch {
	case e.Code != "" && e.Message != "":
		what = e.Code + ": " + e.Message
	case e.Code != "":
		what = e.Code
	case e.Reason != "":
		what = "failure: " + e.Reason
	default:
		what = e.Message
	}
	return fmt.Sprintf("ecsagent: %s task scale-in protection: %s (HTTP %d)", opName(e.Enable), what, e.Status)
}

func opName(enable bool) string {
	if enable {
		return "enable"
	}
	return "release"
}

type protectionAnswer struct {
	Protection *struct {
		ExpirationDate    *time.Time `json:"ExpirationDate"`
		ProtectionEnabled bool       `json:"ProtectionEnabled"`
		TaskArn           string     `json:"TaskArn"`
	} `json:"protection"`
	Failure *struct {
		Arn    string `json:"Arn"`
		Reason string `json:"Reason"`
		Detail string `json:"Detail"`
	} `json:"failure"`
	Error *struct {
		Arn     string `json:"Arn"`
		Code    string `json:"Code"`
		Message string `json:"Message"`
	} `json:"error"`
}

func (c *Client) setProtection(ctx context.Context, enable bool) error {
	req := struct {
		ProtectionEnabled bool
		ExpiresInMinutes  int `json:",omitempty"`
	}{ProtectionEnabled: enable}
	if enable {
		req.ExpiresInMinutes = c.minutes
	}
	body, _ := json.Marshal(req)
	status, answer, err := c.do(ctx, http.MethodPut, c.agentURI+"/task-protection/v1/state", body)
	if err != nil {
		return fmt.Errorf("ecsagent: %s task scale-in protection: %w", opName(enable), err)
	}
	var a protectionAnswer
	decodeErr := json.Unmarshal(answer, &a)
	switch {
	case decodeErr == nil && a.Error != nil:
		return &Error{Enable: enable, Status: status, Code: a.Error.Code, Message: a.Error.Message, Arn: a.Error.Arn}
	case decodeErr == nil && a.Failure != nil:
		reason := a.Failure.Reason
		if a.Failure.Detail != "" {
			reason += " (" + a.Failure.Detail + ")"
		}
		return &Error{Enable: enable, Status: status, Reason: reason, Arn: a.Failure.Arn}
	case decodeErr == nil && status == http.StatusOK && a.Protection != nil && a.Protection.ProtectionEnabled == enable:
		return nil
	case decodeErr == nil && status == http.StatusOK && a.Protection != nil:
		return &Error{Enable: enable, Status: status, Message: fmt.Sprintf("the agent answered ProtectionEnabled=%t", a.Protection.ProtectionEnabled)}
	}
	return &Error{Enable: enable, Status: status, Message: "unexpected answer: " + snippet(answer)}
}

// do makes one call; the whole call, body included, ends within callTimeout
// whatever ctx allows.
func (c *Client) do(ctx context.Context, method, url string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return res.StatusCode, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return res.StatusCode, answer, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty)"
	}
	return s
}
