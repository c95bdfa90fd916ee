package fakejira

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// bufSize is the size of the read buffers used on uploads.
const bufSize = 32 << 10

var (
	bufPool    = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}
	bufioPool  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	issueKeyRe = regexp.MustCompile(`^(?:[A-Z][A-Z0-9_]+-[0-9]+|[0-9]+)$`)
)

// File is one "file" part of an upload.
type File struct {
	// ID is the Jira attachment id given to the file ("10000", "10001", …);
	// "" unless the upload completed.
	ID string
	// Filename is the part's Content-Disposition filename, as sent (RFC 2231
	// encoding decoded, no path stripping).
	Filename string
	// ContentType is the part's Content-Type header, as sent.
	ContentType string
	// Size is the number of file bytes received (so far, if the upload broke).
	Size int64
	// SHA256 is the hex SHA-256 of the bytes received; "" with Options.NoHash.
	SHA256 string
}

// Upload records one POST to …/issue/{issueIdOrKey}/attachments, whatever
// became of it. Filename, ContentType, Size and SHA256 describe the first
// file part (Files holds all of them).
type Upload struct {
	// Issue is the issueIdOrKey path segment.
	Issue string
	// Filename is Files[0].Filename.
	Filename string
	// ContentType is Files[0].ContentType.
	ContentType string
	// Size is Files[0].Size.
	Size int64
	// SHA256 is Files[0].SHA256.
	SHA256 string
	// Complete reports that the whole body arrived intact (closing boundary
	// reached, no read error, exactly Content-Length bytes if one was given),
	// held at least one file, and was accepted: Jira would have created the
	// attachments. It is true even when a FaultSlow or FaultHang then kept
	// the answer from the client, as a lost answer does not undo a real
	// upload.
	Complete bool
	// Authorization is the request's Authorization header.
	Authorization string
	// Header is a copy of the request headers.
	Header http.Header
	// Parts is the number of parts named "file" seen (other parts are read
	// and ignored).
	Parts int
	// Err says why the upload is not Complete; "" when it is.
	Err string
	// Status is the HTTP status the fake answered (or, under FaultSlow, is
	// about to answer); 0 when it answered nothing (reset, hang).
	Status int
	// Files are the file parts, in order.
	Files []File
	// ContentLength is the request's Content-Length, -1 if none (chunked).
	ContentLength int64
	// BodyBytes is the number of body bytes the fake read.
	BodyBytes int64
	// Fault is the fault applied to the request, FaultNone if none.
	Fault FaultKind
}

func (u Upload) clone() Upload {
	u.Header = u.Header.Clone()
	u.Files = slices.Clone(u.Files)
	return u
}

// Uploads returns a copy of the recorded upload attempts, oldest first (only
// the latest Options.MaxRecords if that is set).
func (s *Server) Uploads() []Upload {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return s.copyUploadsLocked()
}

func (s *Server) copyUploadsLocked() []Upload {
	out := make([]Upload, len(s.uploads))
	for i, u := range s.uploads {
		out[i] = u.clone()
	}
	return out
}

// CompletedUploads returns a copy of the recorded uploads that are Complete.
func (s *Server) CompletedUploads() []Upload {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	var out []Upload
	for _, u := range s.uploads {
		if u.Complete {
			out = append(out, u.clone())
		}
	}
	return out
}

// WaitUploads waits until at least n upload attempts (complete or not) have
// been recorded since Start or the last Reset, and returns a copy of the
// records. On timeout it returns the records so far and an error.
func (s *Server) WaitUploads(n int, timeout time.Duration) ([]Upload, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		s.recMu.Lock()
		got, ch := s.recorded, s.changed
		if got >= int64(n) {
			out := s.copyUploadsLocked()
			s.recMu.Unlock()
			return out, nil
		}
		s.recMu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			return s.Uploads(), fmt.Errorf("fakejira: %d upload attempts recorded after %v, want %d", got, timeout, n)
		case <-s.done:
			return s.Uploads(), errClosing
		}
	}
}

// Reset forgets the recorded uploads and zeroes the counters (Requests,
// BytesReceived and the Stats counters). Registered attachments and the
// current fault stay.
func (s *Server) Reset() {
	s.recMu.Lock()
	s.uploads = nil
	s.recorded = 0
	s.recMu.Unlock()
	s.requests.Store(0)
	s.bytesRecv.Store(0)
	s.attempts.Store(0)
	s.completed.Store(0)
	s.filesBytes.Store(0)
}

func (s *Server) record(u *Upload) {
	if len(u.Files) > 0 {
		f := u.Files[0]
		u.Filename, u.ContentType, u.Size, u.SHA256 = f.Filename, f.ContentType, f.Size, f.SHA256
	}
	s.attempts.Add(1)
	if u.Complete {
		s.completed.Add(1)
		for _, f := range u.Files {
			s.filesBytes.Add(f.Size)
		}
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.uploads = append(s.uploads, *u)
	if max := s.opts.MaxRecords; max > 0 && len(s.uploads) > max {
		if cap(s.uploads) > 2*max {
			s.uploads = slices.Clone(s.uploads[len(s.uploads)-max:])
		} else {
			s.uploads = s.uploads[len(s.uploads)-max:]
		}
	}
	s.recorded++
	close(s.changed)
	s.changed = make(chan struct{})
}

var errTooLarge = errors.New("fakejira: file larger than the upload limit")

// handleUpload is POST {base}/rest/api/3/issue/{key}/attachments.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request, f *Fault, key string) {
	u := &Upload{
		Issue:         key,
		Authorization: r.Header.Get("Authorization"),
		Header:        r.Header.Clone(),
		ContentLength: r.ContentLength,
	}
	var counted *countingBody
	if cb, ok := r.Body.(*countingBody); ok {
		counted = cb
	}
	bodyBytes := func() int64 {
		if counted == nil {
			return 0
		}
		return counted.local
	}
	if f != nil {
		u.Fault = f.Kind
	}
	reject := func(status int, msg string) {
		u.Status, u.Err = status, msg
		u.BodyBytes = bodyBytes()
		s.record(u)
		writeError(w, status, msg)
	}

	if f != nil {
		switch f.Kind {
		case Fault500, Fault503, Fault429, Fault401:
			if f.Kind == Fault503 || f.Kind == Fault429 {
				_, _ = io.Copy(io.Discard, r.Body)
			}
			u.BodyBytes = bodyBytes()
			u.Status, u.Err = faultStatus(f.Kind), "fault: "+f.Kind.String()
			s.record(u)
			writeFaultStatus(w, f)
			return
		}
	}

	if tok := r.Header.Get("X-Atlassian-Token"); !strings.EqualFold(tok, "no-check") && !strings.EqualFold(tok, "nocheck") {
		reject(http.StatusForbidden, "XSRF check failed")
		return
	}
	if u.Authorization == "" {
		reject(http.StatusUnauthorized, msgNotAuthenticated)
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		reject(http.StatusUnsupportedMediaType, "Unsupported Media Type: the request must be multipart/form-data.")
		return
	}
	if !issueKeyRe.MatchString(key) {
		reject(http.StatusNotFound, msgNoIssue)
		return
	}
	boundary := params["boundary"]
	if boundary == "" {
		w.Header().Set("Connection", "close")
		reject(http.StatusBadRequest, "Bad multipart request: no boundary in Content-Type.")
		return
	}

	var body io.Reader = r.Body
	var rr *resetReader
	if f != nil {
		switch f.Kind {
		case FaultResetMidBody:
			rr = &resetReader{r: body, left: f.AfterBytes}
			body = rr
		case FaultSlowDrip:
			body = newDripReader(s, body, r.Context(), f)
		}
	}
	br := bufioPool.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() {
		br.Reset(nil)
		bufioPool.Put(br)
	}()
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	buf := *bufp

	// fail records a broken body and answers 400 if the client is still
	// there (or resets the connection under FaultResetMidBody).
	fail := func(err error) {
		u.BodyBytes = bodyBytes()
		if errors.Is(err, errFaultReset) || (rr != nil && rr.tripped) {
			u.Err = fmt.Sprintf("fault: connection reset after %d body bytes", u.BodyBytes)
			s.record(u)
			resetConn(w, false)
			return
		}
		u.Status, u.Err = http.StatusBadRequest, "broken body: "+err.Error()
		s.record(u)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusBadRequest, "Bad multipart request: "+err.Error())
	}

	var h hash.Hash
	if !s.opts.NoHash {
		h = sha256.New()
	}
	mr := multipart.NewReader(br, boundary)
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(err)
			return
		}
		if part.FormName() != "file" {
			if _, err := copyPart(nil, part, buf, -1); err != nil {
				fail(err)
				return
			}
			continue
		}
		u.Parts++
		if u.Parts > MaxFilesPerUpload {
			w.Header().Set("Connection", "close")
			reject(http.StatusRequestEntityTooLarge,
				fmt.Sprintf("Too many attachments in one request: the maximum is %d.", MaxFilesPerUpload))
			return
		}
		file := File{Filename: partFilename(part), ContentType: part.Header.Get("Content-Type")}
		if h != nil {
			h.Reset()
		}
		file.Size, err = copyPart(h, part, buf, s.opts.UploadLimit)
		if h != nil {
			file.SHA256 = hex.EncodeToString(h.Sum(nil))
		}
		u.Files = append(u.Files, file)
		if errors.Is(err, errTooLarge) {
			w.Header().Set("Connection", "close")
			reject(http.StatusRequestEntityTooLarge, fmt.Sprintf(
				"The file %q is larger than the attachment size limit of %d bytes.", file.Filename, s.opts.UploadLimit))
			return
		}
		if err != nil {
			fail(err)
			return
		}
	}
	// Closing boundary reached: the rest is epilogue; the body must still end
	// cleanly and have its announced length.
	if _, err := copyPart(nil, br, buf, -1); err != nil {
		fail(err)
		return
	}
	if r.ContentLength >= 0 && bodyBytes() != r.ContentLength {
		fail(fmt.Errorf("body has %d bytes, Content-Length says %d", bodyBytes(), r.ContentLength))
		return
	}
	if rr != nil {
		// The body ended before AfterBytes: cut the connection instead of
		// answering.
		fail(errFaultReset)
		return
	}
	u.BodyBytes = bodyBytes()
	if len(u.Files) == 0 {
		reject(http.StatusBadRequest, "No file was uploaded: the request has no part named \"file\".")
		return
	}

	created := time.Now()
	out := make([]attachmentJSON, len(u.Files))
	for i := range u.Files {
		id := strconv.FormatInt(s.nextID.Add(1), 10)
		u.Files[i].ID = id
		out[i] = s.attachmentJSON(id, u.Files[i].Filename, mimeTypeOf(u.Files[i].ContentType, u.Files[i].Filename),
			u.Files[i].Size, created, u.Authorization)
	}
	u.Complete = true
	if f == nil || f.Kind != FaultHang {
		u.Status = http.StatusOK
	}
	s.record(u)

	if f != nil {
		switch f.Kind {
		case FaultSlow:
			if s.sleep(r.Context(), f.Delay) != nil {
				return
			}
		case FaultHang:
			s.hang(r.Context())
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func faultStatus(k FaultKind) int {
	switch k {
	case Fault500:
		return http.StatusInternalServerError
	case Fault503:
		return http.StatusServiceUnavailable
	case Fault429:
		return http.StatusTooManyRequests
	case Fault401:
		return http.StatusUnauthorized
	}
	return 0
}

// copyPart reads src to its end through buf, feeding h (if not nil), and
// returns the byte count. With limit >= 0 it stops with errTooLarge once more
// than limit bytes have come. buf is filled before each hash write, so that
// the 4 KiB reads of mime/multipart reach the hash as 32 KiB blocks.
func copyPart(h hash.Hash, src io.Reader, buf []byte, limit int64) (int64, error) {
	var total int64
	for {
		filled := 0
		var err error
		for filled < len(buf) && err == nil {
			var n int
			n, err = src.Read(buf[filled:])
			filled += n
		}
		total += int64(filled)
		if h != nil && filled > 0 {
			h.Write(buf[:filled])
		}
		if limit >= 0 && total > limit {
			return total, errTooLarge
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// partFilename is the filename parameter of the part's Content-Disposition,
// unaltered (mime/multipart.Part.FileName strips directories).
func partFilename(p *multipart.Part) string {
	_, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		return p.FileName()
	}
	return params["filename"]
}

// mimeTypeOf is the mimeType Jira reports: the part's media type, else one
// guessed from the file name's extension, else application/octet-stream.
func mimeTypeOf(contentType, filename string) string {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt != "" {
		return mt
	}
	if mt, _, err := mime.ParseMediaType(mime.TypeByExtension(path.Ext(filename))); err == nil && mt != "" {
		return mt
	}
	return "application/octet-stream"
}
