package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// apiClient makes the four requests this target needs (get and patch a
// scale subresource, list and patch pods) as plain JSON over the transport
// client-go builds from the rest.Config, so TLS, tokens, exec credential
// plugins and auth providers work as with the typed clientset. The
// clientset (k8s.io/client-go/kubernetes) is not linked: its packages
// register every API group's types at start-up, which every ebb process
// paid for, `ebb worker` included (docs/decisions.md).
type apiClient struct {
	http *http.Client
	base *url.URL
}

func newAPIClient(cfg *rest.Config) (*apiClient, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, err
	}
	return &apiClient{http: hc, base: base}, nil
}

// The objects, with only the fields this target reads.
type (
	objectMeta struct {
		Name              string            `json:"name"`
		ResourceVersion   string            `json:"resourceVersion,omitempty"`
		Annotations       map[string]string `json:"annotations,omitempty"`
		CreationTimestamp time.Time         `json:"creationTimestamp"`
		DeletionTimestamp *time.Time        `json:"deletionTimestamp,omitempty"`
	}
	scaleObj struct {
		Metadata objectMeta `json:"metadata"`
		Spec     struct {
			Replicas int32 `json:"replicas"`
		} `json:"spec"`
		Status struct {
			Replicas int32  `json:"replicas"`
			Selector string `json:"selector"`
		} `json:"status"`
	}
	pod struct {
		Metadata objectMeta `json:"metadata"`
		Status   struct {
			Phase      string     `json:"phase"`
			StartTime  *time.Time `json:"startTime,omitempty"`
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}
	podList struct {
		Items []pod `json:"items"`
	}
)

// Pod phases and the condition this target reads.
const (
	podRunning   = "Running"
	podSucceeded = "Succeeded"
	podFailed    = "Failed"
	podReady     = "Ready"
)

const mergePatch = "application/merge-patch+json"

func (c *apiClient) scalePath(kind, ns, name string) string {
	return "/apis/apps/v1/namespaces/" + url.PathEscape(ns) + "/" + strings.ToLower(kind) + "s/" + url.PathEscape(name) + "/scale"
}

func (c *apiClient) getScale(ctx context.Context, kind, ns, name string) (*scaleObj, error) {
	var s scaleObj
	return &s, c.do(ctx, http.MethodGet, c.scalePath(kind, ns, name), nil, nil, &s)
}

func (c *apiClient) patchScale(ctx context.Context, kind, ns, name string, patch []byte) error {
	return c.do(ctx, http.MethodPatch, c.scalePath(kind, ns, name), nil, patch, nil)
}

func (c *apiClient) listPods(ctx context.Context, ns, selector string) (*podList, error) {
	var l podList
	return &l, c.do(ctx, http.MethodGet, "/api/v1/namespaces/"+url.PathEscape(ns)+"/pods", url.Values{"labelSelector": {selector}}, nil, &l)
}

func (c *apiClient) patchPod(ctx context.Context, ns, name string, patch []byte) error {
	return c.do(ctx, http.MethodPatch, "/api/v1/namespaces/"+url.PathEscape(ns)+"/pods/"+url.PathEscape(name), nil, patch, nil)
}

// do sends one request; a patch is a JSON merge patch. A failure answer
// becomes the *apierrors.StatusError client-go would return, so that
// apierrors.IsNotFound, IsConflict and IsForbidden read it.
func (c *apiClient) do(ctx context.Context, method, path string, query url.Values, patch []byte, out any) error {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = query.Encode()
	var body io.Reader
	if patch != nil {
		body = bytes.NewReader(patch)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if patch != nil {
		req.Header.Set("Content-Type", mergePatch)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var st metav1.Status
		if json.Unmarshal(data, &st) == nil && st.Kind == "Status" && st.Status == metav1.StatusFailure {
			if st.Code == 0 {
				st.Code = int32(resp.StatusCode)
			}
			return &apierrors.StatusError{ErrStatus: st}
		}
		return apierrors.NewGenericServerResponse(resp.StatusCode, method, schema.GroupResource{}, "", string(data), 0, false)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the answer to %s %s: %w", method, path, err)
	}
	return nil
}
