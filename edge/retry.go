package edge

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeproxy/edge/edge/accesslog"
	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/router"
	"github.com/edgeproxy/edge/upstream"
)

// Retry control headers, honoured only from internal clients (sanitize has
// already removed every x-edge-* header from external ones) and removed
// before the request goes upstream.
const (
	hdrRetryOn         = "x-edge-retry-on"
	hdrMaxRetries      = "x-edge-max-retries"
	hdrRqTimeoutMs     = "x-edge-upstream-rq-timeout-ms"
	hdrPerTryTimeoutMs = "x-edge-upstream-rq-per-try-timeout-ms"
	hdrAttemptCount    = "x-edge-attempt-count"
	hdrOverloaded      = "x-edge-overloaded"
	// maxTried is how many tried hosts a request remembers to avoid them.
	maxTried = 8
)

// defaultRetry is the policy a request gets when it asks for retries with
// x-edge-retry-on on a route that has no retry_policy.
var defaultRetry = router.RetryPolicy{
	NumRetries:   config.DefaultNumRetries,
	BaseInterval: config.DefaultRetryBaseInterval,
	MaxInterval:  10 * config.DefaultRetryBaseInterval,
	BufferLimit:  config.DefaultRetryBufferLimit,
}

// tryPlan is what one request's tries obey: the route's policy adjusted by
// the request's retry headers, and the deadlines.
type tryPlan struct {
	policy   router.RetryPolicy
	retries  bool      // a retry is possible at all
	deadline time.Time // the route timeout; zero: none
	autoHost bool      // auto_host_rewrite: each try sends its host's name
}

// plan reads the route's policy and the request's control headers.
func (x *exchange) plan(rt *router.Route, start time.Time) tryPlan {
	var p tryPlan
	if rt.Retry != nil {
		p.policy = *rt.Retry
	} else {
		p.policy = defaultRetry
	}
	p.autoHost = rt.AutoHostRewrite
	timeout := rt.Timeout
	h := &x.req.Header
	if h.Len() > 0 && hasEdgeControl(h) {
		if v, ok := h.Lookup(hdrRetryOn); ok {
			for _, name := range strings.Split(v, ",") {
				if c, ok := router.ParseRetryOn(strings.TrimSpace(name)); ok {
					p.policy.On |= c
				}
			}
		}
		if n, ok := headerInt(h, hdrMaxRetries); ok && n >= 0 {
			p.policy.NumRetries = n
		}
		if ms, ok := headerInt(h, hdrRqTimeoutMs); ok && ms >= 0 {
			timeout = time.Duration(ms) * time.Millisecond
		}
		if ms, ok := headerInt(h, hdrPerTryTimeoutMs); ok && ms > 0 {
			p.policy.PerTryTimeout = time.Duration(ms) * time.Millisecond
		}
		h.Del(hdrRetryOn)
		h.Del(hdrMaxRetries)
		h.Del(hdrRqTimeoutMs)
		h.Del(hdrPerTryTimeoutMs)
	}
	if timeout > 0 {
		p.deadline = start.Add(timeout)
		if p.policy.PerTryTimeout >= timeout {
			p.policy.PerTryTimeout = 0 // as Envoy: ignored when not shorter
		}
	}
	p.retries = p.policy.On != 0 && p.policy.NumRetries > 0
	return p
}

func hasEdgeControl(h *message.Header) bool {
	for _, f := range h.Fields() {
		if strings.HasPrefix(f.Name, "x-edge-") {
			return true
		}
	}
	return false
}

func headerInt(h *message.Header, name string) (int, bool) {
	v, ok := h.Lookup(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	return n, err == nil
}

// tryDeadline is the deadline of one try: the per-try timeout, bounded by
// the route's.
func (p *tryPlan) tryDeadline(now time.Time) time.Time {
	d := p.deadline
	if p.policy.PerTryTimeout > 0 {
		if t := now.Add(p.policy.PerTryTimeout); d.IsZero() || t.Before(d) {
			d = t
		}
	}
	return d
}

// retriableError reports whether a failed try may be retried under p.
func (p *tryPlan) retriableError(kind upstream.Kind) bool {
	on := p.policy.On
	switch kind {
	case upstream.ConnectFailure:
		return on&(router.RetryOnConnectFailure|router.RetryOn5xx|router.RetryOnGatewayError) != 0
	case upstream.RefusedStream:
		return on&(router.RetryOnRefusedStream|router.RetryOn5xx|router.RetryOnGatewayError) != 0
	case upstream.Reset, upstream.Timeout:
		// No response at all: a disconnect, a reset or a per-try timeout.
		return on&(router.RetryOnReset|router.RetryOn5xx|router.RetryOnGatewayError) != 0
	}
	return false
}

// attemptCounts are the x-edge-attempt-count values for the first tries,
// so that setting the header costs no allocation.
var attemptCounts = [...]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

func attemptCount(n int) string {
	if n < len(attemptCounts) {
		return attemptCounts[n]
	}
	return strconv.Itoa(n)
}

// tryResult is the outcome of the retry loop.
type tryResult struct {
	host *upstream.Host
	resp *message.Response
	err  error
	// start is when the try that got resp was sent (upstream_rq_time).
	start time.Time
	// overallTimeout: the route timeout expired (never retried).
	overallTimeout bool
}

// tries sends the request to hosts of cl until a response is final under
// the plan: the first try, then retries on a host not yet tried (when one
// exists) after a fully jittered exponential back-off, all inside the
// route timeout. Nothing reaches the client before it returns, so a retry
// never follows response bytes.
func (x *exchange) tries(ctx context.Context, cl *clusterRuntime, p *tryPlan) tryResult {
	req := x.req
	var body *replayBody
	if p.retries && req.Body != nil {
		body = newReplayBody(req.Body, p.policy.BufferLimit)
		defer body.release()
	}
	var triedArr [maxTried]*upstream.Host
	tried := triedArr[:0]
	for attempt := 1; ; attempt++ {
		host, err := cl.up.Pick(req, tried...)
		if err != nil {
			return tryResult{err: err}
		}
		if len(tried) < cap(tried) {
			tried = append(tried, host)
		}
		if body != nil {
			req.Body = body.attempt()
		}
		if p.autoHost {
			req.Authority = host.Hostname()
		}
		now := time.Now()
		req.Deadline = p.tryDeadline(now)
		req.Header.Set(hdrAttemptCount, attemptCount(attempt))
		x.entry.Attempts = attempt
		x.entry.UpstreamHost = host.Address()
		resp, err := host.RoundTrip(ctx, req)

		retryable := false
		if err != nil {
			kind := upstream.Classify(err).Kind
			if kind == upstream.Timeout {
				if !p.deadline.IsZero() && !time.Now().Before(p.deadline) {
					return tryResult{host: host, err: err, overallTimeout: true}
				}
				cl.stats.rqPerTryTimeout.Inc()
			}
			retryable = ctx.Err() == nil && p.retriableError(kind)
		} else {
			retryable = p.policy.RetriableStatus(resp.Status) && resp.Upgraded == nil
		}
		if !retryable || attempt > p.policy.NumRetries || (body != nil && !body.replayable()) {
			if attempt > 1 && err == nil && !retryable {
				cl.stats.rqRetrySuccess.Inc()
			}
			if retryable && attempt > p.policy.NumRetries {
				x.entry.Flags |= accesslog.UpstreamRetryLimitExceeded
			}
			return tryResult{host: host, resp: resp, err: err, start: now}
		}
		if !cl.up.TryRetry() {
			cl.stats.rqRetryOverflow.Inc()
			x.entry.Flags |= accesslog.UpstreamRetryLimitExceeded
			return tryResult{host: host, resp: resp, err: err, start: now}
		}
		// This try's answer is discarded: close it before backing off.
		if resp != nil {
			cl.stats.rqTime.Observe(time.Since(now))
			cl.rqClass[statusClass(resp.Status)].Inc()
			resp.Body.Close()
			host.Release(resp)
		}
		cl.stats.rqRetry.Inc()
		wait := upstream.Backoff(attempt, p.policy.BaseInterval, p.policy.MaxInterval, rand.Uint64())
		ok := sleepUntil(ctx, wait, p.deadline)
		cl.up.RetryDone()
		if !ok {
			if ctx.Err() != nil {
				return tryResult{host: host, err: ctx.Err()}
			}
			return tryResult{host: host, err: &upstream.Error{Kind: upstream.Timeout, Err: context.DeadlineExceeded}, overallTimeout: true}
		}
	}
}

// sleepUntil waits d, or until the deadline or ctx ends first; it reports
// whether the full wait passed with time left before the deadline.
func sleepUntil(ctx context.Context, d time.Duration, deadline time.Time) bool {
	if !deadline.IsZero() {
		left := time.Until(deadline)
		if left <= d {
			return false
		}
	}
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errRetryBodyGone is returned to a try that still reads the request body
// after a newer try took it over.
var errRetryBodyGone = errors.New("request body taken over by a retry")

// replayBody keeps the first limit bytes of a request body so a retry can
// send them again; bytes past the limit are streamed once, after which no
// retry is possible. Each try reads through its own view; a view from an
// older try (an HTTP/2 writer still running after its stream failed) gets
// an error instead of stealing bytes.
type replayBody struct {
	mu       sync.Mutex
	src      io.Reader
	buf      []byte
	limit    int64
	overflow bool
	srcErr   error
	gen      int
	view     replayView
}

type replayView struct {
	b   *replayBody
	gen int
	pos int
}

var replayPool = sync.Pool{New: func() any { return new(replayBody) }}

func newReplayBody(src io.Reader, limit int64) *replayBody {
	b := replayPool.Get().(*replayBody)
	b.src, b.limit = src, limit
	return b
}

func (b *replayBody) release() {
	b.mu.Lock()
	b.buf = b.buf[:0]
	if cap(b.buf) > 64<<10 {
		b.buf = nil // do not pin large buffers in the pool
	}
	b.src, b.limit, b.overflow, b.srcErr = nil, 0, false, nil
	// gen keeps counting: a view a late HTTP/2 writer still holds stays
	// stale whoever uses b next.
	b.gen++
	b.view = replayView{}
	b.mu.Unlock()
	replayPool.Put(b)
}

// attempt returns the reader for the next try, starting from the first
// byte again.
func (b *replayBody) attempt() io.Reader {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gen++
	v := &b.view
	if b.view.b != nil {
		// A retry: the previous try's view may still be held by an HTTP/2
		// writer, so it must stay stale rather than be reused.
		v = new(replayView)
	}
	*v = replayView{b: b, gen: b.gen}
	return v
}

// replayable reports whether every byte read so far is kept.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.overflow
}

func (v *replayView) Read(p []byte) (int, error) {
	b := v.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if v.gen != b.gen {
		return 0, errRetryBodyGone
	}
	if v.pos < len(b.buf) {
		n := copy(p, b.buf[v.pos:])
		v.pos += n
		return n, nil
	}
	if b.srcErr != nil {
		return 0, b.srcErr
	}
	n, err := b.src.Read(p)
	if n > 0 && !b.overflow {
		if int64(len(b.buf)+n) <= b.limit {
			b.buf = append(b.buf, p[:n]...)
			v.pos += n
		} else {
			b.overflow = true
		}
	}
	if err != nil {
		b.srcErr = err
	}
	return n, err
}
