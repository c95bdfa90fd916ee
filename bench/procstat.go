package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat (100 on every mainstream architecture).
const clockTicks = 100

// ReadRSS is a process's resident set size (VmRSS of /proc/<pid>/status),
// in bytes.
func ReadRSS(pid int) (int64, error) { return readStatusKB(pid, "VmRSS:") }

// ReadHWM is a process's peak resident set size since it started (VmHWM),
// in bytes.
func ReadHWM(pid int) (int64, error) { return readStatusKB(pid, "VmHWM:") }

func readStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.Index(b, []byte(field))
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
	}
	line := b[i+len(field):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	f := bytes.Fields(line)
	if len(f) == 0 {
		return 0, fmt.Errorf("/proc/%d/status: empty %s", pid, field)
	}
	kb, err := strconv.ParseInt(string(f[0]), 10, 64)
	return kb << 10, err
}

// ReadCPU is a process's user plus system CPU time (utime+stime of
// /proc/<pid>/stat).
func ReadCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// SelfCPU is this process's user plus system CPU time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// RSSSampler reads a process's VmRSS every interval and keeps the peak since
// the last Reset.
type RSSSampler struct {
	pid  int
	mu   sync.Mutex
	peak int64
	last int64
	stop chan struct{}
	done chan struct{}
}

// StartRSSSampler samples pid every interval (100 ms in the harness) until
// Stop.
func StartRSSSampler(pid int, interval time.Duration) *RSSSampler {
	s := &RSSSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *RSSSampler) sample() {
	v, err := ReadRSS(s.pid)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.last = v
	s.peak = max(s.peak, v)
	s.mu.Unlock()
}

// Reset takes a sample and starts a new peak from it; it returns the peak of
// the period that ended.
func (s *RSSSampler) Reset() int64 {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peak
	s.peak = s.last
	return p
}

// Peak is the largest sample since the last Reset.
func (s *RSSSampler) Peak() int64 {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// Stop ends sampling.
func (s *RSSSampler) Stop() {
	close(s.stop)
	<-s.done
}

// GroupCPU is the CPU time of the process tree in the process group pgid
// (a proxy's master and its workers; the relay alone): utime+stime of every
// live member, plus cutime+cstime, what the members' reaped children used,
// so that a worker that exits does not take its time with it.
func GroupCPU(pgid int) (time.Duration, error) {
	var total time.Duration
	found := false
	err := scanGroup(pgid, func(_ int, f [][]byte) {
		var ticks int64
		for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, err := strconv.ParseInt(string(f[k]), 10, 64)
			if err != nil {
				return
			}
			ticks += v
		}
		total += time.Duration(ticks) * time.Second / clockTicks
		found = true
	})
	if err != nil {
		return 0, err
	}
	if !found {
		return ReadCPU(pgid)
	}
	return total, nil
}

// GroupPids are the live processes of the process group pgid.
func GroupPids(pgid int) []int {
	var pids []int
	_ = scanGroup(pgid, func(pid int, _ [][]byte) { pids = append(pids, pid) })
	return pids
}

// scanGroup calls f with the pid and the fields after the command of
// /proc/<pid>/stat (f[0] is the state) of every live process in the group
// pgid.
func scanGroup(pgid int, f func(pid int, fields [][]byte)) error {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	want := strconv.Itoa(pgid)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fs := bytes.Fields(b[i+1:])
		if len(fs) < 15 || string(fs[2]) != want {
			continue
		}
		f(pid, fs)
	}
	return nil
}
