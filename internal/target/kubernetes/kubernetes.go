// Package kubernetes is the target for a pool whose workers are the pods of
// a Deployment (or a StatefulSet) that the user owns.
//
// Kubernetes owns the fleet: the workload's replica count says how many pods
// run, its pod template says what they run (`ebb worker --platform
// kubernetes`, registering with its pod name), and the ReplicaSet picks which
// pod to delete when the count goes down. So this target moves the count
// through the scale subresource and decides nothing else:
//
//   - Launch raises the count.
//   - Protect gives busy pods the highest pod-deletion-cost, so that a
//     scale-in this target did not make (KEDA's, the HPA's, a person's)
//     takes idle pods first.
//   - Retire finishes a scale-in the control plane started by draining idle
//     workers: it marks exactly the drained pods with the lowest
//     deletion cost and lowers the count by their number only once those
//     marks have been visible for a moment and every other pod is Running
//     and Ready, so that the ReplicaSet, which ranks unready pods and then
//     lower costs first, can only pick the drained ones (see Retire).
//
// New makes no API call: the workload may not exist yet when the server
// starts, and every call reports that with ErrWorkloadNotFound on the pool's
// status instead.
package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/ebbq/ebb/internal/target"
)

// DeletionCostAnnotation is the annotation the ReplicaSet controller reads
// to rank pods for deletion: lower goes first.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// The costs this target writes. Idle pods carry none (cost 0).
const (
	// BusyCost marks a pod whose worker holds tasks: deleted last.
	BusyCost = math.MaxInt32
	// DrainedCost marks a drained pod being retired: deleted first.
	DrainedCost = math.MinInt32
)

// Kinds of workload.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
)

// Config is one pool's workload.
type Config struct {
	// Namespace holds the workload. Empty: the kubeconfig context's
	// namespace, or the server's own when it runs in a pod, else "default".
	Namespace string
	// Kind is KindDeployment (the default) or KindStatefulSet.
	Kind string
	// Name is the workload's name. Required.
	Name string
	// Kubeconfig is a kubeconfig file. Empty: in a pod, its service
	// account; elsewhere $KUBECONFIG or ~/.kube/config.
	Kubeconfig string
	// REST replaces everything above about how to reach the API server
	// (embedders and tests).
	REST *rest.Config
	// KEDA leaves the replica count to KEDA: Launch and Retire change
	// nothing, and the target reports itself as a target.Follower.
	KEDA bool

	// CallTimeout bounds each API request, its conflict retries included.
	// Zero is CallTimeoutDefault.
	CallTimeout time.Duration
	// MarkSettle is how long the lowest deletion cost must have been on a
	// drained pod before Retire lowers the count for it. Zero is
	// MarkSettleDefault.
	MarkSettle time.Duration
	// Logger receives the count changes; nil discards.
	Logger *slog.Logger
}

// Defaults.
const (
	CallTimeoutDefault = 15 * time.Second
	// MarkSettleDefault covers the ReplicaSet controller's watch delivering
	// the new annotation to its cache before it sees the lowered count: it
	// ranks pods from that cache, not from the API server.
	MarkSettleDefault = time.Second
)

// retireGrace is how long a retired pod that the workload keeps running
// stays retired: the controller deletes an excess pod within seconds, so
// one still running after this while the workload has no excess means the
// lowered count went elsewhere (or a Launch raised it again), and the pod is
// forgotten so that the control plane may retire it once more.
const retireGrace = time.Minute

// pendingPrefix names the placeholders for pods the count asks for and the
// controller has not created yet.
const pendingPrefix = "k8s-pending-"

// ErrWorkloadNotFound is in the chain of every error about a workload (or
// namespace) that does not exist.
var ErrWorkloadNotFound = errors.New("kubernetes workload not found")

// Target scales one workload. It is safe for concurrent use.
type Target struct {
	client      *apiClient
	namespace   string
	kind, name  string
	keda        bool
	callTimeout time.Duration
	settle      time.Duration
	logger      *slog.Logger
	now         func() time.Time

	// opMu serializes Launch and Retire: each reads the count and writes a
	// new one from it.
	opMu sync.Mutex

	mu sync.Mutex
	// retired maps pods Retire lowered the count for to when.
	retired map[string]time.Time
	// marked maps drained pods given DrainedCost to when.
	marked map[string]time.Time
	// pods is the last listing, for Protect.
	pods       []pod
	lastLaunch time.Time
	// wrote is the replica count this target last wrote, to tell a count
	// changed by hand (or by another autoscaler) from its own.
	wrote   int32
	written bool
	seen    scaleSeen
	handSet string // the last hand change noticed, for Status
	errs    target.OpErrors

	// conflicts counts rejected stale writes; beforeWrite runs between a
	// read and its write (tests make conflicts with it).
	conflicts   atomic.Int64
	beforeWrite func()
}

type scaleSeen struct {
	at                time.Time
	replicas, current int32
	running, starting int
}

var (
	_ target.Target   = (*Target)(nil)
	_ target.Retirer  = (*Target)(nil)
	_ target.Reporter = (*Target)(nil)
	_ target.Follower = (*Target)(nil)
)

// New checks cfg and builds the client; it makes no API call.
func New(cfg Config) (*Target, error) {
	if cfg.Kind == "" {
		cfg.Kind = KindDeployment
	}
	if cfg.Kind != KindDeployment && cfg.Kind != KindStatefulSet {
		return nil, fmt.Errorf("kubernetes: kind %q: use %s or %s", cfg.Kind, KindDeployment, KindStatefulSet)
	}
	if cfg.Name == "" {
		return nil, errors.New("kubernetes: the workload's name is required")
	}
	restCfg, ns := cfg.REST, cfg.Namespace
	if restCfg == nil {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = cfg.Kubeconfig
		// Without a kubeconfig, this falls back to the pod's service
		// account (in-cluster config) and its namespace.
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
		var err error
		if restCfg, err = cc.ClientConfig(); err != nil {
			return nil, fmt.Errorf("kubernetes: no way to reach the API server (not in a pod, and no usable kubeconfig; set the pool's kubernetes.kubeconfig or KUBECONFIG): %w", err)
		}
		if ns == "" {
			if ns, _, err = cc.Namespace(); err != nil {
				return nil, fmt.Errorf("kubernetes: reading the kubeconfig's namespace: %w", err)
			}
		}
	}
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	restCfg = rest.CopyConfig(restCfg)
	restCfg.UserAgent = "ebb-server"
	client, err := newAPIClient(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: building the client: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Target{
		client: client, namespace: ns, kind: cfg.Kind, name: cfg.Name, keda: cfg.KEDA,
		callTimeout: cmpOr(cfg.CallTimeout, CallTimeoutDefault),
		settle:      cmpOr(cfg.MarkSettle, MarkSettleDefault),
		logger:      logger.With("target", "kubernetes", "namespace", ns, strings.ToLower(cfg.Kind), cfg.Name),
		now:         time.Now,
		retired:     map[string]time.Time{},
		marked:      map[string]time.Time{},
	}, nil
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Name is the target kind.
func (*Target) Name() string { return "kubernetes" }

// Following reports whether KEDA owns the replica count.
func (t *Target) Following() bool { return t.keda }

// Launch raises the replica count by n. The controller names the pods, so
// it returns no ids; Instances reports the pods not created yet as
// placeholders.
func (t *Target) Launch(ctx context.Context, n int) ([]string, error) {
	if n <= 0 || t.keda {
		return nil, nil
	}
	t.opMu.Lock()
	defer t.opMu.Unlock()
	var from, to int32
	err := t.updateScale(ctx, func(cur int32) int32 {
		from, to = cur, int32(min(int64(cur)+int64(n), math.MaxInt32))
		return to
	})
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.lastLaunch = t.now()
	// A retired pod the controller has not deleted yet now fits in the
	// raised count and may be kept: forgetting it lets the control plane
	// retire it again (Protect takes its low cost off).
	clear(t.retired)
	clear(t.marked)
	t.mu.Unlock()
	t.logger.Info("raised the replica count", "from", from, "to", to)
	return nil, nil
}

// Instances lists the workload's pods that have not exited, then one
// StateStarting placeholder (k8s-pending-1, …) for each pod the count asks
// for beyond them. A pod being deleted, or retired and not deleted yet, is
// StateStopping.
func (t *Target) Instances(ctx context.Context) ([]target.Instance, error) {
	scale, pods, err := t.read(ctx)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(scale, pods)
	out := make([]target.Instance, 0, len(pods))
	counted := 0
	for i := range pods {
		p := &pods[i]
		in := target.Instance{ID: p.Metadata.Name, State: podState(p), StartedAt: p.Metadata.CreationTimestamp}
		if p.Status.StartTime != nil {
			in.StartedAt = *p.Status.StartTime
		}
		if _, ok := t.retired[p.Metadata.Name]; ok {
			in.State = target.StateStopping
		}
		if in.State != target.StateStopping {
			counted++
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b target.Instance) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	for i := range int(scale.Spec.Replicas) - counted {
		out = append(out, target.Instance{ID: fmt.Sprintf("%s%d", pendingPrefix, i+1), State: target.StateStarting, StartedAt: t.lastLaunch})
	}
	return out, nil
}

// Protect sets the deletion costs of the pods in the last listing: BusyCost
// on busy ones, DrainedCost on those being retired, none on the rest. Only
// pods whose annotation differs are patched, so a steady pool costs no
// writes.
func (t *Target) Protect(ctx context.Context, busy []string) error {
	if t.kind == KindStatefulSet {
		// The StatefulSet controller removes the highest ordinal whatever
		// the costs say; Retire goes by ordinals instead.
		return nil
	}
	t.mu.Lock()
	pods := t.pods
	want := map[string]string{}
	for i := range pods {
		p := &pods[i]
		if p.Metadata.DeletionTimestamp != nil {
			continue
		}
		switch _, retiring := t.marked[p.Metadata.Name]; {
		case retiring:
			want[p.Metadata.Name] = strconv.Itoa(DrainedCost)
		case slices.Contains(busy, p.Metadata.Name):
			want[p.Metadata.Name] = strconv.Itoa(BusyCost)
		default:
			want[p.Metadata.Name] = ""
		}
	}
	t.mu.Unlock()
	var errs []error
	for i := range pods {
		p := &pods[i]
		w, ok := want[p.Metadata.Name]
		if !ok || p.Metadata.Annotations[DeletionCostAnnotation] == w {
			continue
		}
		if err := t.setCost(ctx, p.Metadata.Name, w); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Retire lowers the replica count for drained pods, in two steps across
// control-plane passes, because the ReplicaSet controller picks the victims
// itself, from its own cache, by rank: pods not yet scheduled, then Pending,
// then not Ready, then the lowest pod-deletion-cost, then the newest.
//
//  1. It gives each drained pod DrainedCost.
//  2. On a later pass, once those marks are in the listing and at least
//     MarkSettle old, and only while every other pod of the workload is
//     Running and Ready (a Pending or unready pod would be deleted first,
//     wasting the scale-in and leaving the drained pod up), it lowers the
//     count by the number of marked pods, in one conflict-checked write.
//
// For a StatefulSet, whose controller removes the highest ordinals whatever
// the costs, it lowers the count by the number of drained pods at the top
// of the ordinals; a drained pod below a busy one waits.
//
// Ids that are no running pod of the workload are ignored, so a registry
// entry that outlives its pod cannot lower the count twice.
func (t *Target) Retire(ctx context.Context, ids []string) error {
	if t.keda {
		return nil
	}
	t.opMu.Lock()
	defer t.opMu.Unlock()
	scale, pods, err := t.read(ctx)
	if err != nil {
		return err
	}
	t.mu.Lock()
	live := t.prune(scale, pods)
	var fresh []string
	for _, id := range ids {
		if _, done := t.retired[id]; !done && live[id] != nil && !slices.Contains(fresh, id) {
			fresh = append(fresh, id)
		}
	}
	t.mu.Unlock()
	if len(fresh) == 0 {
		return nil
	}
	var take []string
	if t.kind == KindStatefulSet {
		take = topOrdinals(t.name, live, fresh)
	} else {
		take, err = t.markAndPick(ctx, live, fresh)
		if err != nil {
			return err
		}
	}
	if len(take) == 0 {
		return nil
	}
	var from, to int32
	err = t.updateScale(ctx, func(cur int32) int32 {
		from, to = cur, max(0, cur-int32(len(take)))
		return to
	})
	if err != nil {
		return err
	}
	t.logger.Info("lowered the replica count for drained pods", "from", from, "to", to, "pods", strings.Join(take, ","))
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, id := range take {
		t.retired[id] = now
	}
	return nil
}

// markAndPick is Retire's first step for a Deployment, and the check for
// its second: it returns the drained pods whose mark has settled, or none
// while another pod could outrank them.
func (t *Target) markAndPick(ctx context.Context, live map[string]*pod, fresh []string) ([]string, error) {
	now := t.now()
	drainedCost := strconv.Itoa(DrainedCost)
	var settled []string
	for _, id := range fresh {
		p := live[id]
		t.mu.Lock()
		at, marked := t.marked[id]
		t.mu.Unlock()
		if p.Metadata.Annotations[DeletionCostAnnotation] != drainedCost {
			if err := t.setCost(ctx, id, drainedCost); err != nil {
				return nil, err
			}
			if !marked {
				t.mu.Lock()
				t.marked[id] = now
				t.mu.Unlock()
			}
			continue // visible in the next listing
		}
		if !marked {
			// Marked by an earlier leader: the settle time has passed.
			t.mu.Lock()
			t.marked[id] = now.Add(-t.settle)
			t.mu.Unlock()
			at = now.Add(-t.settle)
		}
		if now.Sub(at) >= t.settle {
			settled = append(settled, id)
		}
	}
	if len(settled) == 0 {
		return nil, nil
	}
	for name, p := range live {
		if slices.Contains(settled, name) {
			continue
		}
		if !runningReady(p) {
			t.logger.Debug("not lowering the count yet: a pod that is not Running and Ready would be deleted first", "pod", name)
			return nil, nil
		}
		// Every pod at the lowest cost ties with the settled ones, and the
		// ReplicaSet may take it instead; lower for all of them at once,
		// once all have settled, so that the pods retired are the pods
		// deleted.
		if p.Metadata.Annotations[DeletionCostAnnotation] == drainedCost || slices.Contains(fresh, name) {
			t.logger.Debug("not lowering the count yet: another drained pod's mark has not settled", "pod", name)
			return nil, nil
		}
	}
	return settled, nil
}

// topOrdinals returns the fresh ids that form an unbroken run from the
// highest ordinal of the StatefulSet's live pods down.
func topOrdinals(set string, live map[string]*pod, fresh []string) []string {
	type ord struct {
		n    int
		name string
	}
	var ords []ord
	for name := range live {
		n, err := strconv.Atoi(strings.TrimPrefix(name, set+"-"))
		if err != nil || !strings.HasPrefix(name, set+"-") {
			continue
		}
		ords = append(ords, ord{n, name})
	}
	slices.SortFunc(ords, func(a, b ord) int { return b.n - a.n })
	var take []string
	for _, o := range ords {
		if !slices.Contains(fresh, o.name) {
			break
		}
		take = append(take, o.name)
	}
	return take
}

// Shutdown leaves the workload as it is: its pods belong to the cluster,
// not to this server, and the next control-plane replica takes over.
func (*Target) Shutdown(context.Context) error { return nil }

// Status is one line for the pool view: the last error not cleared by a
// later success, a replica count changed outside ebb, then the counts as
// last seen.
func (t *Target) Status() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	if e, ok := t.errs.Last(); ok {
		b.WriteString(e.String() + "; ")
	}
	if t.handSet != "" {
		b.WriteString(t.handSet + "; ")
	}
	fmt.Fprintf(&b, "%s %s/%s", strings.ToLower(t.kind), t.namespace, t.name)
	if t.keda {
		b.WriteString(" (replicas owned by KEDA)")
	}
	if s := t.seen; !s.at.IsZero() {
		fmt.Fprintf(&b, ": replicas %d, pods %d running, %d starting, %d retiring (at %s)",
			s.replicas, s.running, s.starting, len(t.retired), s.at.UTC().Format(time.RFC3339))
	} else {
		b.WriteString(": not read yet")
	}
	return b.String()
}

// LastError is the newest failure of an API operation that has not
// succeeded since, or nil. It matches ErrWorkloadNotFound when the workload
// is missing.
func (t *Target) LastError() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, _ := t.errs.Last()
	return e.Err
}

// prune drops retired and marked ids the listing no longer has, and retired
// ones the controller did not act on (see retireGrace). It returns the pods
// that are not being deleted, by name. It needs t.mu.
func (t *Target) prune(scale *scaleObj, pods []pod) map[string]*pod {
	listed := map[string]bool{}
	live := map[string]*pod{}
	for i := range pods {
		p := &pods[i]
		listed[p.Metadata.Name] = true
		if podState(p) != target.StateStopping {
			live[p.Metadata.Name] = p
		}
	}
	excess := len(live) > int(scale.Spec.Replicas)
	now := t.now()
	for id, at := range t.retired {
		switch {
		case !listed[id]:
			delete(t.retired, id)
		case !excess && now.Sub(at) >= retireGrace:
			delete(t.retired, id)
			delete(t.marked, id)
			t.logger.Info("the controller kept a retired pod running; it can be retired again", "pod", id)
		}
	}
	for id := range t.marked {
		if !listed[id] {
			delete(t.marked, id)
		}
	}
	for id := range live {
		if _, ok := t.retired[id]; ok {
			delete(live, id)
		}
	}
	return live
}

// read gets the scale subresource and lists the pods its selector matches.
func (t *Target) read(ctx context.Context) (*scaleObj, []pod, error) {
	scale, err := t.getScale(ctx)
	if err != nil {
		return nil, nil, err
	}
	sel := scale.Status.Selector
	if sel == "" {
		err := fmt.Errorf("kubernetes: %s %s/%s reports no pod selector on its scale subresource", t.kind, t.namespace, t.name)
		t.recordErr("list pods", err)
		return nil, nil, err
	}
	list, err := call(t, ctx, "list pods", func(ctx context.Context) (*podList, error) {
		return t.client.listPods(ctx, t.namespace, sel)
	})
	if err != nil {
		return nil, nil, err
	}
	var pods []pod
	running, starting := 0, 0
	for _, p := range list.Items {
		if p.Status.Phase == podSucceeded || p.Status.Phase == podFailed {
			continue // exited; the controller replaces or removes it
		}
		pods = append(pods, p)
		switch podState(&p) {
		case target.StateRunning:
			running++
		case target.StateStarting:
			starting++
		}
	}
	t.mu.Lock()
	t.pods = pods
	t.seen = scaleSeen{at: t.now(), replicas: scale.Spec.Replicas, current: scale.Status.Replicas, running: running, starting: starting}
	t.mu.Unlock()
	return scale, pods, nil
}

func (t *Target) getScale(ctx context.Context) (*scaleObj, error) {
	scale, err := call(t, ctx, "get scale", func(ctx context.Context) (*scaleObj, error) {
		return t.client.getScale(ctx, t.kind, t.namespace, t.name)
	})
	if err != nil {
		return nil, err
	}
	t.noticeHandChange(scale.Spec.Replicas)
	return scale, nil
}

// noticeHandChange reports a replica count this target did not write. It
// is not fought: the next reconcile starts from the pods that exist.
func (t *Target) noticeHandChange(replicas int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keda || !t.written || replicas == t.wrote {
		return
	}
	t.handSet = fmt.Sprintf("replicas changed outside ebb at %s: ebb had set %d, found %d",
		t.now().UTC().Format(time.RFC3339), t.wrote, replicas)
	t.logger.Warn("the replica count was changed outside ebb; going on from the new count", "ebb_set", t.wrote, "found", replicas)
	t.wrote = replicas
}

// updateScale reads the scale, asks change for the new count and writes it
// with the resourceVersion it read, retrying on conflicts with a fresh
// read.
func (t *Target) updateScale(ctx context.Context, change func(current int32) int32) error {
	const op = "patch scale"
	cctx, cancel := context.WithTimeout(ctx, t.callTimeout)
	defer cancel()
	conflicts := 0
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		scale, err := t.getScale(cctx)
		if err != nil {
			return err
		}
		replicas := change(scale.Spec.Replicas)
		if replicas == scale.Spec.Replicas {
			return nil
		}
		patch, _ := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": scale.Metadata.ResourceVersion},
			"spec":     map[string]any{"replicas": replicas},
		})
		if t.beforeWrite != nil {
			t.beforeWrite()
		}
		_, err = call(t, cctx, op, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, t.client.patchScale(ctx, t.kind, t.namespace, t.name, patch)
		})
		if apierrors.IsConflict(err) {
			conflicts++
			t.conflicts.Add(1)
		}
		if err == nil {
			t.mu.Lock()
			t.wrote, t.written = replicas, true
			t.seen.replicas = replicas
			t.mu.Unlock()
		}
		return err
	})
	if err == nil && conflicts > 0 {
		t.mu.Lock()
		t.errs.Clear(op)
		t.mu.Unlock()
		t.logger.Info("replica count written after resource-version conflicts", "conflicts", conflicts)
	}
	return err
}

// setCost sets (or, with "", removes) a pod's deletion cost.
func (t *Target) setCost(ctx context.Context, pod, cost string) error {
	var v any = cost
	if cost == "" {
		v = nil // a merge patch's null removes the key
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{DeletionCostAnnotation: v}}})
	_, err := call(t, ctx, "patch pod", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, t.client.patchPod(ctx, t.namespace, pod, patch)
	})
	return err
}

// call runs one API request within the call timeout, wraps its error with
// the operation and the workload, and records it for Status.
func call[T any](t *Target, ctx context.Context, op string, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, t.callTimeout)
	defer cancel()
	out, err := f(cctx)
	if err == nil {
		t.mu.Lock()
		t.errs.Clear(op)
		t.mu.Unlock()
		return out, nil
	}
	// A conflict is retried by the caller; it is no failure to report.
	if apierrors.IsConflict(err) {
		return out, err
	}
	err = t.wrap(op, err)
	// The caller giving up says nothing about the cluster.
	if ctx.Err() == nil {
		t.recordErr(op, err)
	}
	return out, err
}

func (t *Target) recordErr(op string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.errs.Fail(op, t.now(), err)
}

func (t *Target) wrap(op string, err error) error {
	if apierrors.IsNotFound(err) && op != "patch pod" {
		return fmt.Errorf("kubernetes: %s: %w: %s %s does not exist in namespace %s; create it (its pods run `ebb worker --platform kubernetes`; replicas 0 is fine) or correct the pool's kubernetes settings: %w",
			op, ErrWorkloadNotFound, t.kind, t.name, t.namespace, err)
	}
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("kubernetes: %s of %s %s/%s: forbidden; the server's service account needs get and patch on %ss/scale and list and patch on pods in namespace %s: %w",
			op, t.kind, t.namespace, t.name, strings.ToLower(t.kind), t.namespace, err)
	}
	return fmt.Errorf("kubernetes: %s of %s %s/%s: %w", op, t.kind, t.namespace, t.name, err)
}

func podState(p *pod) target.State {
	if p.Metadata.DeletionTimestamp != nil {
		return target.StateStopping
	}
	if p.Status.Phase == podRunning {
		return target.StateRunning
	}
	// Pending, Unknown and phases added later: counting it as starting
	// keeps the control plane from asking for a second pod for it.
	return target.StateStarting
}

func runningReady(p *pod) bool {
	if p.Status.Phase != podRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == podReady {
			return c.Status == "True"
		}
	}
	return false
}
