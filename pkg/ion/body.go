package ion

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Body is a response body held as fixed-size chunks from a pool. Reading a multi-megabyte
// report page into one growing slice copied it about twice over and left that much garbage per
// page (io.ReadAll); chunks are filled once and, after Release, reused by the next page.
// Its SHA-256 is computed while it is read. A Body is not safe for concurrent use.
type Body struct {
	chunks [][]byte
	n      int64
	sum    [sha256.Size]byte
	pooled bool // chunks came from chunkPool
}

const bodyChunk = 64 << 10

// ErrBodyTooLarge is ReadBody's error for a body above its limit.
var ErrBodyTooLarge = errors.New("body too large")

var chunkPool = sync.Pool{New: func() any { return new([bodyChunk]byte) }}

// ReadBody reads r to its end, at most limit bytes (a longer body is an error).
func ReadBody(r io.Reader, limit int64) (*Body, error) {
	b := &Body{pooled: true}
	h := sha256.New()
	for {
		c := chunkPool.Get().(*[bodyChunk]byte)
		n, err := io.ReadFull(r, c[:])
		if n > 0 {
			b.chunks = append(b.chunks, c[:n])
			b.n += int64(n)
			h.Write(c[:n])
		} else {
			chunkPool.Put(c)
		}
		if b.n > limit {
			b.Release()
			return nil, fmt.Errorf("%w: larger than %d bytes", ErrBodyTooLarge, limit)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			b.Release()
			return nil, err
		}
	}
	h.Sum(b.sum[:0])
	return b, nil
}

// BodyOf wraps bytes already in memory (they are not copied; Release leaves them alone).
func BodyOf(p []byte) *Body {
	b := &Body{n: int64(len(p)), sum: sha256.Sum256(p)}
	if len(p) > 0 {
		b.chunks = [][]byte{p[:len(p):len(p)]}
	}
	return b
}

// Len is the body's size in bytes.
func (b *Body) Len() int64 { return b.n }

// SHA256 is the hex SHA-256 of the body.
func (b *Body) SHA256() string { return hex.EncodeToString(b.sum[:]) }

// Reader reads the body from its start; each call starts a new reader. A Read fills p across
// chunk boundaries, so a consumer reading fixed-size pieces (the object store's 128 KiB chunks)
// gets whole pieces.
func (b *Body) Reader() io.Reader { return &bodyReader{chunks: b.chunks} }

type bodyReader struct {
	chunks [][]byte
	off    int // into chunks[0]
}

func (r *bodyReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && len(r.chunks) > 0 {
		c := copy(p[n:], r.chunks[0][r.off:])
		n += c
		r.off += c
		if r.off == len(r.chunks[0]) {
			r.chunks, r.off = r.chunks[1:], 0
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Bytes returns the body as one slice that outlives Release (a copy of pooled chunks).
func (b *Body) Bytes() []byte {
	if !b.pooled && len(b.chunks) == 1 {
		return b.chunks[0]
	}
	out := make([]byte, 0, b.n)
	for _, c := range b.chunks {
		out = append(out, c...)
	}
	return out
}

// Release hands the chunks back to the pool; the Body must not be used afterwards.
func (b *Body) Release() {
	if b.pooled {
		for _, c := range b.chunks {
			chunkPool.Put((*[bodyChunk]byte)(c[:bodyChunk]))
		}
	}
	b.chunks, b.n = nil, 0
}
