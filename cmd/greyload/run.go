package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/greymilter/greymilter/internal/sockaddr"
)

// Config is a load run.
type Config struct {
	Proto       string // "milter" or "policy"
	Target      sockaddr.Addr
	Concurrency int
	Count       int           // decisions in the measured phase
	MaxTime     time.Duration // hard cap of the whole run, warm-up included
	Delay       time.Duration // the server's greylisting delay
	Margin      time.Duration // added to Delay before a retry
	Warmup      time.Duration // first-time transactions only, not measured
	Timeout     time.Duration // one request's I/O
	MaxErrors   int           // the run stops after more errors than this
	Expect      string        // "greylist" or "pass"
	Shape       Shape

	// Log receives the first mismatches and errors, for a person to read.
	Log io.Writer
}

// maxExamples bounds the mismatches and errors written to Config.Log.
const maxExamples = 5

// outcome is how an answer is classified.
type outcome int

const (
	outPass outcome = iota
	outDefer
	outOther
)

// loadRun is one load run.
type loadRun struct {
	cfg   *Config
	sched *Scheduler
	limit time.Time

	errors   atomic.Int64
	examples atomic.Int64
	logMu    sync.Mutex
}

// worker is one concurrent client; it keeps its own counts.
type worker struct {
	r      *loadRun
	hist   Histogram
	lastAt time.Time // when its last measured transaction ended

	decisions, fresh, retries, warmup, txns, mismatches int

	// policy is the worker's policy connection, kept across transactions
	// (milter connections last one transaction, as SMTP sessions do).
	policy *policyConn
}

// Run runs the load described by cfg and returns what it measured.
func Run(ctx context.Context, cfg *Config) (*Result, error) {
	if err := cfg.Shape.check(); err != nil {
		return nil, err
	}
	if cfg.Proto != "milter" && cfg.Proto != "policy" {
		return nil, fmt.Errorf("unknown protocol %q", cfg.Proto)
	}
	if cfg.Concurrency < 1 || cfg.Count < 1 || cfg.MaxTime <= 0 {
		return nil, errors.New("want a concurrency and a count of 1 or more, and a --max-time")
	}
	if cfg.Warmup >= cfg.MaxTime {
		return nil, fmt.Errorf("the warm-up (%v: the delay and the retry margin) is not shorter than --max-time %v: run the server with a short --delay and give greyload the same", cfg.Warmup, cfg.MaxTime)
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	start := time.Now()
	r := &loadRun{cfg: cfg, sched: NewScheduler(cfg.Shape, cfg.Delay+cfg.Margin, cfg.Count), limit: start.Add(cfg.MaxTime)}
	ctx, cancel := context.WithDeadline(ctx, r.limit)
	defer cancel()

	measureStart := start
	if cfg.Warmup > 0 {
		r.sched.SetWarmup(true)
	}
	workers := make([]*worker, cfg.Concurrency)
	var wg sync.WaitGroup
	var fatal error
	var fatalOnce sync.Once
	for i := range workers {
		w := &worker{r: r}
		workers[i] = w
		wg.Go(func() {
			if err := w.loop(ctx); err != nil {
				fatalOnce.Do(func() { fatal = err })
				r.sched.Stop()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if cfg.Warmup > 0 {
		select {
		case <-time.After(cfg.Warmup):
			measureStart = time.Now()
			r.sched.SetWarmup(false)
		case <-done:
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		r.sched.Stop()
		<-done
	}
	if fatal != nil {
		return nil, fatal
	}

	res := &Result{
		Proto: cfg.Proto, Target: cfg.Target.String(), Expect: cfg.Expect, Concurrency: cfg.Concurrency,
		Seed: cfg.Shape.Seed, NewShare: cfg.Shape.NewShare,
		Fallbacks: r.sched.Fallbacks(), Errors: int(r.errors.Load()),
		WarmupSecs: measureStart.Sub(start).Seconds(),
	}
	var hist Histogram
	end := measureStart
	for _, w := range workers {
		hist.Merge(&w.hist)
		res.Decisions += w.decisions
		res.New += w.fresh
		res.Retries += w.retries
		res.Warmup += w.warmup
		res.Transactions += w.txns
		res.Mismatches += w.mismatches
		if w.lastAt.After(end) {
			end = w.lastAt
		}
	}
	res.setLatency(&hist)
	res.CPU = selfCPU().Seconds()
	res.Seconds = end.Sub(measureStart).Seconds()
	if res.Seconds > 0 {
		res.PerSecond = float64(res.Decisions) / res.Seconds
	}
	switch {
	case res.Errors > cfg.MaxErrors:
		res.Stopped = "errors"
	case ctx.Err() != nil && res.Decisions < cfg.Count:
		res.Stopped = "time"
	default:
		res.Stopped = "count"
	}
	return res, nil
}

// selfCPU returns the user and system time this process used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (w *worker) loop(ctx context.Context) error {
	defer func() {
		if w.policy != nil {
			w.policy.Close()
		}
	}()
	for ctx.Err() == nil {
		t, err := w.r.sched.Next(time.Now())
		if err == errWarmupFull {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return err
		}
		if t == nil {
			return nil
		}
		if err := w.do(t); err != nil {
			if ctx.Err() != nil || !time.Now().Before(w.r.limit) {
				// The time cap cut the transaction short: not the server's fault.
				return nil
			}
			w.r.fail(t, err)
			continue
		}
		if !t.Warmup {
			w.txns++
			w.lastAt = time.Now()
		}
		w.r.sched.Answered(t, time.Now())
	}
	return nil
}

// fail counts an error and stops the run when there are too many.
func (r *loadRun) fail(t *Txn, err error) {
	n := r.errors.Add(1)
	r.example("error: transaction %d from %s: %v", t.ID, t.Client, err)
	if n > int64(r.cfg.MaxErrors) {
		r.sched.Stop()
	}
}

func (r *loadRun) example(format string, args ...any) {
	if r.examples.Add(1) > maxExamples {
		return
	}
	r.logMu.Lock()
	fmt.Fprintf(r.cfg.Log, "greyload: "+format+"\n", args...)
	r.logMu.Unlock()
}

// record checks one recipient's answer and counts it.
func (w *worker) record(t *Txn, rcpt string, got outcome, answer func() string, lat time.Duration) {
	if t.Warmup {
		w.warmup++
	} else {
		w.decisions++
		w.hist.Record(lat)
		if t.Retry {
			w.retries++
		} else {
			w.fresh++
		}
	}
	want := outPass
	if w.r.cfg.Expect == "greylist" && !t.Retry {
		want = outDefer
	}
	if got != want {
		w.mismatches++
		kind := "first-time triplet"
		if t.Retry {
			kind = "retry after the delay"
		}
		wantS := map[outcome]string{outPass: "a pass", outDefer: "a greylisting deferral"}[want]
		w.r.example("mismatch: %s <%s> <%s> from %s: got %q, want %s", kind, t.Sender, rcpt, t.Client, answer(), wantS)
	}
}

func (w *worker) do(t *Txn) error {
	if w.r.cfg.Proto == "milter" {
		return w.doMilter(t)
	}
	return w.doPolicy(t)
}

func queueID(t *Txn) string { return strings.ToUpper(strconv.FormatUint(0x10000000+t.ID, 16)) }

func family(t *Txn) byte {
	if t.Client.Is4() {
		return '4'
	}
	return '6'
}

func clientPort(t *Txn) uint16 { return uint16(1024 + t.ID%60000) }

// doMilter runs a transaction as one SMTP session of Postfix: connect,
// HELO, MAIL, the recipients, then the message if every recipient passed,
// else an abort.
func (w *worker) doMilter(t *Txn) error {
	cfg := w.r.cfg
	m, err := dialMilter(cfg.Target.Network, cfg.Target.Address, cfg.Timeout, w.r.limit)
	if err != nil {
		return err
	}
	defer m.c.Close()
	client := t.Client.String()
	if a, err := m.Connect("mx.greyload.test", client, family(t), clientPort(t)); err != nil {
		return err
	} else if a.Code != repContinue {
		return fmt.Errorf("connect answered %v", a)
	}
	if a, err := m.Helo(t.Helo); err != nil {
		return err
	} else if a.Code != repContinue {
		return fmt.Errorf("HELO answered %v", a)
	}
	qid := queueID(t)
	if a, err := m.Mail(qid, t.Sender); err != nil {
		return err
	} else if a.Code != repContinue {
		return fmt.Errorf("MAIL answered %v", a)
	}
	passed := 0
	for _, rcpt := range t.Rcpts {
		begin := time.Now()
		a, err := m.Rcpt(qid, rcpt)
		lat := time.Since(begin)
		if err != nil {
			return err
		}
		got := outOther
		switch {
		case a.Code == repContinue || a.Code == repAccept:
			got = outPass
			passed++
		case a.Code == repReplyCode && a.SMTP == 451 && strings.HasPrefix(a.Text, "4.7.1 "):
			got = outDefer
		}
		w.record(t, rcpt, got, a.String, lat)
	}
	if passed == len(t.Rcpts) {
		a, _, err := m.Message(qid, t.Sender, t.Rcpts[0])
		if err != nil {
			return err
		}
		if a.Code != repAccept && a.Code != repContinue {
			return fmt.Errorf("end of message answered %v", a)
		}
	} else {
		m.Abort()
	}
	return m.Close()
}

// doPolicy asks about each recipient of a transaction on the worker's
// policy connection, opening it again after an error.
func (w *worker) doPolicy(t *Txn) error {
	cfg := w.r.cfg
	if w.policy == nil {
		p, err := dialPolicy(cfg.Target.Network, cfg.Target.Address, cfg.Timeout, w.r.limit)
		if err != nil {
			return err
		}
		w.policy = p
	}
	q := policyReq{
		client: t.Client.String(), helo: t.Helo, sender: t.Sender,
		queueID: queueID(t), instance: "gl." + strconv.FormatUint(t.ID, 16), port: int(clientPort(t)),
	}
	for _, rcpt := range t.Rcpts {
		q.rcpt = rcpt
		begin := time.Now()
		action, err := w.policy.Ask(&q)
		lat := time.Since(begin)
		if err != nil {
			w.policy.Close()
			w.policy = nil
			return err
		}
		got := outOther
		verb, _, _ := bytes.Cut(action, []byte(" "))
		switch {
		case bytes.EqualFold(verb, []byte("DUNNO")) || bytes.EqualFold(verb, []byte("OK")) || bytes.EqualFold(verb, []byte("PREPEND")):
			got = outPass
			q.count++
		case bytes.EqualFold(verb, []byte("DEFER_IF_PERMIT")):
			got = outDefer
		}
		w.record(t, rcpt, got, func() string { return string(action) }, lat)
	}
	return nil
}
