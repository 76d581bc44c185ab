package sim

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// CostChartName is the bar chart of cost over the bound.
const CostChartName = "sim-cost.png"

// TimelineName is the file of one charted run.
func TimelineName(trace string, startup time.Duration) string {
	return fmt.Sprintf("sim-%s-%gs.png", trace, startup.Seconds())
}

var (
	cBackground = color.RGBA{255, 255, 255, 255}
	cPanel      = color.RGBA{250, 250, 250, 255}
	cGrid       = color.RGBA{225, 225, 225, 255}
	cText       = color.RGBA{40, 40, 40, 255}
	cMuted      = color.RGBA{110, 110, 110, 255}
	cNeed       = color.RGBA{210, 210, 210, 255}
	cWorkers    = color.RGBA{232, 113, 10, 255}
	cQueue      = color.RGBA{31, 119, 180, 255}
	cInterrupt  = color.RGBA{214, 39, 40, 255}
	cTarget     = color.RGBA{214, 39, 40, 255}

	// policyColors keep one colour per policy across charts.
	policyColors = map[string]color.RGBA{
		"ebb":        {232, 113, 10, 255},
		"ebb-before": {245, 185, 113, 255},
		"seed":       {123, 79, 160, 255},
		"cdk":        {31, 119, 180, 255},
		"cdk-wake1":  {127, 179, 224, 255},
		"keda":       {44, 160, 44, 255},
	}
)

// canvas wraps an image with the few drawing operations charts need.
type canvas struct{ *image.RGBA }

func newCanvas(w, h int) canvas {
	c := canvas{image.NewRGBA(image.Rect(0, 0, w, h))}
	draw.Draw(c.RGBA, c.Bounds(), &image.Uniform{cBackground}, image.Point{}, draw.Src)
	return c
}

func (c canvas) rect(x0, y0, x1, y1 int, col color.Color) {
	draw.Draw(c.RGBA, image.Rect(x0, y0, x1, y1).Intersect(c.Bounds()), &image.Uniform{col}, image.Point{}, draw.Over)
}

func (c canvas) vline(x, y0, y1, thick int, col color.Color) {
	if y0 > y1 {
		y0, y1 = y1, y0
	}
	c.rect(x, y0, x+thick, y1+thick, col)
}

func (c canvas) hline(x0, x1, y, thick int, col color.Color) { c.rect(x0, y, x1, y+thick, col) }

func (c canvas) dashed(x0, x1, y int, col color.Color) {
	for x := x0; x < x1; x += 8 {
		c.hline(x, min(x+5, x1), y, 1, col)
	}
}

// text draws s with its baseline-top at (x, y), scaled by an integer factor.
func (c canvas) text(x, y int, s string, col color.Color, scale int) int {
	face := basicfont.Face7x13
	w := font.MeasureString(face, s).Ceil()
	if scale <= 1 {
		d := font.Drawer{Dst: c.RGBA, Src: image.NewUniform(col), Face: face, Dot: fixed.P(x, y+face.Ascent)}
		d.DrawString(s)
		return w
	}
	glyphs(s, col, func(tx, ty int, px color.Color) {
		c.rect(x+tx*scale, y+ty*scale, x+(tx+1)*scale, y+(ty+1)*scale, px)
	})
	return w * scale
}

// vtext draws s rotated a quarter turn anticlockwise, its bottom end at
// (x, y).
func (c canvas) vtext(x, y int, s string, col color.Color) {
	glyphs(s, col, func(tx, ty int, px color.Color) { c.Set(x+ty, y-tx, px) })
}

// glyphs renders s in col on a scratch image and calls set with each inked
// pixel, at its place in that image.
func glyphs(s string, col color.Color, set func(tx, ty int, px color.Color)) {
	face := basicfont.Face7x13
	w := font.MeasureString(face, s).Ceil()
	tmp := image.NewRGBA(image.Rect(0, 0, w, face.Height))
	d := font.Drawer{Dst: tmp, Src: image.NewUniform(col), Face: face, Dot: fixed.P(0, face.Ascent)}
	d.DrawString(s)
	for ty := range face.Height {
		for tx := range w {
			if _, _, _, a := tmp.At(tx, ty).RGBA(); a > 0 {
				set(tx, ty, tmp.At(tx, ty))
			}
		}
	}
}

func (c canvas) save(path string) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, c.RGBA); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// column is a step series reduced to one pixel column.
type column struct{ lo, hi, first, last int }

// columns reduces a step series (each point holds until the next) to n
// pixel columns over [t0, t1).
func columns(points []Point, get func(Point) int, t0, t1 time.Duration, n int) []column {
	out := make([]column, n)
	valueAt := func(t time.Duration) (int, int) { // value, index of the next point
		i := sort.Search(len(points), func(i int) bool { return points[i].At > t })
		if i == 0 {
			return 0, 0
		}
		return get(points[i-1]), i
	}
	for x := range n {
		a := t0 + time.Duration(float64(t1-t0)*float64(x)/float64(n))
		b := t0 + time.Duration(float64(t1-t0)*float64(x+1)/float64(n))
		v, i := valueAt(a)
		col := column{v, v, v, v}
		for ; i < len(points) && points[i].At < b; i++ {
			v = get(points[i])
			col.lo, col.hi, col.last = min(col.lo, v), max(col.hi, v), v
		}
		out[x] = col
	}
	return out
}

// niceMax rounds up to 1, 2 or 5 times a power of ten.
func niceMax(v int) int {
	if v <= 4 {
		return max(v, 1)
	}
	p := int(math.Pow10(int(math.Floor(math.Log10(float64(v))))))
	for _, m := range []int{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// WriteCharts writes every chart into dir and returns the file names.
func (s Suite) WriteCharts(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var names []string
	for _, ch := range Charted {
		c, ok := s.find(ch.Trace, ch.Startup)
		if !ok {
			continue
		}
		name := TimelineName(ch.Trace, ch.Startup)
		if err := timelineChart(c, ch.Window).save(filepath.Join(dir, name)); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	if err := s.costChart().save(filepath.Join(dir, CostChartName)); err != nil {
		return nil, err
	}
	return append(names, CostChartName), nil
}

// timelinePolicies are the panels of a timeline chart: ebb against each
// baseline that scales.
var timelinePolicies = []string{"ebb", "seed", "cdk", "cdk-wake1", "keda"}

func timelineChart(c Case, window time.Duration) canvas {
	const (
		width, left, right = 1200, 64, 72
		header, panelH     = 78, 120
		titleH, gap        = 20, 14
		footer             = 34
	)
	var results []Result
	for _, key := range timelinePolicies {
		if r := c.result(key); r.Policy != "" {
			results = append(results, r)
		}
	}
	height := header + len(results)*(titleH+panelH+gap) + footer
	cv := newCanvas(width, height)
	plotW := width - left - right

	// Shared scales, so panels compare at a glance.
	wmax, qmax := 1, 1
	for _, p := range c.Need {
		if p.At < window {
			wmax = max(wmax, p.Workers)
		}
	}
	for _, r := range results {
		for _, p := range r.Timeline {
			if p.At < window {
				wmax, qmax = max(wmax, p.Workers), max(qmax, p.Queued)
			}
		}
	}
	wmax, qmax = niceMax(wmax), niceMax(qmax)

	cv.text(left, 8, fmt.Sprintf("%s, %s start-up: the first %s", c.Title, formatDuration(c.Startup), formatDuration(window)), cText, 2)
	lx, ly := left, 46
	legend := func(draw func(x, y int), label string) {
		draw(lx, ly)
		lx += 26 + cv.text(lx+22, ly, label, cText, 1) + 18
	}
	legend(func(x, y int) { cv.rect(x, y+1, x+16, y+12, cNeed) }, "workers a clairvoyant needs")
	legend(func(x, y int) { cv.hline(x, x+16, y+6, 3, cWorkers) }, "workers (starting, running, stopping)")
	legend(func(x, y int) { cv.hline(x, x+16, y+6, 2, cQueue) }, "queued tasks (right axis)")
	legend(func(x, y int) { cv.vline(x+7, y, y+12, 2, cInterrupt) }, "task interrupted by scale-in")

	tick := 15 * time.Minute
	if window > 4*time.Hour {
		tick = 2 * time.Hour
	}
	xOf := func(t time.Duration) int { return left + int(float64(plotW)*float64(t)/float64(window)) }
	need := columns(c.Need, func(p Point) int { return p.Workers }, 0, window, plotW)

	y := header
	for _, r := range results {
		title := fmt.Sprintf("%s: %.2fx bound, wait p99 %s, %d interrupted, %d lost", r.Name, r.Ratio, asciiWait(r.WaitP99), r.Interrupted, r.Lost)
		cv.text(left, y+3, title, cText, 1)
		top := y + titleH
		bottom := top + panelH
		cv.rect(left, top, left+plotW, bottom, cPanel)
		yW := func(v int) int { return bottom - int(float64(panelH)*float64(v)/float64(wmax)) }
		yQ := func(v int) int { return bottom - int(float64(panelH)*float64(v)/float64(qmax)) }
		for t := time.Duration(0); t <= window; t += tick {
			cv.vline(xOf(t), top, bottom, 1, cGrid)
		}
		for _, v := range []int{0, wmax / 2, wmax} {
			cv.hline(left, left+plotW, yW(v), 1, cGrid)
			label := fmt.Sprint(v)
			cv.text(left-8-7*len(label), yW(v)-6, label, cWorkers, 1)
		}
		for _, v := range []int{0, qmax / 2, qmax} {
			cv.text(left+plotW+8, yQ(v)-6, fmt.Sprint(v), cQueue, 1)
		}
		for x, col := range need {
			cv.vline(left+x, yW(col.hi), bottom-1, 1, cNeed)
		}
		step := func(cols []column, yOf func(int) int, thick int, cl color.Color) {
			for x, col := range cols {
				if x > 0 {
					cv.vline(left+x, yOf(cols[x-1].last), yOf(col.first), thick, cl)
				}
				cv.vline(left+x, yOf(col.hi), yOf(col.lo), thick, cl)
			}
		}
		step(columns(r.Timeline, func(p Point) int { return p.Queued }, 0, window, plotW), yQ, 1, cQueue)
		step(columns(r.Timeline, func(p Point) int { return p.Workers }, 0, window, plotW), yW, 2, cWorkers)
		for _, at := range r.Interrupts {
			if at < window {
				cv.vline(xOf(at), top, top+14, 2, cInterrupt)
			}
		}
		y = bottom + gap
	}
	cv.text(4, header+3, "workers", cWorkers, 1)
	cv.text(width-right+8, header+3, "queued", cQueue, 1)
	for t := time.Duration(0); t <= window; t += tick {
		label := clock(t)
		cv.text(xOf(t)-len(label)*7/2, y-4, label, cMuted, 1)
	}
	cv.text(left, y+14, "time since the trace began (h:mm)", cMuted, 1)
	return cv
}

func clock(t time.Duration) string {
	return fmt.Sprintf("%d:%02d", int(t.Hours()), int(t.Minutes())%60)
}

func asciiWait(sec float64) string {
	if math.IsInf(sec, 1) {
		return "never (lost)"
	}
	return formatWait(sec)
}

// costPolicies are the bars of the cost chart; always-on is far off its
// scale and is named in its subtitle instead.
var costPolicies = []string{"ebb", "ebb-before", "seed", "cdk", "cdk-wake1", "keda"}

func (s Suite) costChart() canvas {
	const (
		width, height        = 1200, 560
		left, right, top     = 64, 24, 96
		bottomPad            = 70
		ymax                 = 3.0
		barW, barGap, grpGap = 16, 3, 30
	)
	cv := newCanvas(width, height)
	plotH := height - top - bottomPad
	bottom := top + plotH
	yOf := func(v float64) int { return bottom - int(float64(plotH)*min(v, ymax)/ymax) }

	lo, hi := math.Inf(1), 0.0
	for _, c := range s.Cases {
		if r := c.result("always-on"); r.Policy != "" {
			lo, hi = min(lo, r.Ratio), max(hi, r.Ratio)
		}
	}
	cv.text(left, 8, "Cost over the clairvoyant bound (worker-seconds / bound)", cText, 2)
	cv.text(left, 40, fmt.Sprintf("Lower is cheaper. Pale bar: p99 wait above ebb's max wait for the trace. \"lost\": tasks never completed. Always-on N costs %.1f-%.0fx, off the scale.", lo, hi), cMuted, 1)
	lx := left
	for _, key := range costPolicies {
		name := key
		for _, c := range s.Cases {
			if r := c.result(key); r.Policy != "" {
				name = r.Name
				break
			}
		}
		cv.rect(lx, 62, lx+14, 74, policyColors[key])
		lx += 20 + cv.text(lx+20, 62, name, cText, 1) + 16
	}

	for v := 0.0; v <= ymax+1e-9; v += 0.5 {
		cv.hline(left, width-right, yOf(v), 1, cGrid)
		label := fmt.Sprintf("%.1fx", v)
		cv.text(left-8-7*len(label), yOf(v)-6, label, cMuted, 1)
	}
	cv.dashed(left, width-right, yOf(Acceptance.Target), cTarget)
	cv.dashed(lx, lx+24, 68, cTarget)
	cv.text(lx+30, 62, fmt.Sprintf("target %.2fx", Acceptance.Target), cTarget, 1)

	groupW := len(costPolicies)*(barW+barGap) - barGap
	x := left + 20
	for _, tr := range s.Traces {
		for _, d := range Startups {
			c, ok := s.find(tr.Name, d)
			if !ok {
				continue
			}
			for i, key := range costPolicies {
				r := c.result(key)
				if r.Policy == "" {
					continue
				}
				bx := x + i*(barW+barGap)
				col := policyColors[key]
				if r.WaitP99 > tr.MaxWait.Seconds() {
					col = color.RGBA{col.R/3 + 170, col.G/3 + 170, col.B/3 + 170, 255}
				}
				cv.rect(bx, yOf(r.Ratio), bx+barW, bottom, col)
				label := fmt.Sprintf("%.2f", r.Ratio)
				if r.Lost > 0 {
					label += " lost"
					cv.rect(bx, bottom-3, bx+barW, bottom, cInterrupt)
				}
				cv.vtext(bx+2, yOf(r.Ratio)-4, label, cText)
			}
			cv.text(x+groupW/2-len(tr.Name)*7/2, bottom+8, tr.Name, cText, 1)
			sl := formatDuration(d) + " start"
			cv.text(x+groupW/2-len(sl)*7/2, bottom+24, sl, cMuted, 1)
			x += groupW + grpGap
		}
	}
	return cv
}
