package edge

import (
	"bufio"
	"errors"
	"io"
	"sync/atomic"
	"time"
)

// h1body is an HTTP/1.1 request body: content-length or chunked, read
// from the connection's reader. The core may read it on another goroutine
// (the HTTP/2 upstream client does), so a read racing the end of the
// request is detected with an atomic state rather than a lock, and reads
// after the end fail.
type h1body struct {
	c       *h1conn
	state   atomic.Int32 // bodyReading, bodyClosed bits
	chunked bool
	// n is what is left: of the body (content-length) or of the current
	// chunk (chunked).
	n int64
	// inChunk: a chunk's data was started, so its CRLF is due after it.
	inChunk bool
	done    bool  // the body was read to its end
	err     error // sticky
}

const (
	bodyReading int32 = 1 << iota
	bodyClosed
)

var errBodyClosed = errors.New("edge: request body read after the request ended")

// Read reads the body. The first read sends "100 Continue" if the client
// asked for it.
func (b *h1body) Read(p []byte) (int, error) {
	if !b.state.CompareAndSwap(0, bodyReading) {
		return 0, errBodyClosed
	}
	n, err := b.read(p)
	if !b.state.CompareAndSwap(bodyReading, 0) {
		b.state.Store(bodyClosed) // close is waiting for this read
	}
	return n, err
}

func (b *h1body) read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	b.c.sendContinue()
	if b.chunked {
		if err := b.advance(); err != nil {
			return 0, err
		}
		if b.done {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.c.br.Read(p)
	b.n -= int64(n)
	if b.n == 0 && !b.chunked {
		b.done = true
		return n, io.EOF
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.err = err
	}
	return n, err
}

// advance reads chunk framing until chunk data is due (b.n > 0) or the
// last chunk and the trailers have been read (b.done).
func (b *h1body) advance() error {
	br := b.c.br
	for b.n == 0 && !b.done {
		if b.inChunk {
			c1, err1 := br.ReadByte()
			c2, err2 := br.ReadByte()
			if err := errors.Join(err1, err2); err != nil {
				return b.fail(err)
			}
			if c1 != '\r' || c2 != '\n' {
				return b.fail(errChunkEnd)
			}
			b.inChunk = false
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if err == bufio.ErrBufferFull {
				err = errChunkLine
			}
			return b.fail(err)
		}
		// The chunk-size line must end in CRLF: a bare LF here is the
		// stuff of smuggling between parsers that disagree.
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return b.fail(errChunkLine)
		}
		size, err := parseChunkSize(line[:len(line)-2])
		if err != nil {
			return b.fail(err)
		}
		if size == 0 {
			if err := b.c.readTrailers(); err != nil {
				return b.fail(err)
			}
			b.done = true
			return nil
		}
		b.n, b.inChunk = size, true
	}
	return nil
}

func (b *h1body) fail(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	b.err = err
	return err
}

// close ends reads of the body and reports whether a read is still in
// progress on another goroutine (then the caller must close the
// connection and waitClosed).
func (b *h1body) close() (inFlight bool) {
	for {
		s := b.state.Load()
		if s&bodyReading == 0 {
			if b.state.CompareAndSwap(s, bodyClosed) {
				return false
			}
			continue
		}
		if b.state.CompareAndSwap(s, s|bodyClosed) {
			return true
		}
	}
}

// waitClosed waits, a bounded time, for a read in progress to return
// (the connection was closed under it), and reports whether it did.
func (b *h1body) waitClosed() bool {
	for i := 0; b.state.Load()&bodyReading != 0; i++ {
		if i == 5000 {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// discardRest reads and drops what the core left of the body, if that is
// little, so that the connection can carry the next request. It reports
// whether the connection can be kept.
func (b *h1body) discardRest(c *h1conn) bool {
	if b.done {
		return true
	}
	if b.err != nil || (c.head.expect100 && c.cont.Load() != contSent) {
		// A client not told to continue may never send the body.
		return false
	}
	if !b.chunked && b.n > h1DiscardLimit {
		return false
	}
	c.conn.SetReadDeadline(time.Now().Add(c.d.headTimeout))
	budget := int64(h1DiscardLimit)
	for !b.done {
		if b.chunked {
			if b.advance() != nil {
				return false
			}
			if b.done {
				break
			}
		}
		if b.n > budget {
			return false
		}
		n, err := c.br.Discard(int(b.n))
		b.n -= int64(n)
		budget -= int64(n)
		if err != nil {
			return false
		}
		if !b.chunked {
			b.done = true
		}
	}
	return true
}
