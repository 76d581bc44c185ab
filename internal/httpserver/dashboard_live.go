package httpserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// liveInterval is how often an open page is re-rendered. Each open page
// costs the broker about two reads per interval (the queue counts are shared
// among all viewers through the stats cache).
const liveInterval = time.Second

// handleLive streams a page's live fragment as Server-Sent Events: the
// server renders the same template the page was built with and sends it
// only when it changed; the page's script swaps it in. Escaping stays in
// html/template, and a page works (without updates) if the script is off.
func (s *Server) handleLive(w http.ResponseWriter, r *http.Request) {
	render, err := s.liveView(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	base := page{ReadOnly: s.cfg.ReadOnly}
	if c, err := r.Cookie(csrfCookie); err == nil {
		base.CSRF = c.Value
	}
	// Tell the browser to reconnect quickly after a server restart.
	_, _ = fmt.Fprint(w, "retry: 2000\n\n")
	flusher.Flush()

	ctx := r.Context()
	t := time.NewTicker(liveInterval)
	defer t.Stop()
	var last []byte
	lastSent := time.Now()
	for {
		var buf bytes.Buffer
		p := base
		name, data := render(ctx)
		p.Data = data
		if err := fragments().ExecuteTemplate(&buf, name, p); err != nil {
			s.logger.Error("dashboard fragment failed", "fragment", name, "error", err)
			return
		}
		if !bytes.Equal(buf.Bytes(), last) {
			last = buf.Bytes()
			_, _ = w.Write(sseEvent("live", last))
			flusher.Flush()
			lastSent = time.Now()
		} else if time.Since(lastSent) > 15*time.Second {
			// A comment keeps proxies from closing an idle stream.
			_, _ = fmt.Fprint(w, ": keepalive\n\n")
			flusher.Flush()
			lastSent = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sseEvent frames data as one event; every line of it gets its own "data:"
// prefix, which EventSource joins back with newlines.
func sseEvent(event string, data []byte) []byte {
	var b bytes.Buffer
	b.WriteString("event: " + event + "\n")
	for line := range strings.SplitSeq(string(data), "\n") {
		b.WriteString("data: ")
		b.WriteString(strings.TrimSuffix(line, "\r"))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// liveView picks the fragment and data source of a live view.
func (s *Server) liveView(r *http.Request) (func(context.Context) (string, any), error) {
	q := r.URL.Query()
	switch r.PathValue("view") {
	case "overview":
		return func(ctx context.Context) (string, any) { return "overview-live", s.overview(ctx) }, nil
	case "pool":
		name := q.Get("name")
		if _, ok := s.cp.Pool(name); !ok {
			return nil, fmt.Errorf("no pool named %q", name)
		}
		span := q.Get("span")
		if !slices.Contains(chartSpans, span) {
			span = "15m"
		}
		return func(ctx context.Context) (string, any) { return "pool-live", s.poolPage(ctx, name, span) }, nil
	case "workers":
		return func(ctx context.Context) (string, any) { return "workers-live", s.workers(ctx) }, nil
	case "schedules":
		return func(ctx context.Context) (string, any) { return "schedules-live", s.schedules(ctx) }, nil
	case "task":
		id := q.Get("id")
		return func(ctx context.Context) (string, any) { return "task-live", s.taskData(ctx, id) }, nil
	}
	if f := s.celeryLiveView(r.PathValue("view"), q); f != nil {
		return f, nil
	}
	return nil, fmt.Errorf("no live view %q", r.PathValue("view"))
}
