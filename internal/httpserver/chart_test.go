package httpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"html"
	"html/template"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/controlplane"
)

// hostileReason is a decision reason that would run script, or break out of
// an attribute, if the chart put it into the page as markup.
const hostileReason = `queue <script>alert(1)</script> "quoted" 'single' & <b onmouseover="x">`

// svgElem is an element of a parsed chart: its name, attributes and the
// text directly inside it.
type svgElem struct {
	Name  string
	Attrs map[string]string
	Text  string
}

// parseSVG reads the first <svg class="chart"> in page as XML, which the
// chart must be: a browser parses SVG in HTML leniently, XML does not, so a
// tag smuggled in through the data shows up as an element here.
func parseSVG(t *testing.T, page string) (string, []svgElem) {
	t.Helper()
	start := strings.Index(page, `<svg class="chart"`)
	if start < 0 {
		t.Fatalf("no chart on the page:\n%.2000s", page)
	}
	end := strings.Index(page[start:], "</svg>")
	if end < 0 {
		t.Fatalf("chart is not closed")
	}
	svg := page[start : start+end+len("</svg>")]
	var elems []svgElem
	var open []int
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed SVG: %v\n%s", err, svg)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := svgElem{Name: tok.Name.Local, Attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.Attrs[a.Name.Local] = a.Value
			}
			elems = append(elems, e)
			open = append(open, len(elems)-1)
		case xml.EndElement:
			open = open[:len(open)-1]
		case xml.CharData:
			if len(open) > 0 {
				elems[open[len(open)-1]].Text += string(tok)
			}
		}
	}
	return svg, elems
}

// pathData is what the chart's path geometry may contain; anything else
// (say html/template's ZgotmplZ, or an entity) means an attribute was
// escaped for the wrong context.
var pathData = regexp.MustCompile(`^[MHVZ0-9. -]+$`)

func TestPoolChartEscapesDecisionReasons(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", false)
	ctx := context.Background()
	now := time.Now()
	for i, pt := range []controlplane.Point{{Queued: 3, Desired: 1}, {Queued: 40, Desired: 2}, {Queued: 10, InFlight: 8, Workers: 2, Busy: 2, Desired: 2}, {Workers: 1, Busy: 1, Desired: 1}} {
		pt.At = now.Add(time.Duration(i-4) * time.Minute)
		f.cp.RecordPoint("default", pt)
	}
	// Decisions are fenced by leadership; this test leads a name of its own.
	l, err := f.drv.LeaderAttempt(ctx, ebbdriver.LeaderParams{Name: "chart-test", ID: "tester", TTL: time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	at := now.Add(-3 * time.Minute)
	dec := &ebbtype.Decision{Pool: "default", At: at, Term: l.Term, LeaderID: "tester", From: 0, To: 2,
		Action: "up", Reason: hostileReason, Inputs: json.RawMessage(`{}`)}
	if err := f.drv.DecisionAppend(ctx, "chart-test", dec); err != nil {
		t.Fatal(err)
	}

	for _, span := range chartSpans {
		code, page := newBrowser(t, f.http.URL).do("GET", "/pools/default?span="+span, nil)
		if code != http.StatusOK {
			t.Fatalf("span %s: pool page %d", span, code)
		}
		if strings.Contains(page, "<script>alert") || strings.Contains(page, `<b onmouseover`) {
			t.Errorf("span %s: the decision's reason reached the page as markup", span)
		}
		svg, elems := parseSVG(t, page)
		escaped := html.EscapeString(hostileReason)
		if n := strings.Count(svg, escaped); n != 1 {
			t.Errorf("span %s: chart has the escaped reason %d times, want once (its tooltip)", span, n)
		}
		// The decisions table below the chart shows it too, escaped the same.
		if n := strings.Count(page, escaped); n != 2 {
			t.Errorf("span %s: page has the escaped reason %d times, want 2 (tooltip and table)", span, n)
		}

		var titles []string
		classes := map[string]svgElem{}
		for _, e := range elems {
			switch e.Name {
			case "svg", "text", "tspan", "line", "path", "title":
			default:
				t.Errorf("span %s: chart has a <%s> element", span, e.Name)
			}
			if e.Name == "title" {
				titles = append(titles, e.Text)
			}
			if e.Name == "path" {
				classes[e.Attrs["class"]] = e
			}
			if e.Name == "line" && strings.HasPrefix(e.Attrs["class"], "decision") && e.Attrs["class"] != "decision up" {
				t.Errorf("span %s: decision tick class %q", span, e.Attrs["class"])
			}
			for k := range e.Attrs {
				if strings.HasPrefix(k, "on") {
					t.Errorf("span %s: <%s> has an event handler %s", span, e.Name, k)
				}
			}
		}
		want := at.UTC().Format("15:04:05") + " up: 0 → 2, " + hostileReason
		if len(titles) != 1 || titles[0] != want {
			t.Errorf("span %s: tooltips %q, want exactly [%q]", span, titles, want)
		}
		for _, class := range []string{"queued", "inflight", "busy", "desired", "workers"} {
			p, ok := classes[class]
			if !ok {
				t.Errorf("span %s: chart has no %s path", span, class)
				continue
			}
			if !pathData.MatchString(p.Attrs["d"]) {
				t.Errorf("span %s: %s path d=%q is not plain path data", span, class, p.Attrs["d"])
			}
		}
		if !strings.Contains(svg, `d="M`) {
			t.Errorf("span %s: path data is not written verbatim:\n%s", span, svg)
		}
	}
}

// TestChartTemplateEscapesAttributes feeds markup through every string the
// chart puts into an attribute or a text node.
func TestChartTemplateEscapesAttributes(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := chartData{From: now.Add(-5 * time.Minute), To: now, Max: 3,
		Points: []controlplane.Point{{At: now.Add(-4 * time.Minute), Queued: 5, Workers: 1, Desired: -1}},
		Decisions: []ebbtype.Decision{{At: now.Add(-time.Minute), From: 1, To: 0,
			Action: `down" onload="alert(1)`, Reason: `</title><script>alert(2)</script>`}}}
	var buf bytes.Buffer
	if err := fragments().ExecuteTemplate(&buf, "chart", newChartView(c)); err != nil {
		t.Fatal(err)
	}
	_, elems := parseSVG(t, buf.String())
	ticks := 0
	for _, e := range elems {
		if e.Name == "script" {
			t.Errorf("chart has a <script>")
		}
		if _, ok := e.Attrs["onload"]; ok {
			t.Errorf("<%s> got an onload attribute", e.Name)
		}
		if e.Name == "line" && strings.HasPrefix(e.Attrs["class"], "decision ") {
			ticks++
			if got, want := e.Attrs["class"], "decision "+c.Decisions[0].Action; got != want {
				t.Errorf("decision class %q, want %q", got, want)
			}
		}
		if e.Name == "title" && !strings.HasSuffix(e.Text, c.Decisions[0].Reason) {
			t.Errorf("tooltip %q does not end with the reason as text", e.Text)
		}
		if e.Name == "path" && e.Attrs["class"] == "desired" {
			t.Errorf("desired is drawn for a replica that does not know it")
		}
	}
	if ticks != 1 {
		t.Errorf("%d decision ticks, want 1", ticks)
	}

	// Without samples the chart says so instead of drawing empty paths.
	buf.Reset()
	if err := fragments().ExecuteTemplate(&buf, "chart", newChartView(chartData{From: now.Add(-time.Hour), To: now})); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "no samples yet") || strings.Contains(buf.String(), "<path") {
		t.Errorf("empty chart:\n%s", buf.String())
	}
}

func TestOverviewSparkline(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", false)
	now := time.Now()
	for i, pt := range []controlplane.Point{{Queued: 4}, {Queued: 9, Workers: 2}} {
		pt.At = now.Add(time.Duration(i-2) * time.Minute)
		f.cp.RecordPoint("default", pt)
	}
	code, page := newBrowser(t, f.http.URL).do("GET", "/", nil)
	if code != http.StatusOK {
		t.Fatalf("overview: %d", code)
	}
	spark := regexp.MustCompile(`<svg class="spark" viewBox="0 0 160 36" preserveAspectRatio="none" aria-hidden="true"><path class="queued" d="([^"]+)"/><path class="workers" d="([^"]+)"/></svg>`)
	m := spark.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no sparkline on the overview:\n%.3000s", page)
	}
	for _, d := range m[1:] {
		if !pathData.MatchString(d) {
			t.Errorf("sparkline path d=%q is not plain path data", d)
		}
	}
}

// TestNoTemplateFuncReturnsTrustedHTML keeps markup in the templates, where
// html/template escapes it by context: a function returning template.HTML
// would carry hand-built markup past the escaper.
func TestNoTemplateFuncReturnsTrustedHTML(t *testing.T) {
	t.Parallel()
	trusted := reflect.TypeFor[template.HTML]()
	for name, fn := range templateFuncs {
		ft := reflect.TypeOf(fn)
		for i := range ft.NumOut() {
			if ft.Out(i) == trusted {
				t.Errorf("template func %q returns template.HTML", name)
			}
		}
	}
	for _, name := range []string{"chart", "sparkline"} {
		if pageTemplates()["pool"].Lookup(name) == nil {
			t.Errorf("no %q template: the markup must live in a template", name)
		}
	}
}
