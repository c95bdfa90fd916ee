package relay

import "bytes"

// UploadRoute is the upload route's pattern, for logs and metrics.
const UploadRoute = "/v1/instances/{id}/issues/{issue}/attachments"

// DownloadRoute is the download route's pattern.
const DownloadRoute = "/v1/instances/{id}/attachments/{attachmentId}/content"

// Target is what the upload route names: the instance and the issue, as
// they appear in the raw path (sub-slices of it, valid for the request).
type Target struct {
	Instance, Issue []byte
}

// MatchUpload matches /v1/instances/{id}/issues/{issue}/attachments on the
// raw path, without allocating. The front door matches the hot route by
// hand, once, and carries the Target.
func MatchUpload(p []byte) (Target, bool) {
	rest, found := bytes.CutPrefix(p, []byte("/v1/instances/"))
	if !found {
		return Target{}, false
	}
	i := bytes.IndexByte(rest, '/')
	if i <= 0 {
		return Target{}, false
	}
	id, rest := rest[:i], rest[i+1:]
	rest, found = bytes.CutPrefix(rest, []byte("issues/"))
	if !found {
		return Target{}, false
	}
	issue, found := bytes.CutSuffix(rest, []byte("/attachments"))
	if !found || len(issue) == 0 || bytes.IndexByte(issue, '/') >= 0 {
		return Target{}, false
	}
	return Target{Instance: id, Issue: issue}, true
}
