package bench

import (
	"fmt"
	"io"
	"os"
	"time"
)

// Progress shows a phase's live counters on w: redrawn in place with \r at
// most 4 times a second when w is a terminal, else one line every 5 s (so
// logs stay readable).
type Progress struct {
	w     io.Writer
	tty   bool
	live  *Live
	label string
	start time.Time
	stop  chan struct{}
	done  chan struct{}
}

// IsTerminal reports whether f is a character device (a terminal).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// StartProgress begins showing live under label until Stop.
func StartProgress(w io.Writer, tty bool, label string, live *Live) *Progress {
	p := &Progress{w: w, tty: tty, live: live, label: label, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	every := 5 * time.Second
	if tty {
		every = 250 * time.Millisecond
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.draw(false)
			}
		}
	}()
	return p
}

func (p *Progress) draw(final bool) {
	el := time.Since(p.start).Seconds()
	n, e, b := p.live.Requests.Load(), p.live.Errors.Load(), p.live.Bytes.Load()
	line := fmt.Sprintf("%s: %5.1fs  %d requests (%.0f/s)  %d errors  %.1f MiB", p.label, el, n, float64(n)/max(el, 1e-9), e, mib(b))
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r\033[K%s\n", line)
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	default:
		fmt.Fprintln(p.w, line)
	}
}

// Stop ends the display with a final line.
func (p *Progress) Stop() {
	close(p.stop)
	<-p.done
	p.draw(true)
}
