// Package upload shapes an attachment body while it streams from the
// caller to Jira Cloud, without ever holding a whole body in memory.
//
// The relay receives the caller's body as an io.Reader read straight from the
// socket and hands Jira an io.Reader plus a size. The pieces here compose
// between the two:
//
//	body := NewLimitReader(ctx.RequestBodyStream(), maxBytes) // count, cap
//	dec := NewBase64Decoder(body)                              // Office.js base64 → bytes
//	mp, err := NewMultipart(dec, -1, name, contentType)       // wrap as multipart/form-data
//	req.Header.SetContentType(mp.ContentType())
//	req.SetBodyStream(mp, int(mp.Size()))
//
// Every reader keeps constant memory: at most a couple of pooled 32 KiB
// buffers while a body is in flight, returned to the pool when the stream
// ends. Readers implement io.WriterTo where that lets a copier skip a
// buffer, so a chain such as Multipart → base64 decoder writes decoded bytes
// straight into the destination.
//
// Errors are typed: each has a sentinel (ErrSizeMismatch, ErrTooLarge,
// ErrBadBase64, ErrBadFilename, ErrBadContentType) to test with errors.Is and
// a struct carrying details to extract with errors.As. Errors returned by an
// underlying reader are passed through unchanged.
package upload
