// Package httpx is the HTTP vocabulary the front door (proxy), the data API
// (api) and the attachment relay (relay) share: the error type and its JSON
// shape, the one mapping from any error to the answer a caller sees, the
// typed refusal reasons, strict query and path parameters, the caller's
// body reader, and the values a request carries from handler to access log.
//
// It holds no state of its own: a Responder is built once per relay with its
// logger and metrics and handed to the packages that answer requests.
package httpx
