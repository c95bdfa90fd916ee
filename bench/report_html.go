package bench

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"os"
	"slices"
	"strings"
)

// palette colours the series of the charts.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

// series is one line of a chart; Seg numbers the contiguous stretches (a
// target's phases are apart in time), which are drawn unconnected.
type series struct {
	Name  string
	Color string
	X, Y  []float64
	Seg   []int
}

// axis describes one axis: its range, whether it is logarithmic, and its
// labelled ticks.
type axis struct {
	Label    string
	Min, Max float64
	Log      bool
	Ticks    []float64
	Format   func(float64) string
}

// svgChart draws series as lines on an inline SVG, with axes, ticks and a
// legend; no script, no external resource.
func svgChart(title string, xa, ya axis, ss []series) template.HTML {
	const w, h, left, right, top, bottom = 920.0, 380.0, 70.0, 20.0, 30.0, 50.0
	pw, ph := w-left-right, h-top-bottom
	tr := func(v float64, a axis) float64 {
		if a.Log {
			v, a.Min, a.Max = math.Log10(math.Max(v, a.Min)), math.Log10(a.Min), math.Log10(a.Max)
		}
		if a.Max == a.Min {
			return 0
		}
		return (v - a.Min) / (a.Max - a.Min)
	}
	px := func(v float64) float64 { return left + tr(v, xa)*pw }
	py := func(v float64) float64 { return top + ph - tr(v, ya)*ph }
	var b strings.Builder
	esc := template.HTMLEscapeString
	legendRows := (len(ss) + 3) / 4
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`,
		w, h+float64(legendRows)*18, w, h+float64(legendRows)*18)
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14" font-weight="bold">%s</text>`, left, esc(title))
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, left, top, pw, ph)
	for _, t := range ya.Ticks {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`,
			left, y, left+pw, y, left-6, y+4, esc(ya.Format(t)))
	}
	for _, t := range xa.Ticks {
		x := px(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`,
			x, top, x, top+ph, x, top+ph+16, esc(xa.Format(t)))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, left+pw/2, top+ph+34, esc(xa.Label))
	fmt.Fprintf(&b, `<text transform="translate(16,%.1f) rotate(-90)" text-anchor="middle">%s</text>`, top+ph/2, esc(ya.Label))
	for i, s := range ss {
		c := s.Color
		if c == "" {
			c = palette[i%len(palette)]
		}
		var pts []string
		flush := func() {
			if len(pts) == 1 {
				pts = append(pts, pts[0]) // a lone point still shows as a dot
			}
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" stroke-linecap="round" points="%s"/>`, c, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for j := range s.X {
			if j > 0 && s.Seg != nil && s.Seg[j] != s.Seg[j-1] {
				flush()
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.X[j]), py(s.Y[j])))
		}
		flush()
		lx, ly := left+float64(i%4)*(pw/4), h+float64(i/4)*18
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="14" height="4" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`,
			lx, ly-6, c, lx+20, ly, esc(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text in it went through esc
}

// barGroup is one group of bars of svgBars: a label and one value per
// series (NaN: no bar).
type barGroup struct {
	Label  string
	Values []float64
}

// svgBars draws grouped vertical bars on an inline SVG: one group per
// barGroup, one bar per series in each, each bar labelled with its value;
// a legend names the series. No script, no external resource.
func svgBars(title, yLabel string, names []string, colors []string, groups []barGroup, format func(float64) string) template.HTML {
	const w, h, left, right, top, bottom = 920.0, 340.0, 70.0, 20.0, 30.0, 40.0
	pw, ph := w-left-right, h-top-bottom
	ymax := 0.0
	for _, g := range groups {
		for _, v := range g.Values {
			if !math.IsNaN(v) {
				ymax = math.Max(ymax, v)
			}
		}
	}
	yt := niceTicks(math.Max(ymax*1.08, 1e-9), 6)
	top0 := yt[len(yt)-1]
	py := func(v float64) float64 { return top + ph - v/top0*ph }
	var b strings.Builder
	esc := template.HTMLEscapeString
	legendRows := (len(names) + 4) / 5
	fh := h + float64(legendRows)*18
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`,
		w, fh, w, fh)
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14" font-weight="bold">%s</text>`, left, esc(title))
	for _, t := range yt {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`,
			left, y, left+pw, y, left-6, y+4, esc(numFormat(t)))
	}
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, left, top, pw, ph)
	fmt.Fprintf(&b, `<text transform="translate(16,%.1f) rotate(-90)" text-anchor="middle">%s</text>`, top+ph/2, esc(yLabel))
	gw := pw / float64(max(len(groups), 1))
	bw := gw * 0.8 / float64(max(len(names), 1))
	for gi, g := range groups {
		x0 := left + float64(gi)*gw + gw*0.1
		for si, v := range g.Values {
			if math.IsNaN(v) || si >= len(names) {
				continue
			}
			x, y := x0+float64(si)*bw, py(v)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`,
				x+1, y, math.Max(bw-2, 1), top+ph-y, colors[si%len(colors)], esc(g.Label+" · "+names[si]+": "+format(v)))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`, x+bw/2, y-3, esc(format(v)))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, left+float64(gi)*gw+gw/2, top+ph+18, esc(g.Label))
	}
	for i, n := range names {
		lx, ly := left+float64(i%5)*(pw/5), h+float64(i/5)*18
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="14" height="10" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`,
			lx, ly-9, colors[i%len(colors)], lx+20, ly, esc(n))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text in it went through esc
}

// peersCharts are the proxy comparison as bars: per mode, one bar per path
// for throughput, and one per path for the CPU per GiB of its own processes
// (direct has none).
func (r *Result) peersCharts() (mib, cpu template.HTML) {
	if len(r.Peers) == 0 {
		return "", ""
	}
	var names []string
	for _, p := range r.Peers {
		for _, row := range p.Rows {
			if !slices.Contains(names, row.Path) {
				names = append(names, row.Path)
			}
		}
	}
	var mg, cg []barGroup
	for _, p := range r.Peers {
		m, c := barGroup{Label: p.Mode}, barGroup{Label: p.Mode}
		for _, n := range names {
			mv, cv := math.NaN(), math.NaN()
			for _, row := range p.Rows {
				if row.Path == n {
					mv = row.MiBPerSec
					if row.Processes > 0 {
						cv = row.CPUPerGiB
					}
				}
			}
			m.Values, c.Values = append(m.Values, mv), append(c.Values, cv)
		}
		mg, cg = append(mg, m), append(cg, c)
	}
	f1 := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	f2 := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	return svgBars("Upload throughput per path and mode (median of the rounds)", "MiB/s", names, palette, mg, f1),
		svgBars("CPU seconds per GiB of each path's own processes (direct: none)", "CPU s/GiB", names, palette, cg, f2)
}

// anchorsCharts are the anchors scenario as bars: per anchor, the relay's
// and its reference's requests per second, and their CPU per request on
// the serving side and in the bench process.
func (r *Result) anchorsCharts() (reqs, cpu template.HTML) {
	if r.Anchors == nil || len(r.Anchors.Rows) == 0 {
		return "", ""
	}
	var rg, cg []barGroup
	for i := 0; i < len(r.Anchors.Rows); {
		a := r.Anchors.Rows[i]
		label := fmt.Sprintf("%s ×%d", anchorLabel(mustOp(a.Anchor)), a.Concurrency)
		g, c := barGroup{Label: label}, barGroup{Label: label}
		for range 3 {
			g.Values, c.Values = append(g.Values, math.NaN()), append(c.Values, math.NaN(), math.NaN())
		}
		for ; i < len(r.Anchors.Rows) && r.Anchors.Rows[i].Anchor == a.Anchor && r.Anchors.Rows[i].Concurrency == a.Concurrency; i++ {
			row, k := r.Anchors.Rows[i], 2 // the relay 0, the reference 1, a path besides 2
			switch {
			case row.Reference:
				k = 1
			case row.Path == "relay":
				k = 0
			}
			g.Values[k] = row.ReqPerSec
			c.Values[2*k], c.Values[2*k+1] = row.ServerCPUMicros, row.ClientCPUMicros
		}
		rg, cg = append(rg, g), append(cg, c)
	}
	f0 := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	f1 := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	return svgBars("Requests per second: the relay and its reference (median of the rounds)", "req/s",
			[]string{"relay", "reference (nginx; etcd floor on the relay's etcd)", "etcd floor in-process (no goal)"}, palette, rg, f0),
		svgBars("CPU µs per request: serving processes and the bench process", "CPU µs/req",
			[]string{"relay: relay process", "relay: bench (load generator)", "reference: nginx / the relay process's etcd", "reference: bench (generator / floor loop)",
				"in-process floor: relay process (idle)", "in-process floor: bench (loop and etcd)"},
			palette, cg, f1)
}

// niceTicks are about n round values from 0 to max.
func niceTicks(max float64, n int) []float64 {
	if max <= 0 {
		return []float64{0}
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var t []float64
	for i := 0; ; i++ {
		v := float64(i) * step
		t = append(t, v)
		if v >= max*0.999 {
			return t
		}
	}
}

func numFormat(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", math.Round(v*1000)/1000)
}

// throughputSeries is, per target and operation, the value per second
// across the run (phases placed at their real start).
func (r *Result) throughputSeries(value func(second) float64, only Op) ([]series, float64, float64) {
	idx := map[string]int{}
	var ss []series
	var xmax, ymax float64
	if len(r.runs) == 0 {
		return nil, 1, 1
	}
	t0 := r.runs[0].Start
	for seg, run := range r.runs {
		off := run.Start.Sub(t0).Seconds()
		for _, op := range Ops() {
			if !run.Phase.Mix.Has(op) || (only >= 0 && op != only) {
				continue
			}
			name := run.Phase.Target.Name() + " " + op.String()
			i, ok := idx[name]
			if !ok {
				i = len(ss)
				idx[name] = i
				ss = append(ss, series{Name: name})
			}
			for s, sec := range run.Stats.timeline {
				// The last second is partial: scale it to a rate.
				span := math.Min(1, run.Elapsed.Seconds()-float64(s))
				if span <= 0.05 {
					continue
				}
				v := value(sec[op]) / span
				ss[i].X = append(ss[i].X, off+float64(s)+span/2)
				ss[i].Y = append(ss[i].Y, v)
				ss[i].Seg = append(ss[i].Seg, seg)
				xmax, ymax = math.Max(xmax, off+float64(s)+span), math.Max(ymax, v)
			}
		}
	}
	return ss, math.Max(xmax, 1), math.Max(ymax, 1)
}

// percentilePoints are where the latency chart samples each distribution.
var percentilePoints = []float64{0, 10, 25, 50, 75, 90, 95, 98, 99, 99.5, 99.9, 99.95, 99.99}

func (r *Result) latencySeries() ([]series, float64, float64) {
	merged := map[string]*Histogram{}
	var names []string
	for i, run := range r.runs {
		for _, op := range Ops() {
			h := r.hists[i][op]
			if h == nil || h.Count() == 0 {
				continue
			}
			name := run.Phase.Target.Name() + " " + op.String()
			if merged[name] == nil {
				merged[name] = &Histogram{}
				names = append(names, name)
			}
			merged[name].Merge(h)
		}
	}
	var ss []series
	lo, hi := math.Inf(1), 0.0
	for _, n := range names {
		s := series{Name: n}
		for _, p := range percentilePoints {
			v := math.Max(ms(merged[n].Percentile(p)), 0.001)
			s.X = append(s.X, 1/(1-p/100))
			s.Y = append(s.Y, v)
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		ss = append(ss, s)
	}
	if hi == 0 {
		return ss, 0.001, 1
	}
	return ss, lo, hi
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><title>jira-relay bench: {{.Scenario}}</title>
<style>body{font-family:sans-serif;margin:24px;color:#222}pre{background:#f6f6f6;padding:12px;overflow-x:auto;font-size:12px}h2{margin-top:28px}</style>
</head><body>
<h1>jira-relay bench: {{.Scenario}}</h1>
<p>{{.Command}}<br/>started {{.Started.Format "2006-01-02 15:04:05 MST"}} · {{.Machine.CPUs}} CPUs · {{.Machine.CPUModel}} · {{.Machine.GoVersion}}</p>
{{if .PeersMiB}}<h2 id="peers">Proxy comparison</h2>
<p>{{range .Peers}}{{.Mode}}: {{.Protocol}}.<br/>{{end}}</p>
{{.PeersMiB}}
{{.PeersCPU}}
{{end}}{{if .AnchorsReq}}<h2 id="anchors">Anchors</h2>
<p>{{range .Anchors.Verdicts}}{{.Anchor}} ×{{.Concurrency}}: {{.Goal}}: {{.Verdict}}.<br/>{{end}}</p>
{{.AnchorsReq}}
{{.AnchorsCPU}}
{{end}}<h2>Throughput over time</h2>
{{.ReqChart}}
{{if .MiBChart}}{{.MiBChart}}{{end}}
<h2>Latency by percentile</h2>
{{.LatChart}}
<h2>Figures</h2>
<pre>{{.Table}}</pre>
</body></html>
`))

// WriteHTML writes one self-contained page: the throughput-over-time charts
// (per second, per operation), the latency-percentile chart and the tables.
func (r *Result) WriteHTML(path string) error {
	reqs, xmax, ymax := r.throughputSeries(func(s second) float64 { return float64(s.Requests) }, -1)
	// One colour per target and operation, the same in every chart.
	colour := map[string]string{}
	for i, s := range reqs {
		colour[s.Name] = palette[i%len(palette)]
	}
	paint := func(ss []series) []series {
		for i := range ss {
			ss[i].Color = colour[ss[i].Name]
		}
		return ss
	}
	xt := niceTicks(xmax, 10)
	xa := axis{Label: "seconds since the load started (one point per second)", Min: 0, Max: xt[len(xt)-1], Ticks: xt, Format: numFormat}
	data := struct {
		*Result
		ReqChart, MiBChart, LatChart template.HTML
		PeersMiB, PeersCPU           template.HTML
		AnchorsReq, AnchorsCPU       template.HTML
		Table                        string
	}{Result: r}
	data.PeersMiB, data.PeersCPU = r.peersCharts()
	data.AnchorsReq, data.AnchorsCPU = r.anchorsCharts()
	yt := niceTicks(ymax, 6)
	data.ReqChart = svgChart("Requests per second, per operation", xa,
		axis{Label: "req/s", Min: 0, Max: yt[len(yt)-1], Ticks: yt, Format: numFormat}, reqs)
	if up, _, umax := r.throughputSeries(func(s second) float64 { return float64(s.Bytes) / (1 << 20) }, OpUpload); len(up) > 0 {
		ut := niceTicks(umax, 6)
		data.MiBChart = svgChart("Upload MiB per second", xa,
			axis{Label: "MiB/s", Min: 0, Max: ut[len(ut)-1], Ticks: ut, Format: numFormat}, paint(up))
	}
	lat, lo, hi := r.latencySeries()
	var lt []float64
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		lt = append(lt, math.Pow(10, e))
	}
	lo, hi = lt[0], lt[len(lt)-1]
	if lo == hi {
		hi = lo * 10
	}
	var pt []float64
	for _, p := range []float64{0, 90, 99, 99.9, 99.99} {
		pt = append(pt, 1/(1-p/100))
	}
	data.LatChart = svgChart("Latency at percentile (log scales)",
		axis{Label: "percentile", Min: 1, Max: 1e4, Log: true, Ticks: pt, Format: func(v float64) string {
			return fmt.Sprintf("p%g", math.Round((1-1/v)*1e6)/1e4)
		}},
		axis{Label: "latency ms", Min: lo, Max: hi, Log: true, Ticks: lt, Format: numFormat}, paint(lat))
	var tb bytes.Buffer
	r.WriteTable(&tb)
	data.Table = tb.String()
	var out bytes.Buffer
	if err := pageTmpl.Execute(&out, data); err != nil {
		return err
	}
	return os.WriteFile(path, out.Bytes(), 0o644)
}
