package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the result as plain-text tables.
func (r *Result) WriteTable(out io.Writer) {
	fmt.Fprintf(out, "scenario %s · target %s · mix %s · sizes %s · %s × %d workers", r.Scenario, r.Settings.Target,
		r.Settings.Mix, r.Settings.Sizes, r.Settings.Duration, r.Settings.Concurrency)
	if r.Settings.Rate > 0 {
		fmt.Fprintf(out, " · rate %g/s", r.Settings.Rate)
	}
	if r.Settings.TLS {
		fmt.Fprint(out, " · Jira over TLS")
	}
	fmt.Fprintf(out, " · %d CPUs · load %s\n", r.Machine.CPUs, strings.Join(r.Machine.LoadAvg, " → "))
	if len(r.Settings.RelayFlags) > 0 {
		fmt.Fprintf(out, "relay flags: %s\n", strings.Join(r.Settings.RelayFlags, " "))
	}
	if r.Interrupted {
		fmt.Fprintln(out, "INTERRUPTED: figures below cover only what ran")
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\top\trequests\treq/s\tMiB/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\terrors\t")
	for _, p := range r.Phases {
		for _, o := range p.Ops {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t\n", p.Name, o.Op, o.Requests,
				o.ReqPerSec, o.MiBPerSec, o.Latency.P50, o.Latency.P90, o.Latency.P99, o.Latency.Max, errorsText(o))
		}
	}
	tw.Flush()

	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tseconds\trelay peak RSS MiB\trelay CPU s\tfake Jira CPU s\tproxy CPU s\tgenerator CPU s\t")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t%s\t%s\t%.2f\t\n", p.Name, p.Seconds, rssText(p.Relay), cpuText(p.Relay),
			cpuText(p.FakeJira), cpuText(p.Proxy), p.GeneratorCPU)
	}
	tw.Flush()
	if r.RelayIdle != nil {
		fmt.Fprintf(out, "relay idle RSS (before load): %.1f MiB", mib(*r.RelayIdle))
		peak := int64(0)
		for _, p := range r.Phases {
			if p.Relay != nil {
				peak = max(peak, p.Relay.PeakRSS)
			}
		}
		if peak > 0 {
			fmt.Fprintf(out, "; peak during load %.1f MiB (+%.1f MiB over idle)", mib(peak), mib(peak-*r.RelayIdle))
		}
		if r.RelayHWM > 0 {
			fmt.Fprintf(out, "; VmHWM over the relay's life %.1f MiB", mib(r.RelayHWM))
		}
		fmt.Fprintln(out)
	}
	if c := r.Compare; c != nil {
		fmt.Fprintln(out)
		fmt.Fprintf(out, "relay vs direct (uploads, %d round(s), throughput = median of rounds):\n", len(c.Relay.Rounds))
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tMiB/s\treq/s\tp50 ms\tp99 ms\terrors\t")
		for _, s := range []Side{c.Direct, c.Relay} {
			fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.3f\t%.3f\t%d\t\n", s.Target, s.MiBPerSec, s.ReqPerSec, s.P50Ms, s.P99Ms, s.Errors)
		}
		fmt.Fprintf(tw, "relay/direct\t%.3f\t%.3f\t%.3f\t%.3f\t\t\n", c.ThroughputRatio, c.ReqRatio, c.P50Ratio, c.P99Ratio)
		fmt.Fprintf(tw, "relay−direct\t\t\t%+.3f\t%+.3f\t\t\n", c.P50AddedMs, c.P99AddedMs)
		tw.Flush()
	}
	for _, p := range r.Peers {
		fmt.Fprintln(out)
		p.WriteTable(out)
	}
	if r.Anchors != nil {
		fmt.Fprintln(out)
		r.Anchors.WriteTable(out)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(out, "note:", n)
	}
}

func errorsText(o OpResult) string {
	if o.Errors == 0 {
		return "0"
	}
	var kinds []string
	for k, v := range o.ByKind {
		kinds = append(kinds, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d (%s)", o.Errors, strings.Join(kinds, ", "))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func rssText(p *ProcResult) string {
	if p == nil || p.PeakRSS == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", mib(p.PeakRSS))
}

func cpuText(p *ProcResult) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", p.CPUSeconds)
}
