package httpx

import "bytes"

// HeaderLines calls f with the name (trimmed) and value of each line of raw
// request headers, until f returns false.
func HeaderLines(raw []byte, f func(name, value []byte) bool) {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && !f(bytes.TrimSpace(name), value) {
			return
		}
	}
}
