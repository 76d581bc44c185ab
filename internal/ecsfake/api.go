package ecsfake

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	targetPrefix    = "AmazonEC2ContainerServiceV20141113."
	jsonContentType = "application/x-amz-json-1.1"
	maxBody         = 1 << 20
)

// Limits of the operations, as ECS has them.
const (
	maxDescribeServices     = 10
	maxDescribeTasks        = 100
	maxListTasks            = 100
	maxGetTaskProtection    = 100
	maxUpdateTaskProtection = 10
)

// apiError is an error answer of the control plane.
type apiError struct {
	status  int
	code    string
	message string
}

func invalidParameter(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "InvalidParameterException", fmt.Sprintf(format, args...)}
}

var (
	errClusterNotFound = &apiError{http.StatusBadRequest, "ClusterNotFoundException", "Cluster not found."}
	errServiceNotFound = &apiError{http.StatusBadRequest, "ServiceNotFoundException", "Service not found."}
	errThrottled       = &apiError{http.StatusBadRequest, "ThrottlingException", "Rate exceeded"}
)

func (f *Fake) serveAPI(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, targetPrefix)
	if !ok {
		writeAPIError(w, &apiError{http.StatusBadRequest, "UnknownOperationException",
			fmt.Sprintf("ecsfake: X-Amz-Target %q is not an ECS operation", target)})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		writeAPIError(w, &apiError{http.StatusBadRequest, "SerializationException", err.Error()})
		return
	}
	if aerr := f.checkRequest(r); aerr != nil {
		f.mu.Lock()
		f.calls[op]++
		f.mu.Unlock()
		writeAPIError(w, aerr)
		return
	}

	f.mu.Lock()
	f.calls[op]++
	throttle := f.shouldThrottle(op)
	if throttle {
		f.throttled[op]++
	}
	f.mu.Unlock()
	if throttle {
		writeAPIError(w, errThrottled)
		return
	}

	var out any
	var aerr *apiError
	switch op {
	case OpDescribeServices:
		out, aerr = f.describeServices(body)
	case OpUpdateService:
		out, aerr = f.updateService(body)
	case OpListTasks:
		out, aerr = f.listTasks(body)
	case OpDescribeTasks:
		out, aerr = f.describeTasks(body)
	case OpGetTaskProtection:
		out, aerr = f.getTaskProtection(body)
	case OpUpdateTaskProtection:
		out, aerr = f.updateTaskProtection(body)
	default:
		aerr = &apiError{http.StatusBadRequest, "UnknownOperationException",
			fmt.Sprintf("ecsfake: operation %s is not modelled", op)}
	}
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, jsonContentType, out)
}

// checkRequest checks what the SDK must send: the content type and a SigV4
// authorization scoped to the fake's region and to "ecs". The signature
// itself is not verified.
func (f *Fake) checkRequest(r *http.Request) *apiError {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, jsonContentType) {
		return &apiError{http.StatusBadRequest, "SerializationException",
			fmt.Sprintf("ecsfake: Content-Type %q, want %s", ct, jsonContentType)}
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return &apiError{http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token"}
	}
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") || !ok {
		return &apiError{http.StatusBadRequest, "IncompleteSignatureException", "ecsfake: not a SigV4 Authorization header"}
	}
	cred, _, _ = strings.Cut(cred, ",")
	scope := strings.Split(cred, "/") // key id, date, region, service, aws4_request
	switch {
	case len(scope) != 5 || scope[4] != "aws4_request":
		return &apiError{http.StatusBadRequest, "IncompleteSignatureException", "ecsfake: malformed credential scope " + cred}
	case scope[2] != f.cfg.Region:
		return &apiError{http.StatusBadRequest, "InvalidSignatureException",
			fmt.Sprintf("Credential should be scoped to a valid region, not %q (ecsfake serves %s).", scope[2], f.cfg.Region)}
	case scope[3] != "ecs":
		return &apiError{http.StatusBadRequest, "InvalidSignatureException",
			fmt.Sprintf("Credential should be scoped to correct service: 'ecs', not %q.", scope[3])}
	}
	return nil
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, jsonContentType, map[string]string{"__type": e.code, "message": e.message})
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"__type":"ServerException","message":"ecsfake: ` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-Requestid", newRequestID())
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decode reads a request, refusing members the fake does not model.
func decode(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidParameter("ecsfake: %v (members the fake does not model are refused)", err)
	}
	return nil
}

// decodeBatch decodes a request that names things in batch: refs (the
// member called what, pointing into v) must hold 1 to max entries.
func decodeBatch(body []byte, v any, what string, refs *[]string, max int) *apiError {
	if e := decode(body, v); e != nil {
		return e
	}
	switch {
	case len(*refs) == 0:
		return invalidParameter("%s cannot be empty.", what)
	case len(*refs) > max:
		return invalidParameter("%s cannot have more than %d entries.", what, max)
	}
	return nil
}

// eachRef resolves the cluster and calls fn for each of refs, all with
// f.mu held.
func (f *Fake) eachRef(clusterRef *string, refs []string, fn func(cluster, ref string)) *apiError {
	f.mu.Lock()
	defer f.mu.Unlock()
	cluster, e := f.cluster(clusterRef)
	if e != nil {
		return e
	}
	for _, ref := range refs {
		fn(cluster, ref)
	}
	return nil
}

// cluster resolves a cluster reference (short name or ARN; the default
// cluster when empty) to its short name. f.mu held.
func (f *Fake) cluster(ref *string) (string, *apiError) {
	name := DefaultCluster
	if ref != nil && *ref != "" {
		name = *ref
		if strings.HasPrefix(name, "arn:") {
			rest, ok := strings.CutPrefix(name, f.arn("cluster/"))
			if !ok {
				return "", errClusterNotFound
			}
			name = rest
		}
	}
	for _, s := range f.serviceOrder {
		if s.cfg.Cluster == name {
			return name, nil
		}
	}
	return "", errClusterNotFound
}

// service resolves a service reference (name or ARN, in either ARN format)
// within a cluster; nil when there is none. f.mu held.
func (f *Fake) service(cluster, ref string) *service {
	name := ref
	if strings.HasPrefix(ref, "arn:") {
		rest, ok := strings.CutPrefix(ref, f.arn("service/"))
		if !ok {
			return nil
		}
		if c, n, ok := strings.Cut(rest, "/"); ok {
			if c != cluster {
				return nil
			}
			rest = n
		}
		name = rest
	}
	s := f.services[name]
	if s == nil || s.cfg.Cluster != cluster {
		return nil
	}
	return s
}

// task resolves a task reference (id or ARN) within a cluster; nil when
// there is none. f.mu held.
func (f *Fake) task(cluster, ref string) *task {
	id := ref
	if strings.HasPrefix(ref, "arn:") {
		rest, ok := strings.CutPrefix(ref, f.arn("task/"))
		if !ok {
			return nil
		}
		c, n, ok := strings.Cut(rest, "/")
		if !ok || c != cluster {
			return nil
		}
		id = n
	}
	t := f.tasks[id]
	if t == nil || t.svc.cfg.Cluster != cluster {
		return nil
	}
	return t
}

func (f *Fake) taskRefARN(cluster, ref string) string {
	if strings.HasPrefix(ref, "arn:") {
		return ref
	}
	return f.arn("task/" + cluster + "/" + ref)
}

func checkInclude(include []string, allowed string) *apiError {
	for _, v := range include {
		if v != allowed {
			return invalidParameter("include: %q is not a valid value (%s)", v, allowed)
		}
	}
	return nil
}

type failureJSON struct {
	Arn    string `json:"arn,omitempty"`
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// --- DescribeServices

type describeServicesIn struct {
	Cluster  *string  `json:"cluster"`
	Services []string `json:"services"`
	Include  []string `json:"include"`
}

type describeServicesOut struct {
	Services []serviceJSON `json:"services"`
	Failures []failureJSON `json:"failures"`
}

func (f *Fake) describeServices(body []byte) (any, *apiError) {
	var in describeServicesIn
	if e := decodeBatch(body, &in, "Services", &in.Services, maxDescribeServices); e != nil {
		return nil, e
	}
	services, failures, e := describe(f, in.Cluster, in.Services, in.Include, f.service, f.serviceRefARN, f.serviceJSON)
	if e != nil {
		return nil, e
	}
	return describeServicesOut{Services: services, Failures: failures}, nil
}

func (f *Fake) serviceRefARN(cluster, ref string) string {
	if strings.HasPrefix(ref, "arn:") {
		return ref
	}
	return f.arn("service/" + cluster + "/" + ref)
}

// describe answers a Describe operation once its request is decoded: each
// of refs that find resolves is described (with tags when include asks for
// them), the others are MISSING failures named by missingARN. find,
// missingARN and describeOne are called with f.mu held.
func describe[T, J any](f *Fake, cluster *string, refs, include []string,
	find func(cluster, ref string) *T, missingARN func(cluster, ref string) string,
	describeOne func(v *T, tags bool) J,
) ([]J, []failureJSON, *apiError) {
	if e := checkInclude(include, "TAGS"); e != nil {
		return nil, nil, e
	}
	items, failures := []J{}, []failureJSON{}
	if e := f.eachRef(cluster, refs, func(cluster, ref string) {
		v := find(cluster, ref)
		if v == nil {
			failures = append(failures, failureJSON{Arn: missingARN(cluster, ref), Reason: "MISSING"})
			return
		}
		items = append(items, describeOne(v, len(include) > 0))
	}); e != nil {
		return nil, nil, e
	}
	return items, failures, nil
}

// --- UpdateService

type updateServiceIn struct {
	Cluster      *string `json:"cluster"`
	Service      *string `json:"service"`
	DesiredCount *int    `json:"desiredCount"`
}

func (f *Fake) updateService(body []byte) (any, *apiError) {
	var in updateServiceIn
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if in.Service == nil || *in.Service == "" {
		return nil, invalidParameter("Service cannot be empty.")
	}
	if in.DesiredCount != nil && *in.DesiredCount < 0 {
		return nil, invalidParameter("desiredCount must be greater than or equal to 0.")
	}
	f.mu.Lock()
	cluster, e := f.cluster(in.Cluster)
	if e != nil {
		f.mu.Unlock()
		return nil, e
	}
	s := f.service(cluster, *in.Service)
	if s == nil {
		f.mu.Unlock()
		return nil, errServiceNotFound
	}
	if in.DesiredCount != nil {
		s.desired = *in.DesiredCount
		s.updatedAt = time.Now()
		f.logf("service %s: desired count %d", s.cfg.Name, s.desired)
		f.notify()
	}
	out := map[string]any{"service": f.serviceJSON(s, false)}
	f.mu.Unlock()
	f.poke()
	return out, nil
}

// --- ListTasks

type listTasksIn struct {
	Cluster       *string `json:"cluster"`
	ServiceName   *string `json:"serviceName"`
	DesiredStatus string  `json:"desiredStatus"`
	Family        *string `json:"family"`
	StartedBy     *string `json:"startedBy"`
	LaunchType    string  `json:"launchType"`
	MaxResults    *int    `json:"maxResults"`
	NextToken     *string `json:"nextToken"`
}

type listTasksOut struct {
	TaskArns  []string `json:"taskArns"`
	NextToken string   `json:"nextToken,omitempty"`
}

const tokenPrefix = "ecsfake-list-tasks:"

func (f *Fake) listTasks(body []byte) (any, *apiError) {
	var in listTasksIn
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	desired := cmpOr(in.DesiredStatus, StatusRunning)
	switch desired {
	case StatusRunning, StatusPending, StatusStopped:
	default:
		return nil, invalidParameter("desiredStatus: %q is not one of RUNNING, PENDING, STOPPED", in.DesiredStatus)
	}
	switch in.LaunchType {
	case "", "FARGATE", "EC2", "EXTERNAL", "MANAGED_INSTANCES":
	default:
		return nil, invalidParameter("launchType: %q is not a launch type", in.LaunchType)
	}
	if in.StartedBy != nil && (in.ServiceName != nil || in.Family != nil) {
		return nil, invalidParameter("startedBy must be the only filter when it is given.")
	}
	limit := maxListTasks
	if in.MaxResults != nil {
		limit = *in.MaxResults
		if limit < 1 || limit > maxListTasks {
			return nil, invalidParameter("maxResults must be between 1 and %d.", maxListTasks)
		}
	}
	var after int64
	if in.NextToken != nil {
		raw, err := base64.RawURLEncoding.DecodeString(*in.NextToken)
		n, ok := strings.CutPrefix(string(raw), tokenPrefix)
		if err != nil || !ok {
			return nil, invalidParameter("Invalid nextToken.")
		}
		if after, err = strconv.ParseInt(n, 10, 64); err != nil {
			return nil, invalidParameter("Invalid nextToken.")
		}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	cluster, e := f.cluster(in.Cluster)
	if e != nil {
		return nil, e
	}
	var only *service
	if in.ServiceName != nil {
		if only = f.service(cluster, *in.ServiceName); only == nil {
			return nil, errServiceNotFound
		}
	}
	var match []*task
	for _, s := range f.serviceOrder {
		if s.cfg.Cluster != cluster || (only != nil && s != only) ||
			(in.Family != nil && *in.Family != s.cfg.Family) ||
			(in.StartedBy != nil && *in.StartedBy != s.deploymentID) ||
			(in.LaunchType != "" && in.LaunchType != "FARGATE") {
			continue
		}
		for _, t := range s.tasks {
			if t.desiredStatus == desired && t.seq > after {
				match = append(match, t)
			}
		}
	}
	slices.SortFunc(match, func(a, b *task) int { return cmp.Compare(a.seq, b.seq) })
	out := listTasksOut{TaskArns: []string{}}
	for i, t := range match {
		if i == limit {
			last := match[i-1].seq
			out.NextToken = base64.RawURLEncoding.EncodeToString([]byte(tokenPrefix + strconv.FormatInt(last, 10)))
			break
		}
		out.TaskArns = append(out.TaskArns, t.arn)
	}
	return out, nil
}

// --- DescribeTasks

type describeTasksIn struct {
	Cluster *string  `json:"cluster"`
	Tasks   []string `json:"tasks"`
	Include []string `json:"include"`
}

type describeTasksOut struct {
	Tasks    []taskJSON    `json:"tasks"`
	Failures []failureJSON `json:"failures"`
}

func (f *Fake) describeTasks(body []byte) (any, *apiError) {
	var in describeTasksIn
	if e := decodeBatch(body, &in, "Tasks", &in.Tasks, maxDescribeTasks); e != nil {
		return nil, e
	}
	tasks, failures, e := describe(f, in.Cluster, in.Tasks, in.Include, f.task, f.taskRefARN, f.taskJSON)
	if e != nil {
		return nil, e
	}
	return describeTasksOut{Tasks: tasks, Failures: failures}, nil
}

// --- GetTaskProtection and UpdateTaskProtection

type protectedTaskJSON struct {
	TaskArn           string     `json:"taskArn"`
	ProtectionEnabled bool       `json:"protectionEnabled"`
	ExpirationDate    *epochTime `json:"expirationDate,omitempty"`
}

type taskProtectionOut struct {
	ProtectedTasks []protectedTaskJSON `json:"protectedTasks"`
	Failures       []failureJSON       `json:"failures"`
}

type getTaskProtectionIn struct {
	Cluster *string  `json:"cluster"`
	Tasks   []string `json:"tasks"`
}

func (f *Fake) getTaskProtection(body []byte) (any, *apiError) {
	var in getTaskProtectionIn
	if e := decodeBatch(body, &in, "Tasks", &in.Tasks, maxGetTaskProtection); e != nil {
		return nil, e
	}
	return f.eachProtection(in.Cluster, in.Tasks, func(t *task, now time.Time) protectedTaskJSON {
		p := protectedTaskJSON{TaskArn: t.arn}
		if t.isProtected(now) {
			p.ProtectionEnabled, p.ExpirationDate = true, ts(t.protectedUntil)
		}
		return p
	})
}

type updateTaskProtectionIn struct {
	Cluster           *string  `json:"cluster"`
	Tasks             []string `json:"tasks"`
	ProtectionEnabled bool     `json:"protectionEnabled"`
	ExpiresInMinutes  *int     `json:"expiresInMinutes"`
}

func (f *Fake) updateTaskProtection(body []byte) (any, *apiError) {
	var in updateTaskProtectionIn
	if e := decodeBatch(body, &in, "Tasks", &in.Tasks, maxUpdateTaskProtection); e != nil {
		return nil, e
	}
	minutes, e := protectionMinutes(in.ExpiresInMinutes)
	if e != nil {
		return nil, e
	}
	return f.eachProtection(in.Cluster, in.Tasks, func(t *task, now time.Time) protectedTaskJSON {
		p := protectedTaskJSON{TaskArn: t.arn, ProtectionEnabled: in.ProtectionEnabled}
		if until := f.setProtection(t, in.ProtectionEnabled, minutes, now); in.ProtectionEnabled {
			p.ExpirationDate = ts(until)
		}
		return p
	})
}

// eachProtection answers a protection request: a failure for each of refs
// protectionFailure refuses, else what fn makes of the task. fn is called
// with f.mu held.
func (f *Fake) eachProtection(clusterRef *string, refs []string, fn func(t *task, now time.Time) protectedTaskJSON) (any, *apiError) {
	var now time.Time
	out := taskProtectionOut{ProtectedTasks: []protectedTaskJSON{}, Failures: []failureJSON{}}
	if e := f.eachRef(clusterRef, refs, func(cluster, ref string) {
		if now.IsZero() { // once, with f.mu held and the cluster found
			now = time.Now()
		}
		t := f.task(cluster, ref)
		if fail := f.protectionFailure(t, cluster, ref); fail != nil {
			out.Failures = append(out.Failures, *fail)
			return
		}
		out.ProtectedTasks = append(out.ProtectedTasks, fn(t, now))
	}); e != nil {
		return nil, e
	}
	return out, nil
}

// protectionMinutes validates expiresInMinutes.
func protectionMinutes(v *int) (int, *apiError) {
	if v == nil {
		return DefaultProtectionMinutes, nil
	}
	if *v < 1 || *v > MaxProtectionMinutes {
		return 0, invalidParameter("expiresInMinutes must be between 1 and %d.", MaxProtectionMinutes)
	}
	return *v, nil
}

// protectionFailure is the failure a protection request gets for t (nil for
// none): MISSING for an unknown task, TASK_NOT_VALID for a stopped one.
// f.mu held.
func (f *Fake) protectionFailure(t *task, cluster, ref string) *failureJSON {
	switch {
	case t == nil:
		return &failureJSON{Arn: f.taskRefARN(cluster, ref), Reason: "MISSING", Detail: "The task was not found."}
	case t.lastStatus == StatusStopped:
		return &failureJSON{Arn: t.arn, Reason: "TASK_NOT_VALID", Detail: "The task is stopped."}
	}
	return nil
}

// setProtection enables or disables t's protection and returns the
// expiration it answers with. While protection is ignored, enabling
// answers as if applied and changes nothing. f.mu held.
func (f *Fake) setProtection(t *task, enable bool, minutes int, now time.Time) time.Time {
	if !enable {
		if t.protected {
			t.protected, t.protectedUntil = false, time.Time{}
			t.version++
			f.notify()
		}
		return time.Time{}
	}
	until := now.Add(time.Duration(minutes) * f.cfg.ProtectionMinute).Truncate(time.Millisecond)
	if f.ignoreProtection {
		t.protectionIgnored = true
		f.logf("task %s: protection for %d minutes accepted and ignored", t.id, minutes)
		return until
	}
	t.protected, t.protectedUntil = true, until
	t.version++
	f.notify()
	return until
}

// --- Shapes

// epochTime marshals as ECS timestamps are sent: epoch seconds as a JSON
// number, with milliseconds.
type epochTime time.Time

func (e epochTime) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(time.Time(e).UnixMilli())/1e3, 'f', -1, 64), nil
}

func ts(t time.Time) *epochTime {
	if t.IsZero() {
		return nil
	}
	e := epochTime(t)
	return &e
}

type tagJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type deploymentJSON struct {
	ID                 string     `json:"id"`
	Status             string     `json:"status"`
	TaskDefinition     string     `json:"taskDefinition"`
	DesiredCount       int        `json:"desiredCount"`
	PendingCount       int        `json:"pendingCount"`
	RunningCount       int        `json:"runningCount"`
	FailedTasks        int        `json:"failedTasks"`
	CreatedAt          *epochTime `json:"createdAt,omitempty"`
	UpdatedAt          *epochTime `json:"updatedAt,omitempty"`
	LaunchType         string     `json:"launchType"`
	PlatformVersion    string     `json:"platformVersion"`
	PlatformFamily     string     `json:"platformFamily"`
	RolloutState       string     `json:"rolloutState"`
	RolloutStateReason string     `json:"rolloutStateReason"`
}

type deploymentControllerJSON struct {
	Type string `json:"type"`
}

type serviceJSON struct {
	ServiceArn           string                   `json:"serviceArn"`
	ServiceName          string                   `json:"serviceName"`
	ClusterArn           string                   `json:"clusterArn"`
	Status               string                   `json:"status"`
	DesiredCount         int                      `json:"desiredCount"`
	RunningCount         int                      `json:"runningCount"`
	PendingCount         int                      `json:"pendingCount"`
	LaunchType           string                   `json:"launchType"`
	PlatformVersion      string                   `json:"platformVersion"`
	PlatformFamily       string                   `json:"platformFamily"`
	TaskDefinition       string                   `json:"taskDefinition"`
	Deployments          []deploymentJSON         `json:"deployments"`
	Events               []struct{}               `json:"events"`
	CreatedAt            *epochTime               `json:"createdAt,omitempty"`
	SchedulingStrategy   string                   `json:"schedulingStrategy"`
	DeploymentController deploymentControllerJSON `json:"deploymentController"`
	EnableECSManagedTags bool                     `json:"enableECSManagedTags"`
	PropagateTags        string                   `json:"propagateTags"`
	EnableExecuteCommand bool                     `json:"enableExecuteCommand"`
	Tags                 []tagJSON                `json:"tags,omitempty"`
}

// serviceJSON describes s. f.mu held.
func (f *Fake) serviceJSON(s *service, tags bool) serviceJSON {
	running, pending := 0, 0
	for _, t := range s.tasks {
		if t.desiredStatus != StatusRunning {
			continue
		}
		switch t.lastStatus {
		case StatusRunning:
			running++
		case StatusProvisioning, StatusPending:
			pending++
		}
	}
	out := serviceJSON{
		ServiceArn: s.arn, ServiceName: s.cfg.Name, ClusterArn: s.clusterArn, Status: "ACTIVE",
		DesiredCount: s.desired, RunningCount: running, PendingCount: pending,
		LaunchType: "FARGATE", PlatformVersion: "LATEST", PlatformFamily: "Linux",
		TaskDefinition: s.taskDefArn,
		Deployments: []deploymentJSON{{
			ID: s.deploymentID, Status: "PRIMARY", TaskDefinition: s.taskDefArn,
			DesiredCount: s.desired, PendingCount: pending, RunningCount: running, FailedTasks: s.failedTasks,
			CreatedAt: ts(s.createdAt), UpdatedAt: ts(s.updatedAt),
			LaunchType: "FARGATE", PlatformVersion: "1.4.0", PlatformFamily: "Linux",
			RolloutState: "COMPLETED", RolloutStateReason: "ECS deployment " + s.deploymentID + " completed.",
		}},
		Events:               []struct{}{},
		CreatedAt:            ts(s.createdAt),
		SchedulingStrategy:   "REPLICA",
		DeploymentController: deploymentControllerJSON{Type: "ECS"},
		PropagateTags:        "NONE",
	}
	if tags {
		out.Tags = []tagJSON{}
	}
	return out
}

type containerJSON struct {
	ContainerArn string `json:"containerArn"`
	TaskArn      string `json:"taskArn"`
	Name         string `json:"name"`
	Image        string `json:"image"`
	RuntimeID    string `json:"runtimeId,omitempty"`
	LastStatus   string `json:"lastStatus"`
	ExitCode     *int   `json:"exitCode,omitempty"`
	Reason       string `json:"reason,omitempty"`
	HealthStatus string `json:"healthStatus"`
	CPU          string `json:"cpu"`
}

type taskJSON struct {
	TaskArn              string          `json:"taskArn"`
	ClusterArn           string          `json:"clusterArn"`
	TaskDefinitionArn    string          `json:"taskDefinitionArn"`
	Group                string          `json:"group"`
	StartedBy            string          `json:"startedBy"`
	LastStatus           string          `json:"lastStatus"`
	DesiredStatus        string          `json:"desiredStatus"`
	LaunchType           string          `json:"launchType"`
	PlatformVersion      string          `json:"platformVersion"`
	PlatformFamily       string          `json:"platformFamily"`
	AvailabilityZone     string          `json:"availabilityZone"`
	CPU                  string          `json:"cpu"`
	Memory               string          `json:"memory"`
	Version              int64           `json:"version"`
	HealthStatus         string          `json:"healthStatus"`
	EnableExecuteCommand bool            `json:"enableExecuteCommand"`
	Connectivity         string          `json:"connectivity,omitempty"`
	ConnectivityAt       *epochTime      `json:"connectivityAt,omitempty"`
	CreatedAt            *epochTime      `json:"createdAt,omitempty"`
	PullStartedAt        *epochTime      `json:"pullStartedAt,omitempty"`
	PullStoppedAt        *epochTime      `json:"pullStoppedAt,omitempty"`
	StartedAt            *epochTime      `json:"startedAt,omitempty"`
	StoppingAt           *epochTime      `json:"stoppingAt,omitempty"`
	ExecutionStoppedAt   *epochTime      `json:"executionStoppedAt,omitempty"`
	StoppedAt            *epochTime      `json:"stoppedAt,omitempty"`
	StopCode             string          `json:"stopCode,omitempty"`
	StoppedReason        string          `json:"stoppedReason,omitempty"`
	Containers           []containerJSON `json:"containers"`
	Tags                 []tagJSON       `json:"tags,omitempty"`
}

// Task sizes the fake reports (the smallest Fargate size).
const (
	taskCPU    = "256"
	taskMemory = "512"
)

// taskJSON describes t. f.mu held.
func (f *Fake) taskJSON(t *task, tags bool) taskJSON {
	s := t.svc
	out := taskJSON{
		TaskArn: t.arn, ClusterArn: s.clusterArn, TaskDefinitionArn: s.taskDefArn,
		Group: "service:" + s.cfg.Name, StartedBy: s.deploymentID,
		LastStatus: t.lastStatus, DesiredStatus: t.desiredStatus,
		LaunchType: "FARGATE", PlatformVersion: "1.4.0", PlatformFamily: "Linux",
		AvailabilityZone: f.cfg.Region + "a",
		CPU:              taskCPU, Memory: taskMemory, Version: t.version, HealthStatus: "UNKNOWN",
		CreatedAt:  ts(t.createdAt),
		StartedAt:  ts(t.startedAt),
		StoppingAt: ts(t.stoppingAt),
		StoppedAt:  ts(t.stoppedAt),
		StopCode:   t.stopCode, StoppedReason: t.stoppedReason,
		Containers: []containerJSON{f.containerJSON(t)},
	}
	if !t.startedAt.IsZero() {
		out.Connectivity, out.ConnectivityAt = "CONNECTED", ts(t.createdAt)
		out.PullStartedAt, out.PullStoppedAt = ts(t.createdAt), ts(t.startedAt)
	}
	if t.exit != nil {
		out.ExecutionStoppedAt = ts(t.exit.at)
	}
	if tags {
		out.Tags = []tagJSON{}
	}
	return out
}

func (f *Fake) containerJSON(t *task) containerJSON {
	c := containerJSON{
		ContainerArn: f.containerARN(t), TaskArn: t.arn, Name: t.svc.cfg.Family,
		Image: containerImage(t), LastStatus: containerStatus(t), HealthStatus: "UNKNOWN", CPU: "0",
	}
	if t.pid != 0 {
		c.RuntimeID = runtimeID(t)
	}
	if t.exit != nil {
		code := t.exit.code
		c.ExitCode = &code
		if code < 0 {
			c.Reason = t.exit.status
		}
	}
	return c
}

func (f *Fake) containerARN(t *task) string {
	id := t.id
	return f.arn("container/" + t.svc.cfg.Cluster + "/" + id + "/" +
		id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:])
}

func containerImage(t *task) string { return "ecsfake/" + t.svc.cfg.Family + ":latest" }

// runtimeID is how Fargate names a task's container: <task id>-<number>.
func runtimeID(t *task) string {
	return t.id + "-" + strconv.FormatUint(uint64(t.seq)*2654435761%4294967296, 10)
}

func containerStatus(t *task) string {
	switch t.lastStatus {
	case StatusProvisioning, StatusPending:
		return StatusPending
	case StatusStopped:
		return StatusStopped
	}
	return StatusRunning
}
