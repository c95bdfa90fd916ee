package fakejira

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// attachment is content registered for download.
type attachment struct {
	id, filename, contentType string
	size, seed                int64
	data                      []byte // nil: generated from seed
	created                   time.Time
}

func (a *attachment) reader() io.ReadSeeker {
	if a.data != nil {
		return bytes.NewReader(a.data)
	}
	return NewContent(a.size, a.seed)
}

// AddAttachment registers a downloadable attachment of size deterministic
// pseudo-random bytes (those of NewContent(size, seed)), generated on the
// fly for every request, so a 1 GiB attachment costs no memory. It returns
// the attachment id and the hex SHA-256 of the content, which is computed
// here by generating the content once ("" with Options.NoHash).
func (s *Server) AddAttachment(filename, contentType string, size, seed int64) (id string, sha256hex string) {
	if size < 0 {
		size = 0
	}
	if !s.opts.NoHash {
		h := sha256.New()
		bufp := bufPool.Get().(*[]byte)
		_, _ = io.CopyBuffer(h, NewContent(size, seed), *bufp)
		bufPool.Put(bufp)
		sha256hex = hex.EncodeToString(h.Sum(nil))
	}
	id = s.addAttachment(&attachment{filename: filename, contentType: contentType, size: size, seed: seed})
	return id, sha256hex
}

// AddAttachmentBytes registers a downloadable attachment holding a copy of
// data and returns its id.
func (s *Server) AddAttachmentBytes(filename, contentType string, data []byte) string {
	d := make([]byte, len(data))
	copy(d, data)
	return s.addAttachment(&attachment{filename: filename, contentType: contentType, size: int64(len(d)), data: d})
}

func (s *Server) addAttachment(a *attachment) string {
	if a.contentType == "" {
		a.contentType = mimeTypeOf("", a.filename)
	}
	a.id = strconv.FormatInt(s.nextID.Add(1), 10)
	a.created = time.Now()
	s.attMu.Lock()
	s.attachments[a.id] = a
	s.attMu.Unlock()
	return a.id
}

func (s *Server) lookup(id string) *attachment {
	s.attMu.RLock()
	defer s.attMu.RUnlock()
	return s.attachments[id]
}

func writeNoAttachment(w http.ResponseWriter, id string) {
	writeError(w, http.StatusNotFound, "The attachment with id '"+id+"' does not exist.")
}

// handleContent is GET {base}/rest/api/3/attachment/content/{id}: the bytes
// with ?redirect=false, else 303 to {base}/media/{id}.
func (s *Server) handleContent(w http.ResponseWriter, r *http.Request, _ *Fault, id string) {
	if r.Header.Get("Authorization") == "" {
		writeError(w, http.StatusUnauthorized, msgNotAuthenticated)
		return
	}
	if r.URL.Query().Get("redirect") == "false" {
		s.serveAttachment(w, r, nil, id)
		return
	}
	if s.lookup(id) == nil {
		writeNoAttachment(w, id)
		return
	}
	w.Header().Set("Location", s.scheme+"://"+r.Host+s.base+"/media/"+url.PathEscape(id))
	w.WriteHeader(http.StatusSeeOther)
}

// serveAttachment sends an attachment's bytes, honouring Range.
func (s *Server) serveAttachment(w http.ResponseWriter, r *http.Request, _ *Fault, id string) {
	a := s.lookup(id)
	if a == nil {
		writeNoAttachment(w, id)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Content-Disposition", contentDisposition(a.filename))
	h.Set("Cache-Control", "private, max-age=0")
	http.ServeContent(w, r, "", time.Time{}, a.reader())
}

// handleAttachmentMeta is GET {base}/rest/api/3/attachment/{id}.
func (s *Server) handleAttachmentMeta(w http.ResponseWriter, r *http.Request, id string) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		writeError(w, http.StatusUnauthorized, msgNotAuthenticated)
		return
	}
	a := s.lookup(id)
	if a == nil {
		writeNoAttachment(w, id)
		return
	}
	writeJSON(w, http.StatusOK, s.attachmentJSON(a.id, a.filename, a.contentType, a.size, a.created, auth))
}

// contentDisposition is `attachment; filename="…"`, with an RFC 5987
// filename* beside an ASCII fallback when the name is not plain ASCII.
func contentDisposition(name string) string {
	ascii := true
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c > 0x7e {
			ascii = false
			break
		}
	}
	quote := func(s string) string {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	if ascii {
		return "attachment; filename=" + quote(name)
	}
	fallback := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '_'
		}
		return r
	}, name)
	return "attachment; filename=" + quote(fallback) + "; filename*=UTF-8''" + url.PathEscape(name)
}

// NewContent returns size bytes of deterministic pseudo-random content for
// seed, generated on the fly: the bytes AddAttachment serves. Tests may use
// it to build upload bodies or to check downloads; it supports Seek, so any
// range can be produced without generating what precedes it.
func NewContent(size, seed int64) io.ReadSeeker {
	if size < 0 {
		size = 0
	}
	return &content{size: size, key: splitmix(uint64(seed))}
}

// content is a seekable stream whose 8-byte word i is splitmix(key + i·φ).
type content struct {
	size, off int64
	key       uint64
}

const golden = 0x9E3779B97F4A7C15

func splitmix(z uint64) uint64 {
	z += golden
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func (c *content) word(i int64) uint64 { return splitmix(c.key + uint64(i)*golden) }

func (c *content) Read(p []byte) (int, error) {
	if c.off >= c.size {
		return 0, io.EOF
	}
	if rem := c.size - c.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n := len(p)
	off := c.off
	// Leading partial word.
	if r := int(off & 7); r != 0 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], c.word(off>>3))
		k := copy(p, b[r:])
		p = p[k:]
		off += int64(k)
	}
	// Whole words.
	i := off >> 3
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, c.word(i))
		p = p[8:]
		i++
	}
	// Trailing partial word.
	if len(p) > 0 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], c.word(i))
		copy(p, b[:])
	}
	c.off += int64(n)
	return n, nil
}

func (c *content) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = c.off + offset
	case io.SeekEnd:
		abs = c.size + offset
	default:
		return 0, errors.New("fakejira: content.Seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("fakejira: content.Seek: negative position")
	}
	c.off = abs
	return abs, nil
}
