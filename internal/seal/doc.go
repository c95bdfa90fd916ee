// Package seal is the relay's encryption at rest, as Kubernetes encrypts
// what it keeps in etcd: a key file lists named 32-byte keys in order, the
// first seals new values and every one may open (Keyring); a sealed value
// is "enc:v1:<key name>:" followed by XChaCha20-Poly1305's nonce and
// ciphertext, with the value's own etcd key as additional data, so that a
// value copied under another key does not open (Seal, Open); and ids that
// must stay searchable in etcd keys become keyed tokens, HMAC-SHA-256
// under a key derived per tenant, truncated to 128 bits (Tokenizer).
//
// The secrets are never part of an error, a log line or a String.
package seal
