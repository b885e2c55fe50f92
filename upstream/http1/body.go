package http1

import (
	"bufio"
	"io"
	"net"
	"time"

	"github.com/edgeproxy/edge/internal/h1wire"
)

// Body framing modes.
const (
	bodyNone uint8 = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// Chunked decoding states.
const (
	chunkSize uint8 = iota // next: a chunk-size line
	chunkData              // inside chunk data; remaining bytes left
	chunkCRLF              // next: the CRLF after chunk data
)

// body is a response body streaming from its connection. It is not safe
// for concurrent use: Close must not race with Read (cancel the round
// trip's context to interrupt a blocked Read).
type body struct {
	rt        *roundTrip
	c         *conn // nil once the connection is released
	mode      uint8
	state     uint8 // chunked decoding state
	reusable  bool  // the connection may be reused once the body is done
	closed    bool
	remaining int64 // bodyLength: bytes left; chunked: bytes left in the chunk
	err       error // sticky: io.EOF or an *Error
}

// Read implements io.Reader. The last bytes may come with io.EOF. Errors
// are *Error values with Sent set.
func (b *body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errBodyClosed
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var err error
	switch b.mode {
	case bodyLength:
		n, err = b.readLength(p)
	case bodyChunked:
		n, err = b.readChunked(p)
	case bodyUntilClose:
		n, err = b.c.br.Read(p)
		if err != nil && err != io.EOF {
			err = b.ioError(err)
		}
	default:
		err = io.EOF
	}
	if err != nil {
		b.err = err
		b.finish(err == io.EOF)
	}
	return n, err
}

func (b *body) readLength(p []byte) (int, error) {
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.c.br.Read(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		return n, io.EOF
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, b.ioError(err)
	}
	return n, nil
}

func (b *body) readChunked(p []byte) (int, error) {
	br := b.c.br
	for {
		switch b.state {
		case chunkSize:
			size, err := b.readChunkSize()
			if err != nil {
				return 0, b.ioError(err)
			}
			if size == 0 {
				if err := b.c.readFields(&b.rt.resp.Trailer, nil, b.c.p.maxHeaderBytes, true); err != nil {
					return 0, b.ioError(err)
				}
				return 0, io.EOF
			}
			b.remaining = size
			b.state = chunkData
		case chunkData:
			if int64(len(p)) > b.remaining {
				p = p[:b.remaining]
			}
			n, err := br.Read(p)
			b.remaining -= int64(n)
			if b.remaining == 0 {
				b.state = chunkCRLF
				if b.endBuffered() {
					return n, io.EOF
				}
			}
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return n, b.ioError(err)
			}
			return n, nil
		case chunkCRLF:
			line, err := br.ReadSlice('\n')
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return 0, b.ioError(err)
			}
			if !(len(line) == 2 && line[0] == '\r') && len(line) != 1 {
				return 0, b.ioError(errChunkEnd)
			}
			b.state = chunkSize
		}
	}
}

// lastChunk is what follows the data of a final chunk when there are no
// trailers: CRLF, the last chunk, and the empty trailer section.
const lastChunk = "\r\n0\r\n\r\n"

// endBuffered finishes the body without blocking if, after chunk data, the
// read buffer already holds the end of the message; so a caller reading
// exactly the body's bytes sees io.EOF with them and the connection goes
// back to the pool at once.
func (b *body) endBuffered() bool {
	br := b.c.br
	if br.Buffered() < len(lastChunk) {
		return false
	}
	buf, _ := br.Peek(len(lastChunk))
	if string(buf) != lastChunk {
		return false
	}
	br.Discard(len(lastChunk))
	return true
}

// readChunkSize reads a chunk-size line; extensions are ignored
// (RFC 9112 §7.1.1).
func (b *body) readChunkSize() (int64, error) {
	line, err := b.c.br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == bufio.ErrBufferFull {
			err = errChunkSize
		}
		return 0, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	n, _, ok := h1wire.ParseChunkSize(line)
	if !ok {
		return 0, errChunkSize // includes 2^60 bytes or more
	}
	return n, nil
}

// ioError wraps a body read failure.
func (b *body) ioError(err error) error {
	return classify(b.rt.ctx, "read response body", err, true)
}

// finish releases the connection: back to the pool if the body ended
// cleanly on a reusable connection, closed otherwise.
func (b *body) finish(clean bool) {
	c := b.c
	if c == nil {
		return
	}
	b.c = nil
	b.rt.ctx = nil
	b.rt.p.release(c, clean && b.reusable)
}

// Close implements io.Closer. Closing before io.EOF closes the connection,
// unless the rest of a Content-Length body is already in the read buffer,
// in which case it is discarded and the connection reused.
func (b *body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.c == nil {
		return nil
	}
	clean := false
	switch {
	case b.err != nil:
	case b.mode == bodyLength && b.remaining <= int64(b.c.br.Buffered()):
		b.c.br.Discard(int(b.remaining))
		b.remaining = 0
		clean = true
	case b.mode == bodyChunked && b.state == chunkCRLF:
		clean = b.endBuffered()
	}
	b.finish(clean)
	return nil
}

var _ net.Conn = (*upgraded)(nil)

// upgraded is Response.Upgraded: the raw connection after a 101 response,
// starting with whatever the server sent after the 101 head that was
// already buffered.
type upgraded struct{ c *conn }

// Read reads the buffered bytes first, then from the connection.
func (u *upgraded) Read(p []byte) (int, error) {
	if u.c.br.Buffered() > 0 {
		return u.c.br.Read(p)
	}
	return u.c.nc.Read(p)
}

// Write writes to the connection.
func (u *upgraded) Write(p []byte) (int, error) { return u.c.nc.Write(p) }

// Close closes the connection; it is safe to call more than once and
// concurrently with Read and Write.
func (u *upgraded) Close() error {
	u.c.close()
	return nil
}

// CloseWrite shuts down the writing side (TCP half-close, or TLS
// close_notify), if the connection supports it.
func (u *upgraded) CloseWrite() error {
	if cw, ok := u.c.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SetDeadline sets the read and write deadlines of the connection.
func (u *upgraded) SetDeadline(t time.Time) error { return u.c.nc.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the connection.
func (u *upgraded) SetReadDeadline(t time.Time) error { return u.c.nc.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the connection.
func (u *upgraded) SetWriteDeadline(t time.Time) error { return u.c.nc.SetWriteDeadline(t) }

// LocalAddr returns the connection's local address.
func (u *upgraded) LocalAddr() net.Addr { return u.c.nc.LocalAddr() }

// RemoteAddr returns the connection's remote address.
func (u *upgraded) RemoteAddr() net.Addr { return u.c.nc.RemoteAddr() }
