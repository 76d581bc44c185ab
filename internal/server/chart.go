package server

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
)

// chartData is a pool's timeline over a window.
type chartData struct {
	From, To  time.Time
	Points    []Point
	Decisions []ebbdriver.Decision
	Max       int // the pool's max workers, the workers panel's floor
}

// Geometry of the pool chart (SVG user units; the SVG scales to its box).
const (
	chartW       = 800.0
	chartLeft    = 44.0
	chartRight   = 8.0
	tasksTop     = 22.0
	tasksBottom  = 150.0
	workerTop    = 186.0
	workerBottom = 296.0
	chartH       = 318.0
)

// renderChart draws two panels over one time axis: tasks (queued as an
// area, in flight as a line) above workers (running as a step line, busy as
// an area, desired dashed), with the autoscaler's decisions as ticks whose
// tooltips give the reason. Everything is computed here, so the chart needs
// no script and renders the same in a screenshot.
func renderChart(c chartData) template.HTML {
	span := c.To.Sub(c.From).Seconds()
	if span <= 0 {
		span = 1
	}
	x := func(t time.Time) float64 {
		f := t.Sub(c.From).Seconds() / span
		return chartLeft + math.Max(0, math.Min(1, f))*(chartW-chartLeft-chartRight)
	}
	var maxTasks, maxWorkers float64 = 1, float64(max(1, c.Max))
	for _, p := range c.Points {
		maxTasks = math.Max(maxTasks, float64(max(p.Queued, p.InFlight)))
		maxWorkers = math.Max(maxWorkers, float64(max(p.Workers, p.Desired)))
	}
	maxTasks = niceCeil(maxTasks)
	yT := func(v float64) float64 { return tasksBottom - v/maxTasks*(tasksBottom-tasksTop) }
	yW := func(v float64) float64 { return workerBottom - v/maxWorkers*(workerBottom-workerTop) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="queue depth, tasks in flight and workers over the last %s">`,
		chartW, chartH, fmtDuration(c.To.Sub(c.From)))
	panel := func(top, bottom, maxV float64, title string, y func(float64) float64) {
		fmt.Fprintf(&b, `<text class="ptitle" x="%.0f" y="%.0f">%s</text>`, chartLeft, top-8, title)
		for _, f := range []float64{0, 0.5, 1} {
			v := maxV * f
			fmt.Fprintf(&b, `<line class="grid" x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f"/><text class="ylab" x="%.0f" y="%.1f">%s</text>`,
				chartLeft, chartW-chartRight, y(v), y(v), chartLeft-6, y(v)+4, shortNum(v))
		}
	}
	panel(tasksTop, tasksBottom, maxTasks, `tasks: <tspan class="k-queued">■ queued</tspan> <tspan class="k-inflight">― in flight</tspan>`, yT)
	panel(workerTop, workerBottom, maxWorkers, `workers: <tspan class="k-workers">― running</tspan> <tspan class="k-busy">■ busy</tspan> <tspan class="k-desired">┄ desired</tspan>`, yW)

	if len(c.Points) == 0 {
		fmt.Fprintf(&b, `<text class="empty" x="%.0f" y="%.0f">no samples yet: the chart fills while the server runs</text>`, chartW/2, (tasksTop+tasksBottom)/2)
	} else {
		val := func(f func(Point) float64) func(Point) (float64, bool) {
			return func(p Point) (float64, bool) { return f(p), true }
		}
		area := func(class string, y func(float64) float64, bottom float64, v func(Point) (float64, bool)) {
			if d := stepPath(c, x, y, v); d != "" {
				fmt.Fprintf(&b, `<path class="%s" d="%s V%.1f H%.1f Z"/>`, class, d, bottom, x(c.pointStart()))
			}
		}
		line := func(class string, y func(float64) float64, v func(Point) (float64, bool)) {
			if d := stepPath(c, x, y, v); d != "" {
				fmt.Fprintf(&b, `<path class="%s" d="%s"/>`, class, d)
			}
		}
		area("queued", yT, tasksBottom, val(func(p Point) float64 { return float64(p.Queued) }))
		line("inflight", yT, val(func(p Point) float64 { return float64(p.InFlight) }))
		area("busy", yW, workerBottom, val(func(p Point) float64 { return float64(p.Busy) }))
		line("desired", yW, func(p Point) (float64, bool) { return float64(p.Desired), p.Desired >= 0 })
		line("workers", yW, val(func(p Point) float64 { return float64(p.Workers) }))
	}
	for _, d := range c.Decisions {
		if d.At.Before(c.From) || d.At.After(c.To) {
			continue
		}
		fmt.Fprintf(&b, `<line class="decision %s" x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f"><title>%s %s: %d → %d, %s</title></line>`,
			template.HTMLEscapeString(d.Action), x(d.At), x(d.At), workerTop-4, workerBottom,
			d.At.UTC().Format("15:04:05"), template.HTMLEscapeString(d.Action), d.From, d.To, template.HTMLEscapeString(d.Reason))
	}
	// Time axis: minutes ago, so nobody converts time zones at a glance.
	for i := 0; i <= 4; i++ {
		t := c.From.Add(time.Duration(float64(c.To.Sub(c.From)) * float64(i) / 4))
		label := "now"
		if i < 4 {
			label = "−" + fmtDuration(c.To.Sub(t).Round(time.Second))
		}
		fmt.Fprintf(&b, `<text class="xlab" x="%.1f" y="%.0f">%s</text>`, x(t), chartH-4, label)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// chartFrom is where a chart of span ending at now starts: a timeline
// younger than the span (the server just started) fills the chart, with a
// small margin and at least minSpan shown, instead of hugging its right edge.
func chartFrom(points []Point, now time.Time, span, minSpan time.Duration) time.Time {
	from := now.Add(-span)
	if len(points) == 0 || !points[0].At.After(from) {
		return from
	}
	from = points[0].At.Add(-now.Sub(points[0].At) / 20)
	if earliest := now.Add(-minSpan); from.After(earliest) {
		from = earliest
	}
	return from
}

func (c chartData) pointStart() time.Time {
	if len(c.Points) == 0 || c.Points[0].At.Before(c.From) {
		return c.From
	}
	return c.Points[0].At
}

// stepPath draws a value as steps: it holds until the next sample and the
// last one holds until the window's end. Samples where ok is false (desired
// on a replica that does not lead) break the line.
func stepPath(c chartData, x func(time.Time) float64, y func(float64) float64, v func(Point) (float64, bool)) string {
	var b strings.Builder
	drawing := false
	for i, p := range c.Points {
		val, ok := v(p)
		at := p.At
		if at.Before(c.From) {
			at = c.From
		}
		if !ok {
			if drawing {
				fmt.Fprintf(&b, " H%.1f", x(at))
			}
			drawing = false
			continue
		}
		if !drawing {
			fmt.Fprintf(&b, " M%.1f %.1f", x(at), y(val))
			drawing = true
		} else {
			fmt.Fprintf(&b, " H%.1f V%.1f", x(at), y(val))
		}
		if i == len(c.Points)-1 {
			fmt.Fprintf(&b, " H%.1f", x(c.To))
		}
	}
	return strings.TrimSpace(b.String())
}

// niceCeil rounds an axis maximum up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.4g", v)
}

// renderSparkline is the overview's five-minute glance at a pool: workers as
// a step line over the queue depth as an area, each scaled to its own peak.
func renderSparkline(ps []Point) template.HTML {
	if len(ps) == 0 {
		return ""
	}
	to := time.Now()
	c := chartData{From: chartFrom(ps, to, 5*time.Minute, 30*time.Second), To: to, Points: ps}
	const w, h = 160.0, 36.0
	span := to.Sub(c.From).Seconds()
	x := func(t time.Time) float64 { return math.Max(0, math.Min(1, t.Sub(c.From).Seconds()/span)) * w }
	var mq, mw float64 = 1, 1
	for _, p := range ps {
		mq, mw = math.Max(mq, float64(p.Queued)), math.Max(mw, float64(p.Workers))
	}
	q := stepPath(c, x, func(v float64) float64 { return h - v/mq*(h-2) }, func(p Point) (float64, bool) { return float64(p.Queued), true })
	wk := stepPath(c, x, func(v float64) float64 { return h - 1 - v/mw*(h-4) }, func(p Point) (float64, bool) { return float64(p.Workers), true })
	return template.HTML(fmt.Sprintf(`<svg class="spark" viewBox="0 0 %.0f %.0f" preserveAspectRatio="none" aria-hidden="true"><path class="queued" d="%s V%.0f H%.1f Z"/><path class="workers" d="%s"/></svg>`,
		w, h, q, h, x(c.pointStart()), wk))
}
