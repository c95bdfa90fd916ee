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
		// Shapes hidden behind encodings, other scripts and invisible characters.
		"hans.canary8@exämple.com x":                  "[email] x",
		"uma.canary60@exa\u200bmple.com":              "[email]",
		"vic.canary61\u200b@example.com":              "[email]",
		"wes.canary62@exam\u00adple.com":              "[email]",
		"gina.canary7@[192.168.1.1] x":                "[email] x",
		`"frank canary6"@example.com x`:               "[email] x",
		"judy.canary10＠example.com":                   "[email]",
		"kate.canary11%40example.com":                 "[email]",
		"liam.canary12&#64;example.com":               "[email]",
		"m.canary13&#x40;example.com":                 "[email]",
		"oscar.canary15@localhost down":               "[email] down",
		"https://canary34user:canary34pass@x.io/a":    "https://[credential]@x.io/a",
		"x.atlassian.net/path?canary32=secret done":   "x.atlassian.net/path?[query] done",
		"https://x.atlassian.net/a%3Fcanary76=secret": "https://x.atlassian.net/a?[query]",
		"Cookie: session=canary41Cookie":              "Cookie: [credential]",
		"card ４１１１１１１１１１１１１１１１":                       "card [digits]",
		`["Basic","Y2FuYXJ5NjRzZWNyZXRzZWNyZXQ="]`:    `["Basic","[credential]"]`,
		// A Firefox stack frame is not an address.
		"upload@https://addin.example.com/app.js:10:5": "upload@https://addin.example.com/app.js:10:5",
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

func TestValueScrubsSecretKeysAndLongNumbers(t *testing.T) {
	v := Value(map[string]any{
		"password": "canary48plain", "token": "canary49plain", "apiToken": "canary50plain", "X-Relay-Key": "k",
		"session_id": 7.0, "nested": map[string]any{"Set-Cookie": []any{"a=b"}},
		"num": 41111111111111111.0, "negnum": -98765432109876543.0, "small": 42.0, "ms": 1234.5,
		"issueKey": "ABC-1", "ok": true,
	}).(map[string]any)
	for _, k := range []string{"password", "token", "apiToken", "X-Relay-Key", "session_id"} {
		if v[k] != "[credential]" {
			t.Errorf("%s: %v, want [credential]", k, v[k])
		}
	}
	if v["nested"].(map[string]any)["Set-Cookie"] != "[credential]" {
		t.Errorf("nested cookie: %v", v["nested"])
	}
	if v["num"] != "[digits]" || v["negnum"] != "[digits]" {
		t.Errorf("long numbers: %v %v", v["num"], v["negnum"])
	}
	if v["small"] != 42.0 || v["ms"] != 1234.5 || v["issueKey"] != "ABC-1" || v["ok"] != true {
		t.Errorf("harmless values changed: %v", v)
	}
}

// FuzzString: nothing that matches a credential or e-mail pattern survives.
func FuzzString(f *testing.F) {
	for _, s := range []string{"a@b.co", "Basic QWxhZGRpbjpvcGVu", "eyJa.eyJb.c", "ATATT3abcdefghijk", "1234567", "x@y@z.io", "Bearer  tok",
		"mia@ex\u00e4mple.com", "a@b.c@d.e", "https://x.io/?a=b@c.de", "eyJhb.eyJ@x.io", "12 34 56 78",
		"a\u200b@b.c", "a%40b.c", "a&#64;b", "u:p@h", "https://u:p@h/", "x＠y", "１２３４５６"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if leak := Leaks(out); leak != "" {
			t.Fatalf("String(%q) = %q still holds %q", s, out, leak)
		}
		if leak := Leaks(normalize(out)); leak != "" {
			t.Fatalf("String(%q) = %q still holds %q behind an encoding", s, out, leak)
		}
		if strings.Contains(out, "\x00") && !strings.Contains(s, "\x00") {
			t.Fatal("scrub invented a NUL")
		}
	})
}
