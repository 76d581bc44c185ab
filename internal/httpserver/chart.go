package httpserver

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/controlplane"
)

// chartData is a pool's timeline over a window.
type chartData struct {
	From, To  time.Time
	Points    []controlplane.Point
	Decisions []ebbtype.Decision
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

// chartView is the pool chart ready to draw (the "chart" template in
// fragments.html). Coordinates are formatted here so the template only
// places elements; whatever came from the broker, such as a decision's
// reason, stays a plain string that html/template escapes.
type chartView struct {
	Width, Height string
	Span          string // the window, for the aria-label
	Panels        []chartPanel
	Empty         *chartText // set when there are no samples to draw
	Series        []chartSeries
	Decisions     []chartDecision
	XTicks        []chartText
}

type chartText struct{ X, Y, Text string }

// chartPanel is one panel's title, legend and horizontal grid.
type chartPanel struct {
	Title chartText
	Keys  []chartKey
	Grid  []chartGrid
}

type chartKey struct{ Class, Label string }

type chartGrid struct {
	X1, X2, Y string
	Label     chartText
}

// chartSeries is one path; Class picks its style (queued, inflight, busy,
// desired, workers).
type chartSeries struct{ Class, D string }

// chartDecision is an autoscaler decision's tick; its tooltip reads
// "At Action: From → To, Reason".
type chartDecision struct {
	Action    string
	X, Y1, Y2 string
	At        string
	From, To  int
	Reason    string
}

// f0 and f1 format coordinates: whole units where a pixel is plenty,
// tenths where lines must meet.
func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// newChartView lays out two panels over one time axis: tasks (queued as an
// area, in flight as a line) above workers (running as a step line, busy as
// an area, desired dashed), with the autoscaler's decisions as ticks whose
// tooltips give the reason. Everything is computed on the server, so the
// chart needs no script and renders the same in a screenshot.
func newChartView(c chartData) chartView {
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

	v := chartView{Width: f0(chartW), Height: f0(chartH), Span: fmtDuration(c.To.Sub(c.From))}
	panel := func(top, maxV float64, title string, keys []chartKey, y func(float64) float64) chartPanel {
		p := chartPanel{Title: chartText{X: f0(chartLeft), Y: f0(top - 8), Text: title}, Keys: keys}
		for _, f := range []float64{0, 0.5, 1} {
			val := maxV * f
			p.Grid = append(p.Grid, chartGrid{X1: f0(chartLeft), X2: f0(chartW - chartRight), Y: f1(y(val)),
				Label: chartText{X: f0(chartLeft - 6), Y: f1(y(val) + 4), Text: shortNum(val)}})
		}
		return p
	}
	v.Panels = []chartPanel{
		panel(tasksTop, maxTasks, "tasks", []chartKey{{"queued", "■ queued"}, {"inflight", "― in flight"}}, yT),
		panel(workerTop, maxWorkers, "workers", []chartKey{{"workers", "― running"}, {"busy", "■ busy"}, {"desired", "┄ desired"}}, yW),
	}

	if len(c.Points) == 0 {
		v.Empty = &chartText{X: f0(chartW / 2), Y: f0((tasksTop + tasksBottom) / 2)}
	} else {
		val := func(f func(controlplane.Point) float64) func(controlplane.Point) (float64, bool) {
			return func(p controlplane.Point) (float64, bool) { return f(p), true }
		}
		area := func(class string, y func(float64) float64, bottom float64, value func(controlplane.Point) (float64, bool)) {
			if d := stepPath(c, x, y, value); d != "" {
				v.Series = append(v.Series, chartSeries{Class: class, D: d + " V" + f1(bottom) + " H" + f1(x(c.pointStart())) + " Z"})
			}
		}
		line := func(class string, y func(float64) float64, value func(controlplane.Point) (float64, bool)) {
			if d := stepPath(c, x, y, value); d != "" {
				v.Series = append(v.Series, chartSeries{Class: class, D: d})
			}
		}
		area("queued", yT, tasksBottom, val(func(p controlplane.Point) float64 { return float64(p.Queued) }))
		line("inflight", yT, val(func(p controlplane.Point) float64 { return float64(p.InFlight) }))
		area("busy", yW, workerBottom, val(func(p controlplane.Point) float64 { return float64(p.Busy) }))
		line("desired", yW, func(p controlplane.Point) (float64, bool) { return float64(p.Desired), p.Desired >= 0 })
		line("workers", yW, val(func(p controlplane.Point) float64 { return float64(p.Workers) }))
	}
	for _, d := range c.Decisions {
		if d.At.Before(c.From) || d.At.After(c.To) {
			continue
		}
		v.Decisions = append(v.Decisions, chartDecision{Action: d.Action, X: f1(x(d.At)), Y1: f0(workerTop - 4), Y2: f0(workerBottom),
			At: d.At.UTC().Format("15:04:05"), From: d.From, To: d.To, Reason: d.Reason})
	}
	// Time axis: minutes ago, so nobody converts time zones at a glance.
	for i := 0; i <= 4; i++ {
		t := c.From.Add(time.Duration(float64(c.To.Sub(c.From)) * float64(i) / 4))
		label := "now"
		if i < 4 {
			label = "−" + fmtDuration(c.To.Sub(t).Round(time.Second))
		}
		v.XTicks = append(v.XTicks, chartText{X: f1(x(t)), Y: f0(chartH - 4), Text: label})
	}
	return v
}

// chartFrom is where a chart of span ending at now starts: a timeline
// younger than the span (the server just started) fills the chart, with a
// small margin and at least minSpan shown, instead of hugging its right edge.
func chartFrom(points []controlplane.Point, now time.Time, span, minSpan time.Duration) time.Time {
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
func stepPath(c chartData, x func(time.Time) float64, y func(float64) float64, v func(controlplane.Point) (float64, bool)) string {
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

// sparkView is the overview's five-minute glance at a pool (the
// "sparkline" template): workers as a step line over the queue depth as an
// area, each scaled to its own peak.
type sparkView struct {
	Width, Height   string
	Queued, Workers string // path data
}

// newSparkView returns nil for a pool without samples, which draws nothing.
func newSparkView(ps []controlplane.Point) *sparkView {
	if len(ps) == 0 {
		return nil
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
	q := stepPath(c, x, func(v float64) float64 { return h - v/mq*(h-2) }, func(p controlplane.Point) (float64, bool) { return float64(p.Queued), true })
	wk := stepPath(c, x, func(v float64) float64 { return h - 1 - v/mw*(h-4) }, func(p controlplane.Point) (float64, bool) { return float64(p.Workers), true })
	return &sparkView{Width: f0(w), Height: f0(h), Queued: q + " V" + f0(h) + " H" + f1(x(c.pointStart())) + " Z", Workers: wk}
}
