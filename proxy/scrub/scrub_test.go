package scrub

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"mail mia.krystof@example.com failed":                               "mail [email] failed",
		"Authorization: Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu":                 "Authorization: Basic [credential]",
		"header bearer abc.def-ghi_jkl":                                     "header bearer [credential]",
		"tok eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_x-y":              "tok [jwt]",
		"ATATT3xFfGF0T2hVbGVfZm9yX3Rlc3Rz failed":                           "[token] failed",
		"GET https://acme.atlassian.net/rest/api/3/search?jql=reporter%3Dx": "GET https://acme.atlassian.net/rest/api/3/search?[query]",
		"card 4111 1111 1111 1111 rejected":                                 "card [digits] rejected",
		"phone +49 170 1234567":                                             "phone +[digits]",
		"at Object.upload (relay-client.js:120:15)":                         "at Object.upload (relay-client.js:120:15)",
		"password=hunter2&x=1":                                              "password=[credential]&x=1",
		"key jrc_uR49j4MDBaCfujd801ZLLl4RKsRkkal2tqJVyfwhfCg":               "key [token]",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValueScrubsNestedStringsAndKeys(t *testing.T) {
	v := Value(map[string]any{"user": "a@b.co", "list": []any{"Bearer xyzxyz", 3.0}, "x@y.io": true}).(map[string]any)
	if v["user"] != "[email]" || v["list"].([]any)[0] != "Bearer [credential]" || v["[email]"] != true {
		t.Fatalf("Value: %v", v)
	}
}

// FuzzString: nothing that matches a credential or e-mail pattern survives.
func FuzzString(f *testing.F) {
	for _, s := range []string{"a@b.co", "Basic QWxhZGRpbjpvcGVu", "eyJa.eyJb.c", "ATATT3abcdefghijk", "1234567", "x@y@z.io", "Bearer  tok",
		"mia@ex\u00e4mple.com", "a@b.c@d.e", "https://x.io/?a=b@c.de", "eyJhb.eyJ@x.io", "12 34 56 78"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if leak := Leaks(out); leak != "" {
			t.Fatalf("String(%q) = %q still holds %q", s, out, leak)
		}
		if strings.Contains(out, "\x00") && !strings.Contains(s, "\x00") {
			t.Fatal("scrub invented a NUL")
		}
	})
}
