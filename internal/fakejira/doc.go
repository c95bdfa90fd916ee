// Package fakejira is a fake Jira Cloud REST API served over a real loopback
// socket (plain HTTP or TLS with an in-memory CA), for the relay's tests and
// its load benchmark.
//
// It answers the handful of endpoints the relay uses the way Jira Cloud does:
//
//	POST {base}/rest/api/3/issue/{issueIdOrKey}/attachments   multipart upload
//	GET  {base}/rest/api/3/attachment/content/{id}            303 to {base}/media/{id}, or the bytes with ?redirect=false
//	GET  {base}/media/{id}                                    the bytes (Range supported)
//	GET  {base}/rest/api/3/attachment/{id}                    attachment metadata
//	GET  {base}/rest/api/3/attachment/meta                    upload settings
//	GET  {base}/rest/api/3/serverInfo                         anonymous server info
//	GET  {base}/rest/api/3/myself                             the authenticated user
//
// Uploads are parsed streaming with mime/multipart and 32 KiB buffers; the
// file bytes are hashed (SHA-256, unless Options.NoHash) and counted, never
// kept. Every upload attempt is recorded as an Upload, whether it completed,
// was rejected, was cut short by the client or was broken by a fault.
//
// Downloads serve content registered with AddAttachment (deterministic
// pseudo-random bytes generated on the fly, so a 1 GiB attachment costs no
// memory) or AddAttachmentBytes.
//
// Faults (HTTP 500/503/429, an early 401, slow answers, hangs, connection
// resets mid-body, slow drips) can be switched on and off at runtime with
// SetFault and ClearFault.
package fakejira
